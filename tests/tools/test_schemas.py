import json

import pytest
from pydantic import ValidationError

from storyagent.schemas import (CameraMotion, Film, Region, Shot, ShotClip, ShotType, StoryboardFrame, StoryScript,
                                Subject, format_validation_error)


def make_shot(i: int = 1, **kw) -> dict:
    base = dict(index=i, narration="Pip wakes up.", description="Pip the fox on a beach", subject_action="stretches",
                subject_region={"x": 0.1, "y": 0.2, "w": 0.4, "h": 0.7}, background="a beach at dawn",
                shot_type="wide", camera_motion="pan left", duration=2.5)
    base.update(kw)
    return base


def test_story_script_round_trips_through_json():
    script = StoryScript(title="T", logline="L", shots=[make_shot(1), make_shot(2, shot_type="close-up", camera_motion="zoom in")])
    again = StoryScript.model_validate_json(script.model_dump_json())
    assert again == script
    data = json.loads(script.model_dump_json())
    assert data["shots"][1]["shot_type"] == "close-up" and data["shots"][1]["camera_motion"] == "zoom in"


@pytest.mark.parametrize("spelling,expected", [("Close up", ShotType.close_up), ("CLOSE-UP", ShotType.close_up),
                                               ("closeup", ShotType.close_up), ("Wide", ShotType.wide)])
def test_shot_type_accepts_common_spellings(spelling, expected):
    assert Shot(**make_shot(shot_type=spelling)).shot_type == expected


@pytest.mark.parametrize("spelling,expected", [("pan_left", CameraMotion.pan_left), ("Zoom-In", CameraMotion.zoom_in),
                                               ("tilt up", CameraMotion.tilt_up)])
def test_camera_motion_accepts_common_spellings(spelling, expected):
    assert Shot(**make_shot(camera_motion=spelling)).camera_motion == expected


def test_region_from_words_and_bounds():
    assert Shot(**make_shot(subject_region="centre")).subject_region == Region.named("center")
    with pytest.raises(ValidationError):
        Region(x=0.8, y=0.0, w=0.5, h=0.5)


def test_invalid_values_give_readable_errors():
    with pytest.raises(ValidationError) as info:
        Shot(**make_shot(shot_type="extreme", camera_motion="spin", subject_region="upstairs", duration=0))
    text = format_validation_error(info.value, "shot")
    assert "shot_type: must be one of 'wide', 'medium' or 'close-up'" in text
    assert "camera_motion: must be one of" in text and "'pan left'" in text
    assert "unknown region 'upstairs'" in text
    assert "duration" in text
    assert "Traceback" not in text and "https://" not in text


def test_script_requires_ordered_indices_and_at_least_one_shot():
    with pytest.raises(ValidationError, match="indices must be 1..2"):
        StoryScript(title="T", logline="L", shots=[make_shot(2), make_shot(1)])
    with pytest.raises(ValidationError):
        StoryScript(title="T", logline="L", shots=[])


def test_artifact_records_round_trip(tmp_path):
    records = [StoryboardFrame(path="storyboard/shot_01.png", mask_path="storyboard/shot_01_mask.png", input_hash="ab", shot=1),
               ShotClip(path="shots/shot_01.mp4", input_hash="cd", shot=1, num_frames=20, fps=8),
               Film(path="film.mp4", input_hash="ef", num_frames=100, fps=8)]
    for rec in records:
        assert type(rec).model_validate_json(rec.model_dump_json()) == rec
    with pytest.raises(ValidationError):
        ShotClip(path="x.mp4", input_hash="h", num_frames=0, fps=8)


def test_subject_masks_must_match_frames(tmp_path):
    Subject(name="Pip", reference_media=[tmp_path / "a.png"], frames=[tmp_path / "f.png"], masks=[tmp_path / "m.png"])
    with pytest.raises(ValidationError, match="1 masks for 2 frames"):
        Subject(name="Pip", reference_media=[tmp_path / "a.png"], frames=[tmp_path / "f.png"] * 2, masks=[tmp_path / "m.png"])

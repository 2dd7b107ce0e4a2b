"""The animatic backend and a cast (issue 25): a two-character film's storyboard has one mask per character
(`storyboard/shot_NN_mask_<slug>.png`, `meta["character_masks"]`) and hashes that name the cast; a film of
one character keeps its files, pictures and hashes."""

import hashlib

import numpy as np
from PIL import Image

from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.schemas import Shot, ShotCharacter, StoryScript
from storyagent.tools.run import Run
from storyagent.tools.video import animate_shots

from tests.support.paths import PIP

SIZE = dict(width=192, height=128, fps=4)


def pixels(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(np.ascontiguousarray(np.asarray(Image.open(p))).tobytes())
    return h.hexdigest()[:16]


def pip_shots() -> list[Shot]:
    return [Shot(index=1, narration="Pip hops to the pond.", description="d", subject_action="hops to the pond",
                 subject_region="left", background="a pond in a meadow", shot_type="wide", camera_motion="pan right",
                 duration=1.5),
            Shot(index=2, narration="Pip swims.", description="d", subject_action="swims", subject_region="center",
                 background="a pond in a meadow", shot_type="close-up", camera_motion="zoom in", duration=1.5)]


def made(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.parent.name in ("storyboard", "shots"))


# The one-character film below, as the animatic backend made it before casts (commit 9c23893): its files,
# each storyboard picture's input hash and pixels (picture and mask), and each clip's input hash. Made by
# running this test's film with that commit's code, before any of the cast's code was written.
BEFORE_CASTS = {
    "files": ["shots/shot_01.mp4", "shots/shot_02.mp4", "storyboard/shot_01.png", "storyboard/shot_01_mask.png",
              "storyboard/shot_02.png", "storyboard/shot_02_mask.png"],
    "boards": [("03baf7d618b9cd40", "687a0639473d3ea7"), ("cb36f97e93c4e155", "f7b4e6b94cdf8449")],
    "clips": ["dd8ab5854e62a328", "f49b627f864ac49f"],
}


def test_a_one_character_film_keeps_its_files_pictures_and_hashes(tmp_path):
    cfg = RunConfig.build(prompt="Pip at the pond", subject=PIP, name="Pip", class_word="fox", shots=2, **SIZE)
    script = StoryScript(title="Pip at the pond", logline="Pip goes to the pond.", shots=pip_shots())
    with Run.open(cfg, tmp_path / "run", show_progress=False) as run:
        boards = run.backend.storyboard(run, script)
        clips = animate_shots(run, script, boards)
    root = tmp_path / "run"
    assert made(root) == BEFORE_CASTS["files"]
    assert [(b.input_hash, pixels(root / b.path, root / b.mask_path)) for b in boards] == BEFORE_CASTS["boards"]
    assert all(set(b.meta) == {"seed", "file_hashes"} for b in boards)
    assert [c.input_hash for c in clips] == BEFORE_CASTS["clips"]


def magenta_png(path, width: int = 120, height: int = 170):
    """A second character: a magenta blob on a transparent photo (its alpha is its mask)."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - width / 2) / (width * 0.46)) ** 2 + ((yy - height / 2) / (height * 0.47)) ** 2 <= 1
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[inside] = (220, 40, 200, 255)
    Image.fromarray(rgba).save(path)
    return path


def cast_film(media, out, script):
    cfg = RunConfig.build(prompt="Pip meets Mag", subject=PIP, name="Pip", class_word="fox", shots=len(script.shots),
                          supporting=[CastMember(name="Mag", class_word="blob", media=media)], **SIZE)
    with Run.open(cfg, out, show_progress=False) as run:
        assert [m.subject.name for m in run.cast] == ["Pip", "Mag"]
        boards = run.backend.storyboard(run, script)
        clips = animate_shots(run, script, boards)
        again = run.backend.storyboard(run, script)  # everything fresh: nothing drawn again
        assert [b.model_dump() for b in again] == [b.model_dump() for b in boards]
    return boards, clips


def test_a_two_character_film_has_a_mask_per_character_and_hashes_that_name_the_cast(tmp_path):
    pip_alone = pip_shots()[0]
    both = Shot(index=2, narration="Pip meets Mag by the pond.", description="d", subject_action="waves",
                subject_region="left", background="a pond in a meadow", shot_type="medium", camera_motion="zoom in",
                duration=1.5, characters=[ShotCharacter(name="Pip", action="waves hello", region="left"),
                                          ShotCharacter(name="Mag", action="hops up and down", region="right")])
    mag_alone = Shot(index=3, narration="Mag falls asleep.", description="d", subject_action="falls asleep",
                     subject_region="center", background="a pond in a meadow", shot_type="close-up",
                     camera_motion="static", duration=1.5,
                     characters=[ShotCharacter(name="Mag", action="falls asleep", region="center")])
    script = StoryScript(title="Pip meets Mag", logline="Pip meets Mag.", shots=[pip_alone, both, mag_alone])
    media = magenta_png(tmp_path / "mag.png")
    root = tmp_path / "run"
    boards, clips = cast_film(media, root, script)

    assert made(root) == [
        "shots/shot_01.mp4", "shots/shot_02.mp4", "shots/shot_03.mp4",
        "storyboard/shot_01.png", "storyboard/shot_01_mask.png", "storyboard/shot_01_mask_pip.png",
        "storyboard/shot_02.png", "storyboard/shot_02_mask.png", "storyboard/shot_02_mask_mag.png",
        "storyboard/shot_02_mask_pip.png",
        "storyboard/shot_03.png", "storyboard/shot_03_mask.png", "storyboard/shot_03_mask_mag.png"]
    assert [b.meta["character_masks"] for b in boards] == [
        {"Pip": "storyboard/shot_01_mask_pip.png"},
        {"Pip": "storyboard/shot_02_mask_pip.png", "Mag": "storyboard/shot_02_mask_mag.png"},
        {"Mag": "storyboard/shot_03_mask_mag.png"}]
    for board in boards:
        picture = np.asarray(Image.open(root / board.path).convert("RGB")).astype(np.int16)
        union = np.asarray(Image.open(root / board.mask_path)) > 127
        masks = {name: np.asarray(Image.open(root / rel)) > 127 for name, rel in board.meta["character_masks"].items()}
        assert np.array_equal(union, np.logical_or.reduce(list(masks.values())))  # mask_path: all of them
        assert sum(m.astype(int) for m in masks.values()).max() == 1  # no pixel is two characters'
        for name, mask in masks.items():
            assert mask.sum() > 0.01 * union.size, f"shot {board.shot}: {name}"
            blob = (np.minimum(picture[..., 0], picture[..., 2]) - picture[..., 1] > 50)[mask].mean()
            assert blob > 0.95 if name == "Mag" else blob < 0.01  # each cut from its own media

    # The lead alone is drawn as in a film of one (the pinned picture), under a hash that names the cast.
    assert pixels(root / boards[0].path, root / boards[0].mask_path) == BEFORE_CASTS["boards"][0][1]
    assert boards[0].input_hash != BEFORE_CASTS["boards"][0][0]
    assert clips[0].input_hash != BEFORE_CASTS["clips"][0]
    assert [c.num_frames for c in clips] == [6, 6, 6]
    assert all((root / c.path).stat().st_size > 0 for c in clips)

    # Another picture of Mag is another cast: every picture and clip is made again (the hashes name every
    # character's reference frames), the lead-alone shot's pixels as before.
    boards2, clips2 = cast_film(magenta_png(tmp_path / "mag2.png", width=150), tmp_path / "run2", script)
    assert all(a.input_hash != b.input_hash for a, b in zip(boards, boards2))
    assert all(a.input_hash != b.input_hash for a, b in zip(clips, clips2))
    assert pixels(tmp_path / "run2" / boards2[0].path) == pixels(root / boards[0].path)

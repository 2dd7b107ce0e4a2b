"""A video subject holds still in the film (issue 23, point 3), what the manifest says about the frames
left out, SAM 2 where its weights are cached, the `rules` Observer on a flickering cut-out, and a
picture with no subject refused by `storyagent run` (point 4)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.config import RunConfig
from storyagent.media import read_video, write_video
from storyagent.media.tracking import FLOW_TRACKED
from storyagent.models.animatic import SubjectSprites
from storyagent.schemas import StoryScript
from storyagent.tools.run import Run
from storyagent.workspace import MANIFEST
from tests.frontends.test_cli import cli
from tests.support.media import PAN, busy_background, figure_frame, write_figure_video
from tests.support.paths import ROOT


@pytest.fixture(autouse=True)
def no_sam2(monkeypatch):
    """The flow-tracked cut-out, whatever this machine's Hugging Face cache holds."""
    import storyagent.models.sam2 as sam2

    monkeypatch.setattr(sam2, "sam2_available", lambda: False)


def config(subject, **kw) -> RunConfig:
    base = dict(prompt="an astronaut lost in a jungle", subject=subject, name="Ann", class_word="astronaut", shots=3,
                width=256, height=160)
    return RunConfig.build(**(base | kw))


class StillSprites(SubjectSprites):
    """One sprite in every frame, laid out as the real sprite set is (same widest aspect)."""

    def __init__(self, sprite: np.ndarray, max_aspect: float) -> None:
        super().__init__([sprite])
        self._max_aspect = max_aspect

    @property
    def max_aspect(self) -> float:
        return self._max_aspect


def test_the_film_of_a_moving_figure_keeps_its_subject_area_within_each_shot(tmp_path):
    """The film's subject area, frame by frame, over what it is in the same shot rendered with one still
    sprite: the camera, the shot size and the character's action (a hop squashes it, a zoom grows it)
    divide out, what the changing cut-out does stays. Shots of 4 s cycle through all 16 reference frames.
    Before the change (per-frame GrabCut) this varied 12-16% within the shots of this film, and the
    `rules` Observer passed it; now about 7%, 5 points of it the figure itself, which grows wider than
    tall as it nears the camera (the frame's edge cuts its body). The Observer passes this one too."""
    clip = tmp_path / "astronaut.mp4"
    write_figure_video(clip)
    cfg = config(clip, shot_duration=4.0, review="rules")
    run_crew(cfg, tmp_path / "run", show_progress=False)
    transcript = json.loads((tmp_path / "run" / TRANSCRIPT).read_text())["sessions"][-1]["messages"]
    assert [m["content"] for m in transcript if m["speaker"] == "observer"] == ["good"] * 3

    with Run.open(cfg, tmp_path / "run", resume=True, show_progress=False) as run:
        script = StoryScript.model_validate_json((tmp_path / "run" / "story.json").read_text())
        sprites = run.backend.sprites
        assert len(sprites.sprites) == 16
        still = StillSprites(sprites.sprites[0], sprites.max_aspect)
        for shot in script.shots:
            seed = int(run.manifest.artifact(f"storyboard/shot_{shot.index:02d}")["meta"]["seed"])
            real, steady = run.backend.pipe(shot, sprites, seed=seed), run.backend.pipe(shot, still, seed=seed)
            # The render measured is the film's clip (up to the encoder's loss).
            made, _ = read_video(tmp_path / "run" / f"shots/shot_{shot.index:02d}.mp4", max_frames=1000)
            assert len(made) == len(real.frames) == 32
            assert np.abs(made[16].astype(np.int16) - real.frames[16]).mean() < 6
            area = np.array([m.sum() for m in real.masks]) / np.array([m.sum() for m in steady.masks])
            variation = (area.max() - area.min()) / np.median(area)
            assert variation < 0.1, f"shot {shot.index} ({shot.subject_action}): {variation:.1%}"


def glance_away_clip(path):
    """The figure clip whose 9th frame shows only the background (the camera glanced away)."""
    bg = busy_background(240 + PAN, 320 + PAN)
    frames = [figure_frame(i, background=bg)[0] for i in range(16)]
    frames[8] = bg[PAN // 2:PAN // 2 + 240, 10:330].copy()
    write_video(path, frames, 8)
    return path


def test_a_dropped_frame_is_left_out_of_the_sprites_and_said_in_the_manifest(tmp_path):
    clip = glance_away_clip(tmp_path / "astronaut.mp4")
    cfg = config(clip)
    with Run.open(cfg, tmp_path / "run", show_progress=False) as run:
        assert len(run.backend.sprites.sprites) == 15 and len(run.subject.subject.frames) == 15
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["subject_frames"] == 15
    dropped = {k: a for k, a in manifest["artifacts"].items() if a["kind"] == "dropped_subject_frame"}
    assert list(dropped) == ["subject/dropped_09"]
    meta = dropped["subject/dropped_09"]["meta"]
    assert meta["mask_method"] == FLOW_TRACKED and meta["source"].endswith("astronaut.mp4")
    assert "changed colour from the frame before" in meta["dropped"]
    assert (tmp_path / "run" / "subject" / "dropped_09.png").is_file()
    assert (tmp_path / "run" / "subject" / "dropped_09_mask.png").is_file()
    assert manifest["stages"]["subject"].startswith("done: frame 9 of astronaut.mp4 left out: ")
    methods = [manifest["artifacts"][f"subject/frame_{i:02d}"]["meta"]["mask_method"] for i in range(1, 16)]
    assert methods[0].startswith("grabcut") and set(methods[1:]) == {FLOW_TRACKED}

    # Resumed, the frames kept are read back, and the one dropped stays out.
    with Run.open(cfg, tmp_path / "run", resume=True, show_progress=False) as run:
        assert len(run.backend.sprites.sprites) == 15


class FakeSam2:
    """Stands in for `Sam2VideoMasks`: carries the first mask unchanged, and records what it was given."""

    made: list["FakeSam2"] = []
    name = "sam2 video"

    def __init__(self, device=None) -> None:
        self.device, self.calls, self.released = device, [], False
        FakeSam2.made.append(self)

    def __call__(self, frames, first_mask):
        self.calls.append((len(frames), first_mask.copy()))
        return [first_mask.copy() for _ in frames]

    def release(self) -> None:
        self.released = True


def test_sam2_carries_the_clip_where_its_weights_are_cached(tmp_path, monkeypatch):
    import storyagent.models.sam2 as sam2

    clip = tmp_path / "astronaut.mp4"
    write_figure_video(clip)
    with Run.open(config(clip), tmp_path / "flow", show_progress=False) as run:
        flow_hash = run.subject.input_hash
    monkeypatch.setattr(sam2, "sam2_available", lambda: True)
    monkeypatch.setattr(sam2, "Sam2VideoMasks", FakeSam2)
    FakeSam2.made.clear()
    with Run.open(config(clip), tmp_path / "sam2", show_progress=False) as run:
        ref = run.subject.reference
        assert run.subject.input_hash != flow_hash, "fetching SAM 2 later cuts the subject out again"
    [model] = FakeSam2.made
    assert len(model.calls) == 1 and model.calls[0][0] == 16 and model.released
    assert np.array_equal(model.calls[0][1], ref.masks[0])
    assert ref.mask_methods[0].startswith("grabcut") and set(ref.mask_methods[1:]) == {"sam2 video"}
    manifest = json.loads((tmp_path / "sam2" / MANIFEST).read_text())
    assert manifest["artifacts"]["subject/frame_02"]["meta"]["mask_method"] == "sam2 video"


def test_a_clip_without_sam2_weights_makes_a_film_without_torch(tmp_path):
    """A fresh interpreter with an empty Hugging Face cache: the flow-tracked cut-out, and no torch."""
    clip = tmp_path / "astronaut.mp4"
    write_figure_video(clip, n=6)
    code = ("import sys\nfrom storyagent.agents.crew import run_crew\nfrom storyagent.config import RunConfig\n"
            f"cfg = RunConfig.build(prompt='a day', subject={str(clip)!r}, name='Ann', shots=1, width=128, height=80)\n"
            f"run_crew(cfg, {str(tmp_path / 'run')!r}, show_progress=False)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("STORYAGENT_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["artifacts"]["subject/frame_02"]["meta"]["mask_method"] == FLOW_TRACKED


def test_the_rules_observer_flags_a_cut_out_that_jumps(tmp_path, monkeypatch):
    """Frame 6's cut-out loses its top half, as per-frame GrabCut lost the astronaut's head: the Observer
    names the frames and the jump at the clips stage, each round, until the stage is accepted as it is."""
    import storyagent.tools.subject as subject

    real = subject.load_reference

    def head_lost(*args, **kwargs):
        ref = real(*args, **kwargs)
        rows = np.flatnonzero(ref.masks[5].any(axis=1))
        ref.masks[5][: (rows[0] + rows[-1]) // 2] = False
        return ref

    monkeypatch.setattr(subject, "load_reference", head_lost)
    clip = tmp_path / "astronaut.mp4"
    write_figure_video(clip, n=8)
    run_crew(config(clip, shots=2, review="rules"), tmp_path / "run", show_progress=False)
    session = json.loads((tmp_path / "run" / TRANSCRIPT).read_text())["sessions"][-1]
    verdicts = [m["content"] for m in session["messages"] if m["speaker"] == "observer"]
    assert verdicts[:2] == ["good", "good"]  # the story and the storyboard
    assert len(verdicts) == 5
    assert all(v.startswith("redo 1,2: shot 1: the subject's cut-out shrinks") for v in verdicts[2:]), verdicts
    assert "between reference frames 5 and 6 (astronaut.mp4)" in verdicts[2]
    assert "video: accepted after 3 reviews" in session["events"]


def test_storyagent_run_refuses_a_grey_picture_in_one_line_and_keeps_nothing(tmp_path):
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    res = cli("run", "a grey day", "--subject", str(tmp_path / "grey.png"), "--out", str(tmp_path / "run"), "-q")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, res.stderr
    assert "No subject could be cut out of grey.png (the picture is a single flat colour)" in lines[0]
    assert "grey_mask.png" in lines[0] and "plain background" in lines[0]
    assert not list((tmp_path / "run").rglob("*.png")) and not list((tmp_path / "run").rglob("*.mp4"))


def test_the_real_sam2_classes_run_through_the_wiring(tmp_path, monkeypatch):
    """The tiny random SAM 2 (`storyagent.models.sam2.testing`) put where the weights registry looks:
    `Sam2VideoMasks` itself is called on the clip, once, and its masks are labelled and checked. Random
    weights carry the mask nowhere in particular, so which frames survive the checks is not asserted."""
    pytest.importorskip("transformers")
    import storyagent.models.sam2 as sam2
    from storyagent.models.sam2.pipeline import sam2_available
    from storyagent.models.sam2.testing import save_tiny_sam2_video
    from storyagent.weights import env_var

    monkeypatch.setattr(sam2, "sam2_available", sam2_available)  # the real one, which finds the tiny model
    monkeypatch.setenv(env_var(sam2.SAM2_WEIGHTS), str(save_tiny_sam2_video(tmp_path / "tiny_sam2")))
    calls = []
    real_call = sam2.Sam2VideoMasks.__call__

    def counted(self, frames, first_mask):
        calls.append(len(frames))
        return real_call(self, frames, first_mask)

    monkeypatch.setattr(sam2.Sam2VideoMasks, "__call__", counted)
    clip = tmp_path / "astronaut.mp4"
    write_figure_video(clip, n=6)
    with Run.open(config(clip, shots=1), tmp_path / "run", show_progress=False) as run:
        ref = run.subject.reference
    assert calls == [6]
    assert set(ref.mask_methods[1:]) <= {"sam2 video"} and len(ref.frames) + len(ref.dropped) == 6
    assert all(m.shape == (240, 320) and m.dtype == bool for m in ref.masks + [d.mask for d in ref.dropped])

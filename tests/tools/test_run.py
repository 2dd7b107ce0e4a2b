"""One home for a run: the backend registry, the one seed rule across stages, and what a reviewer
approved being what the next stage uses (issue 22)."""

import subprocess
import sys
import typing

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.media import read_video
from storyagent.models.animatic.layout import subtitle_band_height
from storyagent.tools.backends.animatic import AnimaticBackend
from storyagent.tools.backends.diffusion import DiffusionBackend
from storyagent.tools.run import BACKENDS, SEED_STRIDE, Run, backend_class
from tests.agents.test_human_review import ScriptedIO
from tests.support.paths import PIP, ROOT


def small(review: str = "none", **kw) -> RunConfig:
    return RunConfig.build(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=3,
                           width=256, height=160, fps=4, shot_duration=2.0, review=review, **kw)


def test_the_registry_is_the_one_map_from_name_to_backend(monkeypatch):
    assert set(BACKENDS) == set(typing.get_args(RunConfig.model_fields["backend"].annotation))
    assert backend_class("animatic") is AnimaticBackend and backend_class("diffusion") is DiffusionBackend
    with pytest.raises(InputError, match="Unknown backend 'wan'; choose one of animatic, diffusion"):
        backend_class("wan")
    backend_class("animatic")(small()).check()  # the animatic needs nothing
    monkeypatch.setattr("storyagent.weights.weights_available", lambda name: name != "anydoor")
    with pytest.raises(WeightsNotFoundError, match=r"--backend diffusion needs weights .*\(anydoor\).*weights fetch anydoor"):
        backend_class("diffusion")(small(backend="diffusion")).check()


def test_one_seed_rule_moves_with_each_take(tmp_path):
    with Run.open(small(seed=7), tmp_path, show_progress=False) as run:
        assert run.seed("storyboard", 2) == run.seed("video", 2) == 7 + 2
        run.manifest.add_redo("storyboard", [2], "", rewritten=set())
        assert run.seed("storyboard", 2) == 7 + 2 + SEED_STRIDE and run.seed("video", 2) == 7 + 2
        assert run.seed("storyboard", 1) == 7 + 1


def first_frame_error(root, shot: int) -> float:
    frames, _ = read_video(root / f"shots/shot_{shot:02d}.mp4", max_frames=1)
    picture = np.asarray(Image.open(root / f"storyboard/shot_{shot:02d}.png").convert("RGB"))
    above = picture.shape[0] - subtitle_band_height(picture.shape[0])  # the clip burns the narration in below
    return float(np.abs(frames[0][:above].astype(np.int16) - picture[:above].astype(np.int16)).mean())


@pytest.mark.parametrize("answer", ["redo 2", "redo 2: make it night", "redo 2: under a red umbrella"])
def test_a_clip_starts_from_the_picture_the_reviewer_approved(tmp_path, answer):
    """`chat`, answers ok / redo 2 / ok / ok: clip 2 starts from the redrawn storyboard/shot_02.png (within
    H.264 error) and clip 1 is the same file as before (issue 22's defect: 42 of 255 before the fix)."""
    run_crew(small(), tmp_path, show_progress=False)
    clip1 = (tmp_path / "shots/shot_01.mp4").read_bytes()
    old_picture = (tmp_path / "storyboard/shot_02.png").read_bytes()
    run_crew(small("human"), tmp_path, resume=True, show_progress=False, io=ScriptedIO(["ok", answer, "ok", "ok"]))
    assert (tmp_path / "storyboard/shot_02.png").read_bytes() != old_picture, "the redo drew a new picture"
    assert (tmp_path / "shots/shot_01.mp4").read_bytes() == clip1
    errors = [first_frame_error(tmp_path, shot) for shot in (1, 2, 3)]
    assert max(errors) < 6, errors  # H.264's error; another scene differs by tens of levels


def test_a_clip_redo_keeps_the_picture_and_moves_the_subject(tmp_path):
    run_crew(small(), tmp_path, show_progress=False)
    before, _ = read_video(tmp_path / "shots/shot_02.mp4", max_frames=100)
    run_crew(small("human"), tmp_path, resume=True, show_progress=False, io=ScriptedIO(["ok", "ok", "redo 2", "ok"]))
    after, _ = read_video(tmp_path / "shots/shot_02.mp4", max_frames=100)
    assert first_frame_error(tmp_path, 2) < 6
    middle = len(after) // 2
    assert np.abs(after[middle].astype(np.int16) - before[middle].astype(np.int16)).mean() > 0.5, "a new take moves"


def test_an_animatic_run_imports_no_torch(tmp_path):
    """The process boundary is the point: a fresh interpreter, one whole animatic film, then sys.modules."""
    code = ("import sys\nfrom storyagent.agents.crew import run_crew\nfrom storyagent.config import RunConfig\n"
            f"cfg = RunConfig.build(prompt='a day', subject={str(PIP)!r}, name='Pip', shots=2, width=128, height=80)\n"
            f"run_crew(cfg, {str(tmp_path / 'run')!r}, show_progress=False)\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers'))\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "run" / "film.mp4").is_file()

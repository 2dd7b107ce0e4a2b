"""The diffusion backend's storyboard with tiny random SDXL, Grounding DINO, SAM and AnyDoor: the
files it writes, the frames it records, a shot whose subject is not found, a redo of one shot, and
the storyboard pipeline loaded once for the run."""

import numpy as np
import pytest
from PIL import Image

from storyagent.config import RunConfig
from storyagent.models.langsam import LangSAMConfig
from storyagent.models.storyboard import StoryboardConfig, StoryboardPipeline
from storyagent.models.storydiffusion import StoryDiffusionConfig
from storyagent.schemas import Region, Shot, StoryScript, Subject
from storyagent.tools.backends.diffusion import DiffusionBackend
from storyagent.tools.run import Run
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace
from tests.support.diffusion import save_tiny_diffusion_weights
from tests.support.paths import ROOT

SIDE = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_diffusion_weights(tmp_path_factory.mktemp("weights"))


def load(weights, **langsam) -> StoryboardPipeline:
    cfg = StoryboardConfig(story=StoryDiffusionConfig(style="none"), langsam=LangSAMConfig(**langsam), width=SIDE,
                           height=SIDE, steps=2, num_identity=2)
    return StoryboardPipeline.from_pretrained(cfg, sdxl_path=weights["sdxl-base"],
                                              dino_path=weights["grounding-dino-base"], sam_path=weights["sam-vit-h"],
                                              anydoor_path=weights["anydoor"], removal="opencv", device="cpu")


@pytest.fixture(scope="module")
def found_pipe(weights):
    return load(weights, box_threshold=0.0, text_threshold=0.0)


def script(n: int = 3) -> StoryScript:
    places = ["a sunny beach", "a dark forest", "a snowy hill"]
    return StoryScript(title="Pip", logline="Pip travels.", shots=[
        Shot(index=i + 1, narration=f"line {i}", description=f"pip in {places[i]}", subject_action="hops",
             subject_region=Region.named("center"), background=places[i], shot_type="wide", camera_motion="static")
        for i in range(n)])


@pytest.fixture()
def subject(tmp_path):
    frames, masks = [], []
    for i, side in enumerate([6, 12]):
        frame = np.full((24, 24, 3), 200, np.uint8)
        frame[:side, :side] = (90, 60, 30)
        mask = np.zeros((24, 24), np.uint8)
        mask[:side, :side] = 255
        frames.append(tmp_path / f"f{i}.png")
        masks.append(tmp_path / f"m{i}.png")
        Image.fromarray(frame).save(frames[-1])
        Image.fromarray(mask).save(masks[-1])
    return Subject(name="Pip", class_word="rabbit", reference_media=[frames[0]], frames=frames, masks=masks)


def make_run(folder, subject: Subject, pipe: StoryboardPipeline | None = None) -> Run:
    cfg = RunConfig.build(prompt="a day", subject=ROOT / "examples" / "pip" / "pip.png", name="Pip",
                          class_word="rabbit", backend="diffusion", width=SIDE, height=SIDE, storyboard_side=SIDE,
                          steps=2, finetune="off", seed=5)
    backend = DiffusionBackend(cfg)
    backend._storyboard = pipe  # None: the backend loads it itself
    ws = Workspace.open(folder, inputs={}, resume=False)
    return Run(cfg, ws, backend, [PreparedSubject(subject=subject, reference=None, input_hash="pip")], False)


def png(run: Run, rel: str) -> np.ndarray:
    return np.asarray(Image.open(run.ws.path(rel)))


def test_the_storyboard_writes_every_picture_and_records_each_frame_once(found_pipe, subject, tmp_path):
    run = make_run(tmp_path / "run", subject, found_pipe)
    boards = run.backend.storyboard(run, script())
    assert [b.path for b in boards] == [f"storyboard/shot_0{i}.png" for i in (1, 2, 3)]
    for board in boards:
        name = f"storyboard/shot_{board.shot:02d}"
        initial, hole, removed = png(run, f"{name}_initial.png"), png(run, f"{name}_hole.png") > 127, \
            png(run, f"{name}_removed.png")
        final, mask = png(run, board.path), png(run, board.mask_path) > 127
        assert initial.shape == removed.shape == final.shape == (SIDE, SIDE, 3) and hole.shape == (SIDE, SIDE)
        np.testing.assert_array_equal(removed[~hole], initial[~hole])  # only the hole was refilled
        assert board.mask_path == f"{name}_mask.png" and 0 < mask.sum() < mask.size
        np.testing.assert_array_equal(final[~mask], removed[~mask])  # the redrawn subject alone was pasted
        assert board.meta["seed"] == run.seed("storyboard", board.shot) and board.meta["redraw"] and board.meta["found"]
        assert run.manifest.artifact(f"{name}_initial")["mask_path"] == f"{name}_hole.png"
        assert run.manifest.artifact(f"{name}_removed")["meta"]["method"] == "opencv"
    assert run.manifest.storyboard_identity["pass"]["seeds"] == [6, 7, 8], "the identity pass is kept in the manifest"


def test_a_subject_not_found_is_reported_in_the_frame_not_raised(weights, subject, tmp_path):
    run = make_run(tmp_path / "run", subject, load(weights, box_threshold=1.0))
    boards = run.backend.storyboard(run, script(2))
    assert [b.path for b in boards] == ["storyboard/shot_01_initial.png", "storyboard/shot_02_initial.png"]
    assert [b.meta["found"] for b in boards] == [False, False]
    assert boards[0].meta["reason"].startswith("shot 1: no 'rabbit' found")
    assert not (run.ws.root / "storyboard/shot_01_hole.png").exists()
    assert not (png(run, boards[0].mask_path) > 127).any()


def test_a_redo_draws_that_shot_alone_with_the_pipeline_loaded_once(weights, subject, tmp_path, monkeypatch):
    from storyagent.weights import env_var

    for name, path in weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    loads, calls = [], []
    load_pipe = StoryboardPipeline.from_pretrained.__func__
    monkeypatch.setattr(StoryboardPipeline, "from_pretrained",
                        classmethod(lambda cls, *a, **kw: (loads.append(1), load_pipe(cls, *a, **kw))[1]))
    call = StoryboardPipeline.__call__
    monkeypatch.setattr(StoryboardPipeline, "__call__",
                        lambda self, *a, only=None, **kw: (calls.append(list(only)), call(self, *a, only=only, **kw))[1])
    run = make_run(tmp_path / "run", subject)
    first = run.backend.storyboard(run, script())
    before = {p.name: p.read_bytes() for p in (run.ws.root / "storyboard").glob("shot_0[13]*.png")}
    run.manifest.add_redo("storyboard", [2], "under a red umbrella", rewritten=set())
    again = run.backend.storyboard(run, script())
    assert loads == [1], "one load for both passes"
    assert calls == [[0, 1, 2], [1]], "the redo draws shot 2 alone"
    assert [a == b for a, b in zip(again, first)] == [True, False, True]
    assert "under a red umbrella" in again[1].meta["prompt"] and again[1].meta["seed"] != first[1].meta["seed"]
    assert {p.name: p.read_bytes() for p in (run.ws.root / "storyboard").glob("shot_0[13]*.png")} == before
    run.backend.release()
    assert run.backend._storyboard is None, "release drops the pipeline"

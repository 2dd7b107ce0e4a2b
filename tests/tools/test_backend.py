"""The backend switch and the artifact keys: one backend object per run, every artifact recorded once."""

from collections import Counter

from types import SimpleNamespace

import numpy as np
from PIL import Image

from storyagent.config import RunConfig
from storyagent.models.langsam import SubjectMask
from storyagent.models.removal import SubjectRemover
from storyagent.models.storydiffusion.pipeline import StoryDiffusionOutput
from storyagent.schemas import Region, Shot, StoryScript, Subject
from storyagent.tools.backends.diffusion import DiffusionBackend
from storyagent.models.storyboard import StoryboardPipeline
from storyagent.models.storydiffusion import StoryDiffusionConfig
from storyagent.tools.per_shot import clip_path, frame_path, shot_key
from storyagent.tools.run import Run
from storyagent.workspace import Workspace

from tests.support.paths import ROOT
SIZE = 32


def run_config(**kw) -> RunConfig:
    return RunConfig.build(prompt="a day", subject=ROOT / "examples" / "pip" / "pip.png", name="Pip", **kw)


def test_per_shot_names_come_from_one_key():
    assert shot_key("storyboard", 3) == "storyboard/shot_03"
    assert frame_path(3) == "storyboard/shot_03.png" and clip_path(12) == "shots/shot_12.mp4"


class FakeStory:
    """Draws shot i from its own seed; records which shots each call drew."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.config = StoryDiffusionConfig(num_inference_steps=1)

    def __call__(self, shots, subject, seed=0, seeds=None, identity=None, only=None, output_type="np", on_step=None):
        only = list(range(len(shots))) if only is None else list(only)
        self.calls.append(only)
        return StoryDiffusionOutput(
            images=[np.random.default_rng(seeds[i]).random((SIZE, SIZE, 3)) if i in only else None
                    for i in range(len(shots))],
            prompts=[f"{subject}, {s}" if i in only else None for i, s in enumerate(shots)],
            identity=[0], identity_pass=identity)


class FakeLangSAM:
    """Finds the subject in every picture but the last."""

    def __call__(self, images, text):
        out = []
        for i, _ in enumerate(images):
            mask = np.zeros((SIZE, SIZE), bool)
            if i < len(images) - 1:
                mask[8:20, 10:22] = True
                out.append(SubjectMask(found=True, mask=mask, box=(10.0, 8.0, 22.0, 20.0), score=0.9))
            else:
                out.append(SubjectMask(found=False, mask=mask, reason=f"no '{text}' found"))
        return out


class FakeAnyDoor:
    """AnyDoor's call as the storyboard pipeline makes it: the target back unchanged, its whole frame as the
    paste box."""

    def __call__(self, reference_image, reference_mask, target_image, target_mask, **kw):
        h, w = target_image.shape[:2]
        return SimpleNamespace(image=target_image, paste_box=(0, 0, w, h))


def test_every_diffusion_storyboard_artifact_is_recorded_once(tmp_path, monkeypatch):
    from storyagent.tools.subject import PreparedSubject

    frames, masks = [], []
    for i in range(2):
        frame, mask = np.full((24, 24, 3), 200, np.uint8), np.zeros((24, 24), np.uint8)
        mask[4:16, 4:16] = 255
        frames.append(tmp_path / f"f{i}.png")
        masks.append(tmp_path / f"m{i}.png")
        Image.fromarray(frame).save(frames[-1])
        Image.fromarray(mask).save(masks[-1])
    subject = Subject(name="Pip", class_word="fox", reference_media=[frames[0]], frames=frames, masks=masks)
    script = StoryScript(title="Pip", logline="Pip travels.", shots=[
        Shot(index=i + 1, narration="line", description="pip on a beach", subject_action="hops",
             subject_region=Region.named("center"), background="a beach", shot_type="wide", camera_motion="static")
        for i in range(3)])
    ws = Workspace.open(tmp_path / "run", inputs={}, resume=False)
    recorded = Counter()
    record = ws.record
    monkeypatch.setattr(ws, "record", lambda key, artifact: (recorded.update([key]), record(key, artifact))[1])
    story = FakeStory()
    backend = DiffusionBackend(run_config(backend="diffusion", class_word="fox", width=64, height=64,
                                          storyboard_side=64, steps=1, finetune="off"))
    backend._storyboard = StoryboardPipeline(story, FakeLangSAM(), SubjectRemover(), FakeAnyDoor(), device="cpu")
    prepared = PreparedSubject(subject=subject, reference=None, input_hash="subject")
    run = Run(backend.cfg, ws, backend, [prepared], show_progress=False)
    boards = backend.storyboard(run, script)
    assert recorded and set(recorded.values()) == {1}, recorded
    assert [b.path for b in boards] == [frame_path(1), frame_path(2), "storyboard/shot_03_initial.png"]
    assert [b.meta["found"] for b in boards] == [True, True, False]
    assert boards[2].meta["reason"].startswith("shot 3: no 'fox' found")
    assert all(ws.manifest.artifact(shot_key("storyboard", i))["input_hash"] == boards[i - 1].input_hash for i in (1, 2, 3))
    # Nothing changed: the next call reuses every frame and records nothing.
    recorded.clear()
    assert backend.storyboard(run, script) == boards and not recorded
    # A new take of shot 2 draws shot 2 alone, from the same identity shots' pass.
    run.manifest.add_redo("storyboard", [2], "", rewritten=set())
    again = backend.storyboard(run, script)
    assert story.calls[-1] == [1] and {k for k in recorded if not k.endswith(("_initial", "_removed"))} == {
        "storyboard/shot_02"}
    assert [a == b for a, b in zip(again, boards)] == [True, False, True]

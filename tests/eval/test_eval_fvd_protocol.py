"""FVD as the field reports it (issue 26, item 5): on the protocol's own clips, with N stated in the
report (a rank-deficient covariance is what every small-sample FVD has), 16-frame clips where the
source has them (FlintstonesSV's 5-frame release: its source videos), "n/a" only where no clip can
be made."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storyagent.eval.dataset_protocol import evaluate_dataset
from storyagent.eval.dataset_split import resolve_split
from storyagent.eval.datasets import FlintstonesIndex, PororoIndex
from storyagent.eval.geometry import FrameGeometry
from storyagent.eval.i3d import I3D, I3DConfig
from tests.eval.test_eval_dataset import (
    EPISODES,
    scene,
    tiny_split,
    write_flintstones,
    write_pororo,
)

GEOMETRY = FrameGeometry(32, 48, "letterbox")


@pytest.fixture(scope="module")
def i3d16():
    """A tiny I3D with 16 logits: the protocol's 8 test shots are fewer than its dimensions."""
    torch.manual_seed(0)
    model = I3D(I3DConfig(num_classes=16, width_mult=1 / 16))
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


class SourceAnimator:
    """A perfect animator of the source: from a shot's first frame, the clip's 16-frame source video
    (aligned), as many frames as asked for (it records how many)."""

    name = "source"

    def __init__(self, sources: dict[bytes, list[np.ndarray]]):
        self.sources, self.asked = sources, []

    def finetune(self, character, media):
        return {}

    def use(self, character, finetunes):
        pass

    def __call__(self, first, mask, reference, text, num_frames, character=""):
        self.asked.append(num_frames)
        video = self.sources[first.tobytes()]
        return [video[min(i, len(video) - 1)] for i in range(num_frames)]


def flintstones_release(root, sources: bool, skip: set[int] = frozenset()):
    """FlintstonesSV as released (5-frame clips), with each clip's 16-frame source video in video_frames/
    (`sources`), except the clips numbered in `skip`."""
    write_flintstones(root)
    n = 0
    for episode, count in EPISODES.items():
        for k in range(count):
            gid = f"{episode}_shot_{k:06d}_{k + 1:06d}"
            np.save(root / "video_frames_sampled" / f"{gid}.npy", np.stack(scene(n, t=5)))
            if sources and n not in skip:
                (root / "video_frames").mkdir(exist_ok=True)
                np.save(root / "video_frames" / f"{gid}.npy", np.stack(scene(n, t=16)))
            n += 1
    return root


def animator_for(root) -> SourceAnimator:
    sources = {}
    for gid in sorted(p.stem for p in (root / "video_frames_sampled").glob("*.npy")):
        video = np.load(root / "video_frames_sampled" / f"{gid}.npy")
        full = root / "video_frames" / f"{gid}.npy"
        frames = np.load(full) if full.exists() else video
        sources[GEOMETRY.align(video[0]).tobytes()] = [GEOMETRY.align(f) for f in frames]
    return SourceAnimator(sources)


def run(root, fmt, i3d):
    index = FlintstonesIndex(root) if fmt == "flintstones" else PororoIndex(root)
    characters = resolve_split(tiny_split(fmt, ["wilma" if fmt == "flintstones" else "crong"]), index)
    animator = animator_for(root) if fmt == "flintstones" else None
    if animator is None:  # PororoSV: the clips are 16 frames themselves
        animator = SourceAnimator({})
        for info in index.of("crong"):
            frames = index.load(info.clip_id, "crong").frames
            animator.sources[GEOMETRY.align(frames[0]).tobytes()] = [GEOMETRY.align(f) for f in frames]
    result = evaluate_dataset(index, characters, animator, GEOMETRY, root / "out", None, i3d, show_progress=False)
    return result, animator


def test_flintstones_release_alone_has_no_fvd_clip_and_says_where_to_find_one(tmp_path, i3d16):
    result, animator = run(flintstones_release(tmp_path / "fl", sources=False), "flintstones", i3d16)
    assert len(result.rows) == 8 and set(animator.asked) == {5}  # nothing to compare 16 frames with: 5 asked
    fvd = result.summary["FVD"]
    assert fvd.startswith("n/a (no ground-truth clip of 16 frames") and "video_frames/<globalID>.npy" in fvd
    assert any("FVD leaves out 8 shots" in n for n in result.notes)


def test_flintstones_source_videos_give_16_frame_clips_and_n_is_stated(tmp_path, i3d16):
    result, animator = run(flintstones_release(tmp_path / "fl", sources=True), "flintstones", i3d16)
    # 16 frames asked for: the FVD clip; 5 of them, evenly spaced, compared with the released 5.
    assert set(animator.asked) == {16} and len(result.rows) == 8
    assert result.summary["FVD"] == pytest.approx(0.0, abs=1e-4) and result.summary["FVD clips"] == 8
    note = next(n for n in result.notes if n.startswith("FVD on N = 8 generated and 8 ground-truth clips of 16 frames"))
    assert "16-dim" in note and "rank-deficient" in note and "same N" in note
    # A perfect animator of the source is not one of the 5-frame release: SSIM compares what was released.
    assert result.summary["SSIM"] < 1


def test_a_shot_without_a_source_video_is_left_out_and_named(tmp_path, i3d16):
    root = flintstones_release(tmp_path / "fl", sources=True, skip={5, 9})
    result, _ = run(root, "flintstones", i3d16)
    assert result.summary["FVD clips"] == 6 and isinstance(result.summary["FVD"], float)
    assert any(n.startswith("FVD leaves out 2 shots with no 16-frame ground-truth clip") for n in result.notes)


def test_pororo_clips_are_their_own_fvd_clips_below_the_feature_dimension(tmp_path, i3d16):
    result, animator = run(write_pororo(tmp_path / "po"), "pororo", i3d16)
    assert set(animator.asked) == {16} and result.summary["FVD clips"] == 8
    # Computed on N = 8 < 17 clips (no longer refused): 0 for the perfect animator.
    assert result.summary["FVD"] == pytest.approx(0.0, abs=1e-4)
    assert any(n.startswith("FVD on N = 8") for n in result.notes)


def test_cli_report_states_n(tmp_path, i3d16):
    from typer.testing import CliRunner

    from storyagent.commands.eval import app

    root = write_pororo(tmp_path / "po")
    torch.save(i3d16.state_dict(), tmp_path / "i3d.pt")
    # The CLI builds the full-width I3D: load the tiny one's checkpoint into the tiny one instead.
    from storyagent.eval import i3d as i3d_module

    def tiny(path):
        model = I3D(I3DConfig(num_classes=16, width_mult=1 / 16))
        model.load_state_dict(torch.load(path, weights_only=True))
        return model

    mp = pytest.MonkeyPatch()
    mp.setattr(i3d_module, "load_i3d", tiny)
    try:
        result = CliRunner().invoke(app, ["dataset", str(root), "--format", "pororo", "--method", "animatic",
                                          "--characters", "crong", "--samples", "1", "--size", "48x32", "--i3d",
                                          str(tmp_path / "i3d.pt"), "--out", str(tmp_path / "rep"), "-q"])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "table1.md").read_text()
    assert "FVD on N = 4 generated and 4 ground-truth clips of 16 frames" in md
    ours = json.loads((tmp_path / "rep" / "results.json").read_text())["summary"]
    assert isinstance(ours["FVD"], float) and ours["FVD clips"] == 4

import csv
import json

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.eval import app as eval_app
from storyagent.eval.datasets import StillCompositeBaseline, SubjectReference, read_flintstones, read_pororo
from storyagent.eval.i3d import I3D, I3DConfig
from storyagent.eval.lpips import LPIPS


def scene(seed, side=64, t=4, subject_at=20):
    """A clip: a smooth background with a red square 'character' drifting right."""
    rng = np.random.default_rng(seed)
    bg = np.linspace(40, 200, side, dtype=np.float32)[None, :, None] * np.ones((side, 1, 3), np.float32)
    bg = (bg + rng.normal(0, 3, (side, side, 3))).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(t):
        f = bg.copy()
        f[subject_at:subject_at + 20, 10 + 2 * i:30 + 2 * i] = (220, 30, 30)
        frames.append(f)
    return frames


def write_flintstones(root, n=2):
    (root / "video_frames_sampled").mkdir(parents=True)
    ann = []
    for i in range(n):
        gid = f"s_01_e_01_shot_{i:06d}"
        np.save(root / "video_frames_sampled" / f"{gid}.npy", np.stack(scene(i)))
        ann.append({"globalID": gid, "description": "Fred walks.", "characters": [
            {"entityLabel": "Fred", "labelNPC": "fred", "rectangles": [[8, 18, 32, 42]]}]})
    ann.append({"globalID": "other", "description": "x", "characters": [{"entityLabel": "Wilma", "rectangles": [[0, 0, 5, 5]]}]})
    (root / "flintstones_annotations_v1-0.json").write_text(json.dumps(ann))


def test_readers_and_baseline(tmp_path):
    write_flintstones(tmp_path / "fl")
    clips = list(read_flintstones(tmp_path / "fl", "fred"))
    assert [c.clip_id for c in clips] == ["s_01_e_01_shot_000000", "s_01_e_01_shot_000001"]
    assert clips[0].subject_mask[30, 20] and not clips[0].subject_mask[5, 60]
    (tmp_path / "po" / "pororo_png" / "ep1").mkdir(parents=True)
    Image.fromarray(np.concatenate(scene(3, t=3))).save(tmp_path / "po" / "pororo_png" / "ep1" / "0.png")
    (tmp_path / "po" / "descriptions.csv").write_text("ep1/0,Pororo plays.\n")
    po = list(read_pororo(tmp_path / "po"))
    assert len(po) == 1 and len(po[0].frames) == 3 and po[0].text == "Pororo plays."
    assert po[0].subject_mask[25:35, 15:25].mean() > 0.5  # GrabCut found the red square

    gen = StillCompositeBaseline()
    clip = clips[0]
    out = gen(clip.frames[0], clip.subject_mask, SubjectReference([clip.frames[0]], [clip.subject_mask]), "", 4)
    assert len(out) == 4 and out[0].shape == clip.frames[0].shape
    # Redrawn with itself as the reference, the first frame is rebuilt closely.
    assert np.abs(out[0].astype(int) - clip.frames[0]).mean() < 12


def test_eval_dataset_cli_with_tiny_lpips_and_i3d(tmp_path):
    write_flintstones(tmp_path / "fl", n=3)
    torch.manual_seed(0)
    lp = LPIPS("alex")
    torch.save({k: v for k, v in lp.state_dict().items() if k.startswith("features.")}, tmp_path / "alex.pth")
    torch.save({f"lin{i}.model.1.weight": l.weight.data.abs() for i, l in enumerate(lp.lins)}, tmp_path / "heads.pth")
    i3d = I3D(I3DConfig(num_classes=8, width_mult=1 / 16))
    torch.save(i3d.state_dict(), tmp_path / "i3d.pt")
    result = CliRunner().invoke(eval_app, [
        "dataset", str(tmp_path / "fl"), "--format", "flintstones", "--character", "fred", "--out", str(tmp_path / "rep"),
        "--lpips-heads", str(tmp_path / "heads.pth"), "--lpips-backbone", str(tmp_path / "alex.pth"),
        "--i3d", str(tmp_path / "i3d.pt"), "-q"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "dataset_metrics.md").read_text()
    assert "| Method | FVD↓ | SSIM↑ | PSNR↑ | LPIPS↓ |" in md
    rows = list(csv.DictReader((tmp_path / "rep" / "dataset_clips.csv").open()))
    assert len(rows) == 3 and all(0 < float(r["SSIM"]) <= 1 for r in rows) and all(float(r["LPIPS"]) > 0 for r in rows)
    assert (tmp_path / "rep" / "ssim_per_clip.png").exists()


def test_eval_dataset_bad_folder(tmp_path):
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path), "--format", "flintstones", "-q"])
    assert result.exit_code == 2 and "not a FlintstonesSV folder" in result.output
    result = CliRunner().invoke(eval_app, ["dataset", str(tmp_path), "--format", "ucf", "-q"])
    assert result.exit_code == 2 and "pororo or flintstones" in result.output


def test_flintstones_boxes_on_the_source_video_are_rescaled(tmp_path):
    root = tmp_path / "fl"
    (root / "video_frames_sampled").mkdir(parents=True)
    np.save(root / "video_frames_sampled" / "g1.npy", np.stack(scene(0)))
    # The red square sits at x 10..30, y 20..40 of a 64×64 frame: ×10 and ×7.5 on 640×480.
    ann = [{"globalID": "g1", "description": "", "characters": [
        {"entityLabel": "Fred", "rectangles": [[80, 135, 320, 315]]}]}]
    (root / "flintstones_annotations_v1-0.json").write_text(json.dumps(ann))
    clip = next(read_flintstones(root, "fred"))
    ys, xs = np.nonzero(clip.subject_mask)
    assert 5 <= xs.min() <= 14 and 26 <= xs.max() <= 34 and 15 <= ys.min() <= 24

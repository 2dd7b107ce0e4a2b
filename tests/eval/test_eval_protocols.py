import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.eval import app as eval_app
from storyagent.eval.report import (
    bar_plot, curve_plot, markdown_table, nice_ticks, shot_label_positions, tick_label, write_tables)


def render_run(tmp_path, name, subject):
    from storyagent.cli import app as cli_app

    out = tmp_path / name
    result = CliRunner().invoke(cli_app, ["run", "a day at the seaside", "--subject", str(subject), "--name", "Pip",
                                          "--shots", "2", "--width", "128", "--height", "96", "--fps", "4",
                                          "--duration", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def swapped_subject(tmp_path, pip_png):
    """Another character: Pip with its hue turned (an orange fox becomes a blue one), same shape."""
    rgba = Image.open(pip_png).convert("RGBA")
    hsv = np.asarray(rgba.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 128) % 256
    rgb = Image.fromarray(hsv, "HSV").convert("RGB")
    out = tmp_path / "blue.png"
    Image.merge("RGBA", (*rgb.split(), rgba.getchannel("A"))).save(out)
    return out


@pytest.mark.slow
def test_compare_two_animatic_runs_true_subject_scores_higher(tmp_path, pip_png):
    true_run = render_run(tmp_path, "true", pip_png)
    swapped_run = render_run(tmp_path, "swapped", swapped_subject(tmp_path, pip_png))
    report = tmp_path / "report"
    result = CliRunner().invoke(eval_app, ["compare", str(true_run), str(swapped_run), "--subject", str(pip_png),
                                           "--labels", "true,swapped", "--out", str(report), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    md = (report / "compare.md").read_text()
    assert "| Method | Warping error↓ | Flow score |" in md and "| true |" in md and "| swapped |" in md
    rows = {r["Method"]: r for r in csv.DictReader((report / "compare.csv").open())}
    assert set(rows) == {"true", "swapped"}
    key = "Subject (fallback: lighting-normalised colour+shape)"
    assert float(rows["true"][key]) > float(rows["swapped"][key]) + 0.05
    for png in ("subject_per_shot_fallback.png", "subject_per_frame_fallback.png"):
        with Image.open(report / png) as img:
            assert img.format == "PNG" and img.size[0] > 300
            # The plot holds both runs' colours, not a blank canvas.
            colours = {c for _, c in img.convert("RGB").getcolors(1 << 16)}
            assert (31, 119, 180) in colours and (255, 127, 14) in colours


@pytest.mark.slow
def test_eval_film_writes_per_shot_table(tmp_path, pip_png):
    run = render_run(tmp_path, "run", pip_png)
    result = CliRunner().invoke(eval_app, ["film", str(run), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((run / "eval" / "film_metrics.csv").open()))
    assert [r["Shot"] for r in rows] == ["1", "2", "mean"]
    assert float(rows[0]["Warping error"]) >= 0 and float(rows[0]["Flow score"]) > 0
    assert 0 < float(rows[-1]["Inter-shot (fallback: lighting-normalised colour+shape)"]) <= 1.0001
    assert "Farnebäck" in (run / "eval" / "film_metrics.md").read_text()


def test_eval_film_bad_inputs_one_sentence(tmp_path):
    result = CliRunner().invoke(eval_app, ["film", str(tmp_path), "--no-cache", "-q"])
    assert result.exit_code == 2 and "not a StoryAgent run" in result.output
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    result = CliRunner().invoke(eval_app, ["film", str(tmp_path), "--no-cache", "-q"])
    assert result.exit_code == 2 and "story.json" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(eval_app, ["film", str(tmp_path), "--clip", str(tmp_path / "nope"), "-q"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_markdown_table_marks_direction_and_best(tmp_path):
    rows = [{"Method": "a", "FVD": 100.0, "SSIM": 0.5}, {"Method": "b", "FVD": 80.0, "SSIM": 0.4}]
    md = markdown_table(rows, ["FVD", "SSIM"], "Method")
    assert "| Method | FVD↓ | SSIM↑ |" in md
    assert "| a | 100 | **0.5** |" in md and "| b | **80** | 0.4 |" in md
    md_path, csv_path = write_tables(rows, ["FVD", "SSIM"], "Method", tmp_path / "t", "T", ["a note"])
    assert "- a note" in md_path.read_text()
    assert csv_path.read_text().splitlines()[1] == "a,100.0,0.5"


@pytest.mark.slow
def test_eval_film_with_tiny_clip_and_aesthetic_head(tmp_path, pip_png):
    import torch

    from storyagent.models.aesthetic import AestheticHead, AestheticHeadConfig
    from tests.support.eval import tiny_clip_encoder

    tiny_clip_encoder(tmp_path)  # writes tmp_path/clip (model, image processor, tokenizer)
    torch.save(AestheticHead(AestheticHeadConfig(embed_dim=8, hidden_dims=(16, 8, 8, 4))).state_dict(),
               tmp_path / "head.pth")
    run = render_run(tmp_path, "run", pip_png)
    result = CliRunner().invoke(eval_app, ["film", str(run), "--clip", str(tmp_path / "clip"), "--aesthetic-head",
                                           str(tmp_path / "head.pth"), "--no-cache", "--out", str(tmp_path / "rep"), "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "rep" / "film_metrics.csv").open()))
    for key in ("CLIP-score", "CLIP-temp", "Aesthetic", "Subject (clip)", "Inter-shot (clip)"):
        assert rows[-1][key] != "", key
    assert 0 < float(rows[0]["CLIP-temp"]) <= 1.0001
    # The report shares one CLIP between the metrics and the aesthetic head; the standalone predictor agrees.
    from storyagent.models.aesthetic import AestheticPredictor

    predictor = AestheticPredictor.from_pretrained(clip_path=tmp_path / "clip", head_path=tmp_path / "head.pth")
    board = np.asarray(Image.open(run / "storyboard" / "shot_01.png").convert("RGB"))
    assert float(rows[0]["Aesthetic"]) == pytest.approx(predictor([board])[0], abs=1e-4)
    assert (tmp_path / "rep" / "subject_per_frame_clip.png").exists()


# ---- plots ------------------------------------------------------------------------------------

def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.12, 0.87) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 137) == [0, 50, 100, 150]
    assert [tick_label(v, nice_ticks(0.12, 0.87)) for v in nice_ticks(0.12, 0.87)] == ["0.0", "0.2", "0.4", "0.6",
                                                                                        "0.8", "1.0"]
    assert [tick_label(v, nice_ticks(0, 1, 5)) for v in nice_ticks(0, 1, 5)] == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    rng = np.random.default_rng(0)
    for lo, hi in rng.uniform(-50, 50, (200, 2)) * rng.choice([0.001, 1, 100], (200, 1)):
        ticks = nice_ticks(lo, hi)
        lo, hi = min(lo, hi), max(lo, hi)
        steps = np.diff(ticks)
        assert 2 <= len(ticks) <= 6 and ticks[0] <= lo and ticks[-1] >= hi
        assert np.allclose(steps, steps[0]), ticks
        # A step is 1, 2, 2.5 or 5 times a power of ten, and every tick is a multiple of it.
        mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
        assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 2.5, 5)), ticks
        assert all(abs(t / steps[0] - round(t / steps[0])) < 1e-6 for t in ticks)
    assert nice_ticks(0.5, 0.5)[0] < 0.5 < nice_ticks(0.5, 0.5)[-1]


def test_shot_labels_sit_in_the_middle_of_each_shot():
    assert shot_label_positions([8, 16], 24) == [(3.5, "shot 1"), (11.5, "shot 2"), (19.5, "shot 3")]
    assert shot_label_positions([], 5) == [(2.0, "shot 1")]
    assert shot_label_positions([3], 10, ["a", "b"]) == [(1.0, "a"), (6.0, "b")]


def ink_columns(img, y0, y1) -> np.ndarray:
    """x positions where a band of rows holds dark (text) pixels."""
    band = np.asarray(img.convert("L"))[y0:y1]
    return np.flatnonzero((band < 100).any(axis=0))


def test_plots_label_every_shot_under_the_axis(tmp_path):
    shots = [f"shot {i + 1}" for i in range(4)]
    with_labels = bar_plot(shots, {"run": [0.5, 0.7, 0.2, 0.9]}, "T", "cosine similarity", tmp_path / "b.png",
                           y_range=(0.0, 1.0))
    without = bar_plot([""] * 4, {"run": [0.5, 0.7, 0.2, 0.9]}, "T", "cosine similarity", tmp_path / "n.png",
                       y_range=(0.0, 1.0))
    img, blank = Image.open(with_labels), Image.open(without)
    bottom = img.size[1] - 56  # the axis' lower edge
    ink, ink_blank = ink_columns(img, bottom + 6, bottom + 24), ink_columns(blank, bottom + 6, bottom + 24)
    text = np.setdiff1d(ink, ink_blank)
    group_w = (img.size[0] - 170 - 70) / 4
    for g in range(4):
        centre = 70 + (g + 0.5) * group_w
        assert (np.abs(text - centre) < group_w / 3).any(), f"no label under group {g}"
    curve = curve_plot({"run": [0.5] * 12}, "T", "cosine similarity", "frame", tmp_path / "c.png", breaks=[4, 8],
                       y_range=(0.0, 1.0))
    ink_curve = ink_columns(Image.open(curve), bottom + 6, bottom + 24)
    for pos, _ in shot_label_positions([4, 8], 12):
        centre = 70 + (img.size[0] - 170 - 70) * pos / 11
        assert (np.abs(ink_curve - centre) < 20).any(), f"no shot label at frame {pos}"

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.eval import app as eval_app
from storyagent.eval.report import markdown_table, write_tables

PIP = "examples/pip/pip.png"


def render_run(tmp_path, name, subject):
    from storyagent.cli import app as cli_app

    out = tmp_path / name
    result = CliRunner().invoke(cli_app, ["run", "a day at the seaside", "--subject", str(subject), "--name", "Pip",
                                          "--shots", "2", "--width", "128", "--height", "96", "--fps", "4",
                                          "--duration", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def swapped_subject(tmp_path):
    """Another character: Pip with its hue turned (an orange fox becomes a blue one), same shape."""
    rgba = Image.open(PIP).convert("RGBA")
    hsv = np.asarray(rgba.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 128) % 256
    rgb = Image.fromarray(hsv, "HSV").convert("RGB")
    out = tmp_path / "blue.png"
    Image.merge("RGBA", (*rgb.split(), rgba.getchannel("A"))).save(out)
    return out


@pytest.mark.slow
def test_compare_two_animatic_runs_true_subject_scores_higher(tmp_path):
    true_run = render_run(tmp_path, "true", PIP)
    swapped_run = render_run(tmp_path, "swapped", swapped_subject(tmp_path))
    report = tmp_path / "report"
    result = CliRunner().invoke(eval_app, ["compare", str(true_run), str(swapped_run), "--subject", PIP,
                                           "--labels", "true,swapped", "--out", str(report), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    md = (report / "compare.md").read_text()
    assert "| Method | Warping error↓ | Flow score |" in md and "| true |" in md and "| swapped |" in md
    rows = {r["Method"]: r for r in csv.DictReader((report / "compare.csv").open())}
    assert set(rows) == {"true", "swapped"}
    key = "Subject (color-hist)"
    assert float(rows["true"][key]) > float(rows["swapped"][key]) + 0.05
    for png in ("subject_per_shot_color-hist.png", "subject_per_frame_color-hist.png"):
        with Image.open(report / png) as img:
            assert img.format == "PNG" and img.size[0] > 300
            # The plot holds both runs' colours, not a blank canvas.
            colours = {c for _, c in img.convert("RGB").getcolors(1 << 16)}
            assert (31, 119, 180) in colours and (255, 127, 14) in colours


@pytest.mark.slow
def test_eval_film_writes_per_shot_table(tmp_path):
    run = render_run(tmp_path, "run", PIP)
    result = CliRunner().invoke(eval_app, ["film", str(run), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((run / "eval" / "film_metrics.csv").open()))
    assert [r["Shot"] for r in rows] == ["1", "2", "mean"]
    assert float(rows[0]["Warping error"]) >= 0 and float(rows[0]["Flow score"]) > 0
    assert 0 < float(rows[-1]["Inter-shot (color-hist)"]) <= 1.0001
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
def test_eval_film_with_tiny_clip_and_aesthetic_head(tmp_path):
    import torch

    from storyagent.models.aesthetic import AestheticHead, AestheticHeadConfig
    from test_eval_metrics import tiny_clip_encoder

    tiny_clip_encoder(tmp_path)  # writes tmp_path/clip (model, image processor, tokenizer)
    torch.save(AestheticHead(AestheticHeadConfig(embed_dim=8, hidden_dims=(16, 8, 8, 4))).state_dict(),
               tmp_path / "head.pth")
    run = render_run(tmp_path, "run", PIP)
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

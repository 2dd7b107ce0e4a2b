"""`storyagent finetune video` through typer's CliRunner, on a tiny saved DynamiCrafter."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.finetune_video import app
from storyagent.models.dynamicrafter import DynamiCrafterPipeline
from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import load_adapter



def subject_folder(path):
    path.mkdir()
    for i in range(2):
        rgba = np.zeros((40, 40, 4), np.uint8)
        rgba[..., :3] = (30, 60, 200)
        rgba[8 + i : 30 + i, 10:28] = (240, 200, 20, 255)  # the subject, opaque
        Image.fromarray(rgba, "RGBA").save(path / f"pose{i}.png")
    return path


def test_finetune_video_writes_an_adapter_and_resumes(tmp_path):
    weights = tiny_pipeline().save_pretrained(tmp_path / "dc")
    subject = subject_folder(tmp_path / "subject")
    out = tmp_path / "miffy.safetensors"
    args = ["video", "--subject", str(subject), "--token", "<miffy>", "--class-word", "rabbit", "--out", str(out),
            "--weights", str(weights), "--epochs", "1", "--checkpoint-every", "1", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 clips, 2 steps" in result.output
    pipe = DynamiCrafterPipeline.from_pretrained(weights)
    assert load_adapter(pipe, out).token == "<miffy>"

    # Asking for more epochs later continues from the checkpoint instead of starting over.
    result = CliRunner().invoke(app, [*args[:-7], "--epochs", "2", "--checkpoint-every", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Resuming from step 2" in result.output and "4 steps" in result.output


def test_missing_subject_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["video", "--subject", str(tmp_path / "nope"), "--token", "<x>",
                                      "--class-word", "dog", "--weights", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_segmenter_masks_replace_the_cut_out_where_the_subject_is_found(tmp_path):
    from types import SimpleNamespace

    from storyagent.commands.finetune_video import load_subject_clips

    subject = subject_folder(tmp_path / "subject")
    cutout = load_subject_clips(subject)
    calls = []

    def segmenter(images, text):
        # A LangSAM stand-in: finds the subject in the first image only, as a left-half mask.
        calls.append(text)
        out = []
        for i, im in enumerate(images):
            m = np.zeros(im.shape[:2], bool)
            m[:, : im.shape[1] // 2] = True
            out.append(SimpleNamespace(found=i == 0, mask=m))
        return out

    clips = load_subject_clips(subject, class_word="rabbit", segmenter=segmenter)
    assert calls == ["rabbit"]
    assert clips[0].masks[0][:, :20].all() and not clips[0].masks[0][:, 20:].any()
    assert np.array_equal(clips[1].masks, cutout[1].masks)  # not found: the cut-out stays
    # The cut-out itself follows the photo's alpha channel.
    assert cutout[0].masks[0, 8:30, 10:28].all() and not cutout[0].masks[0, :8].any()

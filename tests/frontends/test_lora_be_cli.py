"""`storyagent finetune video` through typer's CliRunner, on a tiny saved DynamiCrafter."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from storyagent.commands.finetune_video import app
from storyagent.models.dynamicrafter import DynamiCrafterPipeline
from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import load_adapter, load_subject_clips


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
    assert "2 of 2 clips are photos: they train appearance only" in result.output
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


def test_langsam_masks_where_it_finds_the_subject_and_grabcut_elsewhere(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from storyagent.commands.finetune_video import pick_segmenter
    from storyagent.media import media_files, segment_subject
    from storyagent.models.langsam import LangSAMPipeline

    subject = tmp_path / "subject"
    subject.mkdir()
    for i in range(2):  # plain RGB photos: no alpha channel, so the segmenter decides
        rgb = np.full((40, 40, 3), (30, 60, 200), np.uint8)
        rgb[8 + i : 30 + i, 10:28] = (240, 200, 20)
        Image.fromarray(rgb).save(subject / f"pose{i}.png")
    calls = []

    def fake_langsam(images, text):
        # A LangSAM stand-in: finds the subject in the first photo only, as a left-half mask.
        calls.append(text)
        out = []
        for im in images:
            m = np.zeros(im.shape[:2], bool)
            m[:, : im.shape[1] // 2] = True
            out.append(SimpleNamespace(found=len(calls) == 1, mask=m))
        return out

    monkeypatch.setattr(LangSAMPipeline, "from_pretrained", classmethod(lambda cls, **kw: fake_langsam))
    assert pick_segmenter("cutout", "cpu", "rabbit") is None
    segment = pick_segmenter("langsam", "cpu", "rabbit")
    clips = load_subject_clips(media_files(subject), segment=segment)
    assert calls == ["rabbit", "rabbit"]
    assert clips[0].mask_methods == ["langsam"]
    assert clips[0].masks[0][:, :20].all() and not clips[0].masks[0][:, 20:].any()
    mask, how = segment_subject(clips[1].frames[0])  # not found: the GrabCut cut-out, labelled as such
    assert clips[1].mask_methods == [f"{how} (LangSAM found no rabbit)"] and how.startswith("grabcut")
    assert np.array_equal(clips[1].masks[0], mask)

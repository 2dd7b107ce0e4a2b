"""StoryAnyDoor fine-tuning on a tiny random AnyDoor: what trains, checkpoints, resume, LoRA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storyagent.errors import InputError
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.anydoor.testing import tiny_config, tiny_pipeline
from storyagent.models.anydoor.training import StoryAnyDoorTrainer, StoryAnyDoorTrainingConfig


def _frames(n=3, size=96):
    rng = np.random.default_rng(0)
    frames, masks = [], []
    for k in range(n):
        frame = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), bool)
        mask[20 + 5 * k:60 + 5 * k, 25:70 - 3 * k] = True
        frames.append(frame)
        masks.append(mask)
    return frames, masks


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    config = tiny_config()
    config.sampling.latent_hw = (8, 8)  # 64 px crops keep CPU backward passes short
    pipe = tiny_pipeline(config)
    with torch.no_grad():  # diffusers zero-initialises ControlNet outputs; give them a value so gradients reach everything
        for p in pipe.controlnet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return pipe.save_pretrained(tmp_path_factory.mktemp("anydoor"))


def _settings(**kw):
    return StoryAnyDoorTrainingConfig(**{"steps": 2, "checkpoint_every": 1, "learning_rate": 1e-3, **kw})


def _snapshot(pipe):
    return {f"{n}.{k}": v.detach().clone() for n in ("unet", "controlnet", "vae", "image_encoder")
            for k, v in getattr(pipe, n).state_dict().items()}


def test_a_step_changes_only_controlnet_unet_decoder_and_projector(tiny_folder, tmp_path):
    pipe = AnyDoorPipeline.from_pretrained(tiny_folder)
    before = _snapshot(pipe)
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "run", _settings())
    loss = trainer.train_step()
    assert np.isfinite(loss) and loss > 0
    after = _snapshot(pipe)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable_prefixes = ("controlnet.", "unet.up_blocks.", "unet.conv_norm_out.", "unet.conv_out.",
                          "image_encoder.projector.")
    assert changed, "nothing trained"
    assert all(k.startswith(trainable_prefixes) for k in changed), sorted(changed)[:5]
    assert "controlnet.conv_in.weight" not in changed  # upstream never uses it
    for prefix in ("controlnet.controlnet_down_blocks.", "unet.up_blocks.", "image_encoder.projector.",
                   "controlnet.controlnet_cond_embedding."):
        assert any(k.startswith(prefix) for k in changed), prefix
    frozen = ("unet.down_blocks.", "unet.mid_block.", "unet.conv_in.", "vae.", "image_encoder.dinov2.")
    assert not any(k.startswith(frozen) for k in changed)


def test_resume_continues_exactly_where_the_checkpoint_left_off(tiny_folder, tmp_path):
    frames, masks = _frames()
    straight = AnyDoorPipeline.from_pretrained(tiny_folder)
    losses_straight = StoryAnyDoorTrainer(straight, frames, masks, tmp_path / "a", _settings(steps=3)).train(
        show_progress=False)

    first = AnyDoorPipeline.from_pretrained(tiny_folder)
    StoryAnyDoorTrainer(first, frames, masks, tmp_path / "b", _settings(steps=3)).train(steps=2, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint-1", "checkpoint-2"]

    resumed = AnyDoorPipeline.from_pretrained(tiny_folder)  # fresh weights: everything must come from the checkpoint
    trainer = StoryAnyDoorTrainer(resumed, frames, masks, tmp_path / "b", _settings(steps=3))
    losses_resumed = trainer.train(show_progress=False)
    assert trainer.step == 3 and len(losses_resumed) == 1
    assert losses_resumed[0] == pytest.approx(losses_straight[2], rel=1e-5)
    a, b = _snapshot(straight), _snapshot(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    # keep_checkpoints=2 pruned the oldest
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint-2", "checkpoint-3"]


def test_lora_trains_adapters_only_and_exports_a_loadable_pipeline(tiny_folder, tmp_path):
    pipe = AnyDoorPipeline.from_pretrained(tiny_folder)
    before = _snapshot(pipe)
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "lora", _settings(use_lora=True, lora_rank=4))
    names = set(trainer.params)
    assert names and all("lora_" in n or n.startswith("image_encoder.projector.") for n in names)
    assert not any(n.startswith("unet.down_blocks") for n in names)
    trainer.train(show_progress=False)
    trainer.export(tmp_path / "export")
    merged = AnyDoorPipeline.from_pretrained(tmp_path / "export")
    after = _snapshot(merged)
    assert set(after) == set(before)  # adapters folded in, names back to the base layout
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".attn1.to_q." in k or ".attn2.to_k." in k for k in changed)
    assert not any(k.startswith(("unet.down_blocks.", "vae.", "image_encoder.dinov2.")) for k in changed)


def test_bad_inputs_are_refused(tiny_folder, tmp_path):
    pipe = AnyDoorPipeline.from_pretrained(tiny_folder)
    with pytest.raises(InputError):
        StoryAnyDoorTrainer(pipe, [], [], tmp_path, _settings())
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "x", _settings())
    trainer.train(show_progress=False)
    lora = StoryAnyDoorTrainer(AnyDoorPipeline.from_pretrained(tiny_folder), *_frames(), tmp_path / "x",
                               _settings(use_lora=True, steps=4))
    with pytest.raises(InputError, match="LoRA"):
        lora.train(show_progress=False)


def test_finetune_storyboard_command(tiny_folder, tmp_path):
    import cv2
    from typer.testing import CliRunner

    from storyagent.commands.finetune_storyboard import app

    subject = tmp_path / "subject"
    subject.mkdir()
    for k, (frame, mask) in enumerate(zip(*_frames(2, size=80))):
        rgba = np.dstack([frame[..., ::-1], mask.astype(np.uint8) * 255])  # BGRA for OpenCV
        cv2.imwrite(str(subject / f"pip_{k}.png"), rgba)
    args = ["storyboard", "--subject", str(subject), "--out", str(tmp_path / "out"), "--weights", str(tiny_folder),
            "--steps", "1", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "checkpoint-1" / "state.json").is_file()
    assert AnyDoorPipeline.from_pretrained(tmp_path / "out" / "model").config.image_size == 64
    # again: resumes at the finished step, trains nothing more
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already complete" in again.output
    missing = CliRunner().invoke(app, [*args[:5], "--weights", str(tmp_path / "none"), "--device", "cpu"])
    assert missing.exit_code == 2 and "storyagent weights fetch anydoor" in missing.output

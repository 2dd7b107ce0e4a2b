"""Short clips (issue 26, item 4): FlintstonesSV's 5-frame clips padded to the window by holding the
last frame must not teach the temporal LoRA that motion stops. The held frames are left out of the
diffusion loss (a per-frame weight); the real frames' motion is still learnt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import (
    LoRABEConfig,
    LoRABETrainer,
    fit_clip,
    is_temporal,
    load_subject_clips,
)
from storyagent.models.lora_be.held_frames import (
    frame_loss_weights,
    frame_weighted_mse,
    held_frames,
)
from tests.support.clips import moving_clip
from tests.support.media import write_index_video


def test_held_frames_are_the_padding_only():
    short = fit_clip(moving_clip(5), 16, 16, 16)
    assert held_frames(short).tolist() == [False] * 5 + [True] * 11
    assert frame_loss_weights(short).tolist() == [1.0] * 5 + [0.0] * 11
    assert frame_loss_weights(fit_clip(moving_clip(16), 16, 16, 16)) is None  # a full window: every frame counts
    photo = dataclasses.replace(moving_clip(1), still=True)
    assert frame_loss_weights(fit_clip(photo, 16, 16, 16)) is None  # a photo trains appearance only, as before
    # Two identical pixels in a row are not padding: only a repeated source index is.
    frozen = moving_clip(16)
    frozen.frames[3] = frozen.frames[2]
    assert frame_loss_weights(fit_clip(frozen, 16, 16, 16)) is None


def test_a_five_frame_video_file_is_held_and_weighted(tmp_path):
    path = write_index_video(tmp_path / "short.mp4", 5, fps=8, size=(64, 64))
    (clip,) = load_subject_clips([path], frames=16, segment=lambda fs: [(np.ones(f.shape[:2], bool), "all") for f in fs])
    assert clip.source_indices == [0, 1, 2, 3, 4] + [4] * 11 and not clip.still
    assert frame_loss_weights(clip).sum() == 5


def test_weighted_mse_is_the_mse_of_the_weighted_frames():
    pred, target = torch.randn(2, 4, 6, 3, 3), torch.randn(2, 4, 6, 3, 3)
    w = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.float32)
    assert frame_weighted_mse(pred, target, w) == pytest.approx(
        torch.nn.functional.mse_loss(pred[:, :, :2], target[:, :, :2]).item(), rel=1e-6)
    assert frame_weighted_mse(pred, target) == pytest.approx(torch.nn.functional.mse_loss(pred, target).item())


def test_held_frames_get_no_loss_and_the_temporal_lora_still_learns(tmp_path):
    pipe = tiny_pipeline()  # a 4-frame model: a 2-frame clip holds 2 frames
    config = LoRABEConfig(token="<fred>", class_word="man", augment=False, learning_rate=1e-2,
                          gradient_checkpointing=False, checkpoint_every=1000)
    trainer = LoRABETrainer(pipe, config, tmp_path)
    grads: list[torch.Tensor] = []

    def keep_grad(module, args, out):
        out.register_hook(grads.append)  # returns None: the output is left as it is

    pipe.unet.register_forward_hook(keep_grad)
    temporal = {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if "lora_" in n and is_temporal(n)}

    result = trainer.train_step(moving_clip(2))
    assert result.held_frames == 2 and not result.appearance_only
    (grad,) = grads  # d loss / d UNet output, (b, c, t, h, w)
    per_frame = grad.abs().sum(dim=(0, 1, 3, 4))
    assert torch.all(per_frame[2:] == 0) and torch.all(per_frame[:2] > 0)
    # Unlike a photo's step, the temporal LoRA moves: the two real frames' motion is learnt.
    assert any(not torch.equal(p, temporal[n]) for n, p in pipe.unet.named_parameters() if n in temporal)

    grads.clear()
    full = trainer.train_step(moving_clip(4))
    assert full.held_frames == 0 and torch.all(grads[0].abs().sum(dim=(0, 1, 3, 4)) > 0)

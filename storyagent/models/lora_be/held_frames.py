"""Short clips: no loss on the frames that only hold a clip's last frame.

A training window has a fixed number of frames (16 for DynamiCrafter-512). A video shorter than
that (FlintstonesSV's released clips have 5 frames; a phone clip of half a second) is padded by
holding its last frame (`data.plan_windows`, `augment.fit_clip`), so most of the window shows a
subject that stands still. Trained on that, the temporal layers learn that motion stops after a
few frames. Those held frames are therefore left out of the diffusion loss: a per-frame weight,
1 on the frames the video really has and 0 on the copies. The frames stay in the input (the
temporal attention of the real frames sees a whole window, as at sampling time), so the real
frames' motion is still learnt, and nothing rewards the model for freezing.

A photo (`Clip.still`) is different: it has no motion at all, and its steps train appearance
only (the trainer leaves the temporal LoRA untouched), with every frame in the loss as before.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from storyagent.models.lora_be.data import Clip


def held_frames(clip: Clip) -> np.ndarray:
    """(t,) bool: True where a frame is a held copy of the frame before it (its source index repeats)."""
    idx = np.asarray(clip.source_indices)
    held = np.zeros(len(idx), bool)
    held[1:] = idx[1:] == idx[:-1]
    return held


def frame_loss_weights(clip: Clip) -> np.ndarray | None:
    """(t,) float32 per-frame weights of the diffusion loss: 0 on held frames, 1 elsewhere; None when
    every frame counts (a video window without padding, and a photo, which trains appearance only)."""
    if clip.still:
        return None
    held = held_frames(clip)
    if not held.any():
        return None
    return (~held).astype(np.float32)


def frame_weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over (b, c, t, h, w), each frame t weighted by `weights` (t,) and normalised by their sum:
    with 0/1 weights, the plain MSE of the frames weighted 1. `weights=None`: the plain MSE."""
    if weights is None:
        return F.mse_loss(pred, target)
    w = weights.to(pred.device, pred.dtype)
    per_frame = (pred - target).pow(2).mean(dim=(0, 1, 3, 4))  # (t,)
    return (per_frame * w).sum() / w.sum().clamp_min(1e-8)

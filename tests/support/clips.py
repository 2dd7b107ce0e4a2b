"""Tiny training clips for the fine-tune tests (LoRA-BE, DC-finetuning)."""

from __future__ import annotations

import numpy as np

from storyagent.models.lora_be import Clip


def moving_clip(frames: int = 4, size: int = 16, fps: float | None = 8.0) -> Clip:
    """A green block (the subject: its mask) moving a pixel right per frame over a red background;
    `fps`: its frame rate (None: unknown), one source frame per clip frame."""
    video = np.zeros((frames, size, size, 3), np.uint8)
    video[..., 0] = 200
    masks = np.zeros((frames, size, size), bool)
    for f in range(frames):
        masks[f, 4:12, 2 + f : 8 + f] = True
    video[masks] = (20, 220, 40)
    return Clip(video, masks, fps=fps)

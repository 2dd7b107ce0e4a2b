"""One video representation for every metric: a float tensor (T, 3, H, W) in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

VideoLike = torch.Tensor | np.ndarray | Sequence[np.ndarray]


def as_video(video: VideoLike) -> torch.Tensor:
    """Frames as (T, 3, H, W) float32 in [0, 1].

    Accepts a list of H×W×3 uint8 RGB arrays (what `storyagent.media.read_frames` returns), a
    (T, H, W, 3) uint8 array, or a (T, 3, H, W) float tensor already in [0, 1].
    """
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3:
            raise ValueError(f"expected a (T, 3, H, W) tensor, got {tuple(video.shape)}")
        return video.float()
    arr = np.stack(list(video)) if not isinstance(video, np.ndarray) else video
    if arr.ndim == 3:  # a single image
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (H, W, 3), got {arr.shape[1:]}")
    tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return tensor / 255.0 if arr.dtype == np.uint8 else tensor


def match_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trim two videos to the shorter one's length (generated and ground-truth clips may differ by a frame)."""
    n = min(len(a), len(b))
    return a[:n], b[:n]


def resize_video(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, *size), bilinear with antialiasing, for metrics at a fixed resolution."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    return F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def crop_to_box(frame: np.ndarray, mask: np.ndarray | None, margin: float = 0.05) -> np.ndarray:
    """The part of `frame` inside the bounding box of `mask` (plus a margin); the whole frame without one."""
    if mask is None or not mask.any():
        return frame
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    my, mx = round(margin * h), round(margin * w)
    y0, y1 = max(0, ys.min() - my), min(h, ys.max() + 1 + my)
    x0, x1 = max(0, xs.min() - mx), min(w, xs.max() + 1 + mx)
    return frame[y0:y1, x0:x1]

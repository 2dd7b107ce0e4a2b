"""Synthetic subjects for tests: a textured orange disc with a face on a noisy blue wall."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def disc_image(h: int = 240, w: int = 320, center=(160, 120), radius: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (90, 140, 200), np.uint8) + rng.integers(0, 16, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, center, radius, (230, 90, 40), -1)
    cv2.circle(img, (center[0] - radius // 3, center[1] - radius // 4), max(2, radius // 8), (20, 20, 20), -1)
    truth = np.zeros((h, w), np.uint8)
    cv2.circle(truth, center, radius, 1, -1)
    return img, truth.astype(bool)


def write_disc_png(path: Path, **kw) -> np.ndarray:
    img, truth = disc_image(**kw)
    Image.fromarray(img).save(path)
    return truth


def write_disc_video(path: Path, n: int = 12, fps: int = 8) -> None:
    from storyagent.media import write_video

    frames = [disc_image(center=(120 + 6 * i, 120), seed=i)[0] for i in range(n)]
    write_video(path, frames, fps)


# Frame i of an index video is grey level INDEX_BASE + INDEX_STEP * i (lossless H.264 keeps it within +-1).
INDEX_BASE, INDEX_STEP = 10, 3


def write_index_video(path: Path, frames: int, fps: int = 30, size: tuple[int, int] = (48, 64)) -> Path:
    """A lossless clip whose frame i is flat grey at INDEX_BASE + INDEX_STEP * i (see `index_of_frame`)."""
    from storyagent.media import write_video

    video = [np.full((*size, 3), INDEX_BASE + INDEX_STEP * i, np.uint8) for i in range(frames)]
    write_video(path, video, fps, crf=0)
    return path


def index_of_frame(frame: np.ndarray) -> int:
    """Which frame of an index video `frame` is."""
    return round((float(frame.mean()) - INDEX_BASE) / INDEX_STEP)

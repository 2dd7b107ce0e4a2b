"""Synthetic subjects for tests: a textured orange disc with a face on a noisy blue wall."""

from __future__ import annotations

import math
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


# ---- an astronaut-like clip: a figure with hair-coloured detail on a busy background, moving ----------

HAIR = (70, 48, 34)
"""The figure's hair: dark brown, the colour of the bark patches in `busy_background`."""
DARK_BLOCK = (slice(30, 120), slice(196, 244))
"""Rows and columns of the near-black block in the background: the figure's dark hair reaches it in the
last frames, as the astronaut's hair reached a dark patch of jungle."""


def busy_background(h: int = 240, w: int = 320, seed: int = 7, block: bool = True) -> np.ndarray:
    """Leafy clutter: overlapping blobs of greens, bark browns (like the hair) and pale sky, fine noise,
    and (with `block`) a near-black block (a doorway) beside where the figure's head passes."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (96, 128, 84), np.uint8)
    palette = [(60, 110, 50), (120, 160, 90), (34, 80, 40), (150, 170, 120), (80, 58, 40), (66, 46, 32),
               (185, 200, 215), (110, 95, 70)]
    for _ in range(260):
        colour = palette[rng.integers(len(palette))]
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, 16)), int(rng.integers(3, 16)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
    if block:
        img[DARK_BLOCK] = (16, 14, 14)
    return img


PAN = 24
"""The background is drawn this many pixels larger than the frame: the hand-held camera pans over it."""


def camera_offset(i: int, n: int = 16) -> tuple[int, int]:
    """Where frame `i` of the figure clip starts in `busy_background` (x, y): a slow pan left to right
    with a pixel or two of shake."""
    rng = np.random.default_rng(1000 + i)
    return round(PAN * (1 - i / max(1, n - 1)) * 0.8 + rng.integers(0, 3)), round(PAN / 2 + rng.integers(-2, 3))


def dark_block_in_frame(i: int, n: int = 16, h: int = 240, w: int = 320) -> np.ndarray:
    """Where `DARK_BLOCK` is in frame `i` of the figure clip (before the figure is drawn over it)."""
    block = np.zeros((h + PAN, w + PAN), bool)
    block[DARK_BLOCK] = True
    x, y = camera_offset(i, n)
    return block[y:y + h, x:x + w]


def figure_frame(i: int, n: int = 16, h: int = 240, w: int = 320, background: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Frame `i` of `n` of the figure clip and its true subject mask: a white-suited figure (body to the
    bottom edge, thin arms and a 2 px antenna) with a face and dark hair, drifting right and growing a
    little (translation + slight scale), over `busy_background` filmed by a hand-held camera (a slow pan
    with a pixel or two of shake, exposure breathing by a few percent) with sensor noise."""
    bg = busy_background(h + PAN, w + PAN) if background is None else background
    rng = np.random.default_rng(100 + i)
    u = i / max(1, n - 1)
    pan_x, pan_y = camera_offset(i, n)
    img = bg[pan_y:pan_y + h, pan_x:pan_x + w].copy()
    cx, s = 130 + 34 * u, 1.0 + 0.08 * u  # the figure's centre column and scale
    truth = np.zeros((h, w), np.uint8)

    def pt(x: float, y: float) -> tuple[int, int]:
        """A point of the figure drawn at scale 1 about its centre (cx, 150), in frame pixels."""
        return round(cx + s * x), round(150 + s * y)

    suit, skin = (226, 228, 232), (224, 182, 150)
    body = np.array([pt(-42, 0), pt(42, 0), pt(52, 95), pt(-52, 95)], np.int32)
    for canvas, colour in ((img, suit), (truth, 1)):
        cv2.fillPoly(canvas, [body], colour)
        cv2.line(canvas, pt(-40, 8), pt(-78, 60), colour, max(2, round(5 * s)))  # arms, thin
        cv2.line(canvas, pt(40, 8), pt(76, 58), colour, max(2, round(5 * s)))
        cv2.ellipse(canvas, pt(0, -28), (round(26 * s), round(32 * s)), 0, 0, 360, colour, -1)  # head, hair
        cv2.ellipse(canvas, pt(0, -44), (round(30 * s), round(24 * s)), 0, 180, 360, colour, -1)
        cv2.line(canvas, pt(14, -66), pt(24, -96), colour, 2)  # antenna: a 2 px strand
    cv2.ellipse(img, pt(0, -28), (round(26 * s), round(32 * s)), 0, 0, 360, skin, -1)
    cv2.ellipse(img, pt(0, -44), (round(30 * s), round(24 * s)), 0, 180, 360, HAIR, -1)
    cv2.ellipse(img, pt(0, -40), (round(28 * s), round(14 * s)), 0, 0, 360, HAIR, -1)
    cv2.line(img, pt(14, -66), pt(24, -96), HAIR, 2)
    for x in (-9, 9):
        cv2.circle(img, pt(x, -24), max(1, round(3 * s)), (40, 30, 30), -1)
    exposure = 1 + 0.04 * math.sin(2.3 * i)
    img = np.clip(img * exposure + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
    return img, truth.astype(bool)


def fur_image(h: int = 240, w: int = 320, seed: int = 3) -> np.ndarray:
    """A photo that is all subject: a close crop of ginger fur, strands every way, filling the frame."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (170, 110, 60), np.float32)
    for _ in range(3000):
        x, y, angle = int(rng.integers(0, w)), int(rng.integers(0, h)), rng.uniform(0, np.pi)
        colour = np.clip(np.array((170, 110, 60)) + rng.normal(0, 35, 3), 0, 255)
        cv2.line(img, (x, y), (int(x + 12 * np.cos(angle)), int(y + 12 * np.sin(angle))), colour.tolist(), 1)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0), 0, 255).astype(np.uint8)


def write_figure_video(path: Path, n: int = 16, fps: int = 8) -> list[np.ndarray]:
    """The figure clip (`figure_frame`) as an mp4; returns each frame's true subject mask."""
    from storyagent.media import write_video

    bg = busy_background(240 + PAN, 320 + PAN)
    frames, truths = zip(*(figure_frame(i, n, background=bg) for i in range(n)))
    write_video(path, list(frames), fps)
    return list(truths)

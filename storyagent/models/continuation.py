"""Shots longer than one window of a video model, continued from their last frame.

An image-to-video model makes one window of frames at a time (DynamiCrafter 16; Wan 4k+1, up to
81 or 121). A shot's duration decides how many frames its clip has (`shot_frames`); a shot longer
than one window is made window by window (`continue_shot`): each next window is the model's own
image-to-video from the clip's last frame so far, with a seed derived from the shot's video seed
(`window_seed`).

The seam. An image-to-video window's first frame is the model's redrawing of its conditioning
picture (DynamiCrafter's is close but not exact; Wan's passes the VAE): showing it would repeat the
previous window's last frame (a one-frame freeze) and then jump by the redrawing's drift. So the
duplicated conditioning frame is dropped, and the drift (conditioning picture minus the window's
first frame, per pixel) is added to the window's following frames with a weight falling linearly
from 1 to 0 over `fade` frames (`join_window`). The first new frame is then the previous last
frame moved by the window's own first step, and the drift fades out while the window's motion
takes over; nothing of two different motions is blended, so nothing ghosts. A linear fall spreads
the drift evenly, which keeps the largest frame-to-frame step the smallest. The fade is as long as
the drift needs (`fade_frames`): each frame takes at most `WindowRule.drift_share` of the window's
own median step of it, so a model that redraws its first frame faithfully (Wan) is barely touched
and one that drifts further gets a longer, gentler fade.

Model-agnostic: frames are numpy arrays (T x H x W x 3 uint8) and a window is any `MakeWindow`
callable; no torch, no tools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

WINDOW_SEED_STRIDE = 1_000_000
"""Window k of a shot is sampled with the shot's video seed + k * this: window 0 keeps the shot's own
seed (a one-window clip is what it always was), and the stride is far above the run seed's other moves
(a shot number, `SEED_STRIDE` = 1000 per take), so no window shares its noise with another shot's."""


def window_seed(shot_seed: int, window: int) -> int:
    """The seed of a shot's window `window` (0 first), derived from the shot's video seed (`Run.seed`)."""
    return shot_seed + WINDOW_SEED_STRIDE * window


def shot_frames(duration: float, fps: float) -> int:
    """A shot's frames at `fps`: its duration rounded to the nearest frame, at least 2 (the animatic's rule)."""
    return max(2, round(duration * fps))


@dataclass(frozen=True)
class WindowRule:
    """How many frames one window of a video model makes."""

    max_frames: int
    """The most frames one window makes (DynamiCrafter-512: 16; Wan2.1 480P: 81; Wan2.2 TI2V-5B: 121)."""
    step: int = 1
    """A window's frame count is 1 + step * k: 1 for DynamiCrafter, 4 for Wan (its VAE's temporal compression)."""
    fixed: bool = True
    """Every window makes `max_frames` (the length the model was trained at) and the last one is cut to
    the shot; False: all windows the same, shortest valid length that covers the shot (Wan)."""
    drift_share: float = 0.5
    """A continued window's drift from its conditioning frame fades out over as many frames as keep what it
    adds to any one step at most this share of the window's own median step (`fade_frames`)."""
    min_fade: int = 2
    """The fewest frames a drift fades over (a window's own steps are noisy, its median a rough guide)."""

    def __post_init__(self) -> None:
        if self.step < 1 or self.max_frames < 2 or (self.max_frames - 1) % self.step:
            raise ValueError(f"a window makes 1 + {self.step}·k frames, at least 2; {self.max_frames} is not one")
        if self.drift_share <= 0 or self.min_fade < 0:
            raise ValueError("drift_share is above 0 and min_fade is 0 frames or more")


@dataclass(frozen=True)
class WindowPlan:
    """The windows that make a shot's `total` frames."""

    total: int
    """The shot's frames."""
    lengths: tuple[int, ...]
    """Frames each window makes; every window after the first gives all but its first (the conditioning)
    frame, and the last window's surplus is cut."""

    @property
    def made(self) -> int:
        """Frames the windows make before the cut: 1 + sum(length - 1)."""
        return 1 + sum(n - 1 for n in self.lengths)


def plan_windows(total: int, rule: WindowRule) -> WindowPlan:
    """As few windows as cover `total` frames (the first gives all its frames, the others all but one)."""
    if total < 1:
        raise ValueError(f"a shot has at least one frame, not {total}")
    count = max(1, math.ceil((total - 1) / (rule.max_frames - 1)))
    if rule.fixed:
        length = rule.max_frames
    else:  # the shortest 1 + step·k with count·(length - 1) >= total - 1
        length = 1 + rule.step * max(1, math.ceil(math.ceil((total - 1) / count) / rule.step))
    return WindowPlan(total, (min(length, rule.max_frames),) * count)


class MakeWindow(Protocol):
    """One window of a video model: image-to-video from `image` (H x W x 3 uint8), `num_frames` frames
    (num_frames x H x W x 3 uint8, the first one the model's drawing of `image`), sampled with `seed`;
    `window` is its place in the shot (0 first)."""

    def __call__(self, image: np.ndarray, num_frames: int, seed: int, window: int) -> np.ndarray | Sequence[np.ndarray]:
        ...


def fade_frames(last: np.ndarray, window: np.ndarray, rule: WindowRule) -> int:
    """Frames the drift of `window` (its first frame against `last`, the frame it was conditioned on) fades
    over: each of the fade's steps carries 1/(fade + 1) of the drift, at most `rule.drift_share` of the
    window's median step; at least `rule.min_fade`, at most the window's frames after the dropped one less
    one (its last frame is its own: the next window starts from it)."""
    drift = float(np.abs(last.astype(np.float32) - window[0].astype(np.float32)).mean())
    median = float(np.median(frame_steps(window)))
    most = max(0, len(window) - 2)
    need = most if median <= 0 else math.ceil(drift / (rule.drift_share * median)) - 1
    return min(max(need, rule.min_fade), most)


def join_window(last: np.ndarray, window: np.ndarray, fade: int) -> np.ndarray:
    """A continued window's frames after `last` (the frame it was conditioned on): its first frame dropped
    (it repeats `last`), and its drift from `last` faded out over `fade` frames (module docstring)."""
    window = np.asarray(window)
    drift = last.astype(np.float32) - window[0].astype(np.float32)
    out = window[1:].astype(np.float32)
    for j in range(min(fade, len(out))):
        out[j] += drift * (1.0 - (j + 1) / (fade + 1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class Continued:
    """A shot's clip made window by window."""

    frames: np.ndarray
    """T x H x W x 3 uint8, T = the plan's total."""
    plan: WindowPlan
    seeds: list[int]
    """Each window's seed."""
    seams: list[int]
    """Index of each continued window's first frame in `frames` (a seam lies between it and the frame before)."""
    fades: list[int]
    """Frames each continued window's drift faded over (`fade_frames`), one per seam."""


def continue_shot(image: np.ndarray, total: int, rule: WindowRule, make_window: MakeWindow, seed: int) -> Continued:
    """The shot's `total` frames from its first picture `image`: window 0 from `image`, every next window
    from the clip's last frame so far, joined by `join_window`, the surplus of the last window cut."""
    plan = plan_windows(total, rule)
    parts: list[np.ndarray] = []
    seeds: list[int] = []
    seams: list[int] = []
    fades: list[int] = []
    made = 0
    start = np.asarray(image)
    for k, length in enumerate(plan.lengths):
        seeds.append(window_seed(seed, k))
        window = np.asarray(make_window(start, length, seeds[-1], k))
        if window.shape[0] != length or window.ndim != 4 or window.dtype != np.uint8:
            raise ValueError(f"window {k} should be {length} x H x W x 3 uint8 frames, got {window.shape} {window.dtype}")
        if k:
            seams.append(made)
            fades.append(fade_frames(start, window, rule))
            window = join_window(start, window, fades[-1])
        parts.append(window)
        made += len(window)
        start = window[-1]
    frames = np.concatenate(parts)[:total]
    kept = sum(s < total for s in seams)
    return Continued(frames, plan, seeds, seams[:kept], fades[:kept])


def retime(frames: np.ndarray, fps: float, target_fps: float, total: int) -> np.ndarray:
    """`total` frames at `target_fps` from `frames` made at `fps` (a model's own rate): each the frame nearest
    its time, the last one held if the source is short."""
    if fps == target_fps and len(frames) == total:
        return frames
    at = np.minimum(np.rint(np.arange(total) * (fps / target_fps)).astype(int), len(frames) - 1)
    return frames[at]


def frame_steps(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between each frame and the next (len(frames) - 1 values, 0..255)."""
    f = np.asarray(frames, dtype=np.float32)
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))

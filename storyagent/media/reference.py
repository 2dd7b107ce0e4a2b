"""The subject's reference media: the sampled frames of the user's photos and clips, the subject's
mask in each, and the clip frames left out because their mask jumped.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storyagent.media.reading import (
    MIN_SIDE,
    VIDEO_SUFFIXES,
    WORK_SIDE,
    fit_side,
    media_files,
    read_image,
    read_mask,
    read_video,
    regular_file,
)
from storyagent.media.segmentation import check_mask, cutout_problem, no_subject, segment_subject
from storyagent.media.tracking import MaskPropagator, TrackedMasks, track_subject


@dataclass
class ReferenceMedia:
    """Frames sampled from the user's reference media and the subject mask of each."""

    frames: list[np.ndarray]
    masks: list[np.ndarray]
    fps: float = 8.0
    sources: list[Path] = field(default_factory=list)
    mask_methods: list[str] = field(default_factory=list)
    """How each mask was made: 'alpha', 'user mask', 'grabcut', 'grabcut (rectangle)' (a photo or a
    clip's first frame), 'flow-tracked grabcut' or a propagator's name such as 'sam2 video' (the rest
    of a clip)."""
    dropped: list[DroppedFrame] = field(default_factory=list)
    """Sampled clip frames left out because their mask jumped from the frame before."""


@dataclass
class DroppedFrame:
    """A sampled frame left out of the reference, with its mask and why."""

    number: int
    """Its place among all the frames sampled (from 1), the dropped ones counted."""
    frame: np.ndarray
    mask: np.ndarray
    mask_method: str
    source: Path
    reason: str


Segmenter = Callable[[np.ndarray], tuple[np.ndarray, str]]
"""Cuts the subject out of one frame: (mask, how it was found)."""


def load_reference(path: str | Path, max_frames: int = 16, mask: str | Path | None = None,
                   segment: Segmenter | None = None, propagator: MaskPropagator | None = None) -> ReferenceMedia:
    """Read the subject's reference media and cut the subject out of every sampled frame.

    Mask source, in order: a user-given mask (`mask`, or a file `NAME_mask.png` beside a photo),
    the image's alpha channel, then a cut-out: `segment` (default: GrabCut, `segment_subject`) for a
    photo; for a clip, its first frame's cut-out carried through the clip (`track_subject`: by
    `propagator` when given, else by optical flow), frames whose mask jumps being dropped
    (`ReferenceMedia.dropped`). A mask that covers nothing or everything, and a cut-out that finds no
    subject (`check_cutout`), are refused.
    """
    files = media_files(path)
    per_file = max(1, math.ceil(max_frames / len(files)))
    ref = ReferenceMedia(frames=[], masks=[])
    sampled = 0
    for file in files:
        fps, alpha = None, None
        if file.suffix.lower() in VIDEO_SUFFIXES:
            frames, fps = read_video(file, per_file, min_side=MIN_SIDE, max_side=WORK_SIDE)
        else:
            rgb, alpha = read_image(file)
            frames = [rgb]
        user_mask = Path(mask) if mask is not None else sibling_mask(file)
        found = _masks(file, frames, alpha, user_mask, segment or segment_subject, propagator)
        for i, (frame, m, how) in enumerate(zip(frames, found.masks, found.methods)):
            frame, m = _downscale(frame, m)
            sampled += 1
            if i in found.dropped:
                ref.dropped.append(DroppedFrame(sampled, frame, m, how, file, found.dropped[i]))
                continue
            ref.frames.append(frame)
            ref.masks.append(m)
            ref.mask_methods.append(how)
            ref.sources.append(file)
        if fps:
            ref.fps = fps
        if len(ref.frames) >= max_frames:
            break
    return ref


def _masks(file: Path, frames: list[np.ndarray], alpha: np.ndarray | None, user_mask: Path | None,
           segment: Segmenter, propagator: MaskPropagator | None) -> TrackedMasks:
    """The subject's mask in each of `frames` (all those sampled from `file`; `alpha`: a photo's)."""
    if user_mask is not None:
        return TrackedMasks([read_mask(user_mask, f.shape[:2]) for f in frames], ["user mask"] * len(frames))
    if alpha is not None:
        check_mask(alpha > 127, f"The alpha channel of {file.name}")
        return TrackedMasks([alpha > 127], ["alpha"])
    # A clip is tracked from its first frame, or, where that frame shows no subject (it is walking
    # in from the edge, say), from its middle or last frame.
    problems = []
    for key in dict.fromkeys((0, len(frames) // 2, len(frames) - 1)):
        first, how = segment(frames[key])
        problem = cutout_problem(frames[key], first, how)
        if problem is None:
            return track_subject(frames, propagator, first=(first, how), key=key)
        problems.append(problem)
    raise no_subject(file, problems[0])


def sibling_mask(file: Path) -> Path | None:
    """The user's mask file beside `file` (`NAME_mask.png`, `NAME-mask.png` or `NAME.mask.png`), if any."""
    for suffix in ("_mask.png", "-mask.png", ".mask.png"):
        candidate = file.with_name(file.stem + suffix)
        if candidate.exists() or candidate.is_symlink():  # a broken link is answered, not skipped
            return regular_file(candidate, "Mask", "make it a mask image (white = subject) or remove it")
    return None


def _downscale(frame: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = frame.shape[:2]
    size = fit_side(w, h, WORK_SIDE)
    if size == (w, h):
        return frame, mask
    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return frame, mask

"""Subject masks that hold still through a clip.

Cutting every frame of a clip out on its own lets each frame decide afresh what is subject: hair
whose colour the background shares is kept in one frame and lost in the next, a dark patch beside
the head joins in now and then, and the film's character flickers. Here one frame (the caller picks
it: the first that shows a subject) is cut out, and its mask is carried through the clip both ways:

- by a model that propagates masks through video (SAM 2), when the caller has one (`MaskPropagator`);
- otherwise by dense optical flow: the last kept frame's mask, moved by the flow, marks where the
  subject must be (its eroded core), may be (a band either side of its outline) and cannot be (the
  rest) in the next frame, and GrabCut only settles the band.

A frame whose mask changes from the last kept frame's by more than `MAX_AREA_CHANGE` in area or
`MIN_CARRIED_IOU` in outline, or whose subject changed colour where the flow says it came from
(`MAX_RECOLOURED`: the camera looked away, the light went), is dropped with its reason, unless a cut-out of
that frame alone is the kept subject's size and shape (the flow lost a subject that moved far). The
next frame is tracked from the last frame kept, never from the odd one.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from storyagent.media.segmentation import WORK_SIDE, largest_component, run_grabcut, segment_subject

FLOW_TRACKED = "flow-tracked grabcut"
MAX_AREA_CHANGE = 0.12
"""A frame whose subject area differs from the last kept frame's by more than this fraction is dropped."""
MIN_CARRIED_IOU = 0.85
"""A frame whose mask overlaps the kept mask carried onto it (or, for a propagator's masks, the kept mask
within its box) less than this (intersection over union) is dropped."""
COLOUR_STEP = 30.0
"""A subject pixel whose colour (Lab, 0-255 scale) is further than this from where the flow says it came
from has changed colour: exposure breathing moves a pixel by a few units, an object in front by many."""
MAX_RECOLOURED = 0.15
"""A frame in which more than this fraction of the subject changed colour is dropped. Measured: the subject
gone from the frame, or the frame half as bright, 96-100%; a waving arm or exposure breathing, at most 4%;
a card over the head, 8% (let through here; the area bound caught it in one clip of two)."""
BAND = 0.06
"""Half-width of the band GrabCut may move the outline in, as a fraction of the square root of the
subject's area (about 5 px for a subject of a sixth of a 256×192 frame), at least `MIN_BAND` px."""
MIN_BAND, MAX_BAND = 3, 12
GRABCUT_ITERATIONS = 3


class MaskPropagator(Protocol):
    """A model that carries the first frame's mask through a clip (SAM 2's video predictor)."""

    name: str
    """How its masks are labelled in the manifest (e.g. "sam2 video")."""

    def __call__(self, frames: list[np.ndarray], first_mask: np.ndarray) -> list[np.ndarray]:
        """One mask per frame, the first being `first_mask` or its refinement."""
        ...


@dataclass
class TrackedMasks:
    """A clip's subject masks, one per frame, and the frames left out of the sprites."""

    masks: list[np.ndarray]
    methods: list[str]
    dropped: dict[int, str] = field(default_factory=dict)
    """Frame index → why its mask was not used (its mask is still in `masks`, for the record)."""


def track_subject(frames: Sequence[np.ndarray], propagator: MaskPropagator | None = None,
                  first: tuple[np.ndarray, str] | None = None, key: int = 0) -> TrackedMasks:
    """The subject's mask in every frame of a clip, consistent over time (see the module docstring).

    Tracking starts at frame `key`, whose mask and how it was found are `first` (default:
    `segment_subject`), and runs forwards to the last frame and backwards to the first.
    """
    if not frames:
        return TrackedMasks([], [])
    first = first if first is not None else segment_subject(frames[key])
    forward = _track(frames[key:], first, propagator)
    if key == 0:
        return forward
    backward = _track(frames[key::-1], first, propagator)
    return TrackedMasks(backward.masks[:0:-1] + forward.masks, backward.methods[:0:-1] + forward.methods,
                        {key - i: why for i, why in backward.dropped.items()}
                        | {key + i: why for i, why in forward.dropped.items()})


def _track(frames: Sequence[np.ndarray], first: tuple[np.ndarray, str],
           propagator: MaskPropagator | None) -> TrackedMasks:
    """Masks of `frames` from the mask `first` of frames[0]: by `propagator`, else by optical flow."""
    first_mask, first_how = first
    if propagator is None:
        return _flow_track(frames, first_mask, first_how)
    masks = [np.asarray(m, bool) for m in propagator(list(frames), first_mask)]
    if len(masks) != len(frames):
        raise ValueError(f"{propagator.name} gave {len(masks)} masks for {len(frames)} frames")
    masks[0] = first_mask
    return TrackedMasks(masks, [first_how] + [propagator.name] * (len(frames) - 1), _odd_frames(masks))


def _flow_track(frames: Sequence[np.ndarray], first_mask: np.ndarray, first_how: str) -> TrackedMasks:
    h, w = frames[0].shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = TrackedMasks([first_mask], [first_how])
    # The last frame kept and its mask: each next frame is tracked from them, so a dropped frame
    # steers nothing.
    kept = cv2.resize(frames[0], size, interpolation=cv2.INTER_AREA)
    kept_mask = _resize_mask(first_mask, size)
    for t in range(1, len(frames)):
        if frames[t].shape != frames[0].shape:  # a stream that changed size part-way: cut it out alone
            mask, how = segment_subject(frames[t])
            out.masks.append(mask)
            out.methods.append(how)
            continue
        small = cv2.resize(frames[t], size, interpolation=cv2.INTER_AREA)
        # Backward flow (this frame → the kept one): each pixel here looks up where it came from.
        back = flow.calc(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cv2.cvtColor(kept, cv2.COLOR_RGB2GRAY), None)
        carried = _warp(kept_mask.astype(np.float32), back) > 0.5
        found, how = _grabcut_near(small, carried), FLOW_TRACKED
        problem = _change(found, carried, kept_mask) or _recoloured(small, _warp(kept, back), found & carried)
        if problem:
            # The flow lost the subject (it moved far between the sampled frames, say): a cut-out of
            # this frame alone stands in when it is the kept subject's shape and size.
            alone, alone_how = segment_subject(frames[t])
            if _shape_change(_resize_mask(alone, size), kept_mask) is None:
                found, how, problem = _resize_mask(alone, size), f"{alone_how}; the flow lost it", None
        if problem:
            out.dropped[t] = problem
        else:
            kept, kept_mask = small, found
        out.masks.append(_full_size(found, (w, h)))
        out.methods.append(how)
    return out


def _warp(image: np.ndarray, back: np.ndarray) -> np.ndarray:
    """`image` moved along the flow `back` (for each pixel of the new frame, where it came from)."""
    h, w = back.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + back[..., 0], grid_y + back[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _grabcut_near(small: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """GrabCut of `small` where only a band around the carried mask's outline is undecided: the eroded
    core is subject, everything beyond the dilated band is background."""
    if not carried.any():
        return carried
    r = int(np.clip(round(BAND * np.sqrt(carried.sum())), MIN_BAND, MAX_BAND))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    m = carried.astype(np.uint8)
    core, reach = cv2.erode(m, kernel).astype(bool), cv2.dilate(m, kernel).astype(bool)
    gc = np.full(carried.shape, cv2.GC_BGD, np.uint8)
    gc[reach] = cv2.GC_PR_BGD
    gc[carried] = cv2.GC_PR_FGD
    gc[core] = cv2.GC_FGD
    run_grabcut(small, gc, None, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return largest_component(np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)))


def _change(found: np.ndarray, carried: np.ndarray, before: np.ndarray) -> str | None:
    """Why `found` is not the subject of the frame before (None when it is): its area differs from
    that frame's mask `before` (area barely changes between neighbouring frames, and wherever the flow
    went wrong the carried mask may have lost a part), or its outline from the mask `carried` onto
    this frame."""
    return _area_change(found, before) or _outline_change(iou(found, carried))


def _area_change(mask: np.ndarray, before: np.ndarray) -> str | None:
    a, b = int(mask.sum()), int(before.sum())
    if not a or not b:
        return "no subject was found in it" if not a else "the subject had left the frame"
    change = a / b - 1
    if abs(change) > MAX_AREA_CHANGE:
        return f"its subject area {'grew' if change > 0 else 'shrank'} {abs(change):.0%} from the frame before"
    return None


def _outline_change(overlap: float) -> str | None:
    if overlap < MIN_CARRIED_IOU:
        return f"its subject's outline changed (overlap {overlap:.2f} with the frame before)"
    return None


def _recoloured(frame: np.ndarray, carried_frame: np.ndarray, mask: np.ndarray) -> str | None:
    """Why the subject in `frame` does not look like the kept frame carried onto it by the flow (None
    when it does): something passed in front of it, or the cut-out slid onto the background."""
    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # flow is unsure at outlines
    if core.sum() < 16:
        return None
    a = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)[core]
    b = cv2.cvtColor(carried_frame, cv2.COLOR_RGB2LAB).astype(np.float32)[core]
    changed = float((np.linalg.norm(a - b, axis=1) > COLOUR_STEP).mean())
    if changed > MAX_RECOLOURED:
        return f"{changed:.0%} of its subject changed colour from the frame before (something in front of it?)"
    return None


def _odd_frames(masks: list[np.ndarray]) -> dict[int, str]:
    """The frames of propagated `masks` whose subject differs beyond the bounds from the last frame
    kept (`_shape_change`), and why."""
    dropped: dict[int, str] = {}
    last = masks[0]
    for t in range(1, len(masks)):
        problem = _shape_change(masks[t], last)
        if problem:
            dropped[t] = problem
        else:
            last = masks[t]
    return dropped


def _shape_change(mask: np.ndarray, before: np.ndarray) -> str | None:
    """Why `mask` is not `before`'s subject wherever it stands (None when it is): its area, or its outline
    within its box (so that moving is no change), differs beyond the bounds."""
    outline = iou(_in_box(mask, before.shape), _in_box(before, before.shape))
    return _area_change(mask, before) or _outline_change(outline)


def _in_box(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`mask` cropped to its subject's box and stretched over `shape`: where it stands and how big it is
    drop out, its outline stays."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros(shape, bool)
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    return cv2.resize(crop, shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (0 when both are empty)."""
    return float((a & b).sum() / max(1, (a | b).sum()))


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape[::-1] == size:
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5


def _full_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A working-size mask at the frame's size, its outline smoothed rather than blocky."""
    if mask.shape[::-1] == size:
        return mask
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5

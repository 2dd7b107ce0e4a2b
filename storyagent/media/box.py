"""Bounding boxes: one type, one order, exclusive ends.

A `Box` is (top, bottom, left, right) in pixels of the image it refers to: rows `top:bottom`,
columns `left:right`, the ends exclusive, so `image[box.top:box.bottom, box.left:box.right]`
(or `image[box.slices]`) is exactly what the box holds. Every function in StoryAgent that returns
a pixel box returns this type. Detection boxes in floating-point coordinates (Grounding DINO's
x0, y0, x1, y1) are a detector's output, not a `Box`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from storyagent.errors import EmptyMaskError


class Box(NamedTuple):
    """A pixel box: rows `top:bottom`, columns `left:right`, ends exclusive."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index an H×W(×C) array with these to get the box's pixels."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def mask_box(mask: np.ndarray, min_pixels: int = 1) -> Box:
    """The tight box of the True pixels of an H×W mask.

    A mask with fewer than `min_pixels` True pixels is refused with an `EmptyMaskError` (both an
    `InputError` for the user and a `ValueError` for callers that check arguments).
    """
    mask = np.asarray(mask).astype(bool)
    count = int(mask.sum())
    if count < max(1, min_pixels):
        raise EmptyMaskError(f"The subject mask is empty ({count} pixels set, at least {max(1, min_pixels)} needed); "
                             "give a mask that covers the subject.")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def expand_box(box: Box | tuple[int, int, int, int], ratio: float, hw: tuple[int, int]) -> Box:
    """Grow `box` about its centre by `ratio`, clipped to an image of size `hw` (H, W)."""
    top, bottom, left, right = box
    cy, cx = (top + bottom) / 2, (left + right) / 2
    h, w = (bottom - top) * ratio, (right - left) * ratio
    return Box(max(0, int(round(cy - h / 2))), min(hw[0], int(round(cy + h / 2))),
               max(0, int(round(cx - w / 2))), min(hw[1], int(round(cx + w / 2))))


def square_box(box: Box | tuple[int, int, int, int], hw: tuple[int, int]) -> Box:
    """Grow the short side of `box` to the long one about the centre, clipped to the image.

    Clipping can leave it non-square near a border; a caller that needs a square pads the crop.
    """
    top, bottom, left, right = box
    side = max(bottom - top, right - left)
    cy, cx = (top + bottom) // 2, (left + right) // 2
    top, left = max(0, cy - side // 2), max(0, cx - side // 2)
    return Box(top, min(hw[0], top + side), left, min(hw[1], left + side))


def grow_box(box: Box, margin: int, hw: tuple[int, int]) -> Box:
    """`box` with `margin` pixels added on every side, clipped to an image of size `hw` (H, W)."""
    return Box(max(0, box.top - margin), min(hw[0], box.bottom + margin),
               max(0, box.left - margin), min(hw[1], box.right + margin))

"""Cutting the subject out of a frame: GrabCut masks, mask checks and the RGBA cut-out.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

import cv2
import numpy as np

from storyagent.errors import InputError
from storyagent.media.box import grow_box, mask_box

# A mask covering less than this fraction of the frame is "nothing", more than 1 - it "everything".
MIN_MASK_FRACTION = 0.002


def check_mask(mask: np.ndarray, what: str) -> None:
    """Refuse a mask that covers (next to) nothing or (next to) everything; `what` names it."""
    frac = float(mask.mean())
    if frac < MIN_MASK_FRACTION:
        raise InputError(f"{what} covers nothing; the subject must be white on black.")
    if frac > 1 - MIN_MASK_FRACTION:
        raise InputError(f"{what} covers the whole image; the subject must be white on a black background.")


def segment_subject(frame: np.ndarray, iterations: int = 4) -> tuple[np.ndarray, str]:
    """Classical foreground cut-out; returns the mask and how it was found.

    1. GrabCut seeded from a border colour model: the top, left and right borders are taken as
       background samples (the bottom often cuts through the subject's feet), and pixels whose
       colour is far from every border colour cluster seed the probable foreground.
    2. When that finds nothing plausible (a subject that fills the frame or shares the
       background's colours): GrabCut initialised from a rectangle just inside the frame.
    3. Failing both: a centred ellipse, a guess the caller is told about.
    The largest connected component, holes filled, is the subject.
    """
    h, w = frame.shape[:2]
    scale = min(1.0, 256 / max(h, w))  # GrabCut is O(pixels); 256 px is plenty for a mask
    small = cv2.resize(frame, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]

    def full_size(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)

    fg = _largest_component(_grabcut_from_border(small, iterations))
    if 0.02 < fg.mean() < 0.85:
        return full_size(fg), "grabcut"
    fg = _largest_component(_grabcut_from_rect(small, iterations))
    if 0.05 < fg.mean() < 0.95:
        return full_size(fg), "grabcut (rectangle)"
    yy, xx = np.mgrid[0:sh, 0:sw]
    ellipse = ((xx - sw / 2) / (0.3 * sw)) ** 2 + ((yy - sh * 0.55) / (0.4 * sh)) ** 2 <= 1
    return full_size(ellipse), "centre guess"


def _grabcut_from_border(small: np.ndarray, iterations: int) -> np.ndarray:
    sh, sw = small.shape[:2]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    band = max(2, round(min(sh, sw) * 0.04))
    border = np.concatenate([lab[:band].reshape(-1, 3), lab[:, :band].reshape(-1, 3), lab[:, -band:].reshape(-1, 3)])
    k = min(5, len(border))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, _, centers = cv2.kmeans(border, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    dist = np.min(np.linalg.norm(lab[:, :, None, :] - centers[None, None], axis=-1), axis=-1)
    # How far background pixels stray from their own cluster sets what "unlike the border" means.
    border_dist = np.min(np.linalg.norm(border[:, None, :] - centers[None], axis=-1), axis=-1)
    seed = dist > max(2.5 * float(np.percentile(border_dist, 99)), 8.0)
    gc = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    gc[seed] = cv2.GC_PR_FGD
    gc[:1, :] = cv2.GC_BGD
    gc[:, :1] = gc[:, -1:] = cv2.GC_BGD
    if seed.sum() >= 16 and (~seed).sum() >= 16:
        _run_grabcut(small, gc, None, iterations, cv2.GC_INIT_WITH_MASK)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _grabcut_from_rect(small: np.ndarray, iterations: int) -> np.ndarray:
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * 0.06)), max(1, round(sh * 0.06))
    gc = np.zeros((sh, sw), np.uint8)
    _run_grabcut(small, gc, (mx, my, sw - 2 * mx, sh - my), iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _run_grabcut(img: np.ndarray, gc: np.ndarray, rect, iterations: int, mode: int) -> None:
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, gc, rect, bgd, fgd, iterations, mode)
    except cv2.error:
        pass  # GrabCut refuses degenerate colour models; the initial labels then stand


def _largest_component(mask: np.ndarray, keep_fraction: float = 0.1) -> np.ndarray:
    """The main blob: components at least `keep_fraction` of the largest, joined and hole-filled."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= keep_fraction * areas.max())
    comp = np.isin(labels, keep).astype(np.uint8)
    k = max(3, round(min(mask.shape) * 0.03)) | 1
    comp = cv2.morphologyEx(comp, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # Fill holes: flood the background from a padded border; whatever it cannot reach is inside.
    padded = np.pad(comp, 1)
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


def subject_cutout(frame: np.ndarray, mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """The subject cropped to its box as RGBA (alpha from the mask, edges softened)."""
    rows, cols = grow_box(mask_box(mask), margin, mask.shape[:2]).slices
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)[rows, cols]
    return np.dstack([frame[rows, cols], (alpha * 255).astype(np.uint8)])

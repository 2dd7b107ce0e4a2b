"""Cutting the subject out of a frame: GrabCut masks, mask checks and the RGBA cut-out.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from storyagent.errors import InputError
from storyagent.media.box import grow_box, mask_box

# A mask covering less than this fraction of the frame is "nothing", more than 1 - it "everything".
MIN_MASK_FRACTION = 0.002
MAX_CUTOUT_FRACTION = 0.98
"""A cut-out (not a mask the user drew) covering more than this of the frame took the whole picture."""
FLAT_STD = 4.0
"""A picture whose every channel varies less than this (standard deviation, 0-255) is one flat colour."""
CENTRE_GUESS = "centre guess"
WORK_SIDE = 256
"""Cut-outs are found at this longer side: GrabCut is O(pixels), and a mask needs no more."""


def check_mask(mask: np.ndarray, what: str) -> None:
    """Refuse a mask that covers (next to) nothing or (next to) everything; `what` names it."""
    frac = float(mask.mean())
    if frac < MIN_MASK_FRACTION:
        raise InputError(f"{what} covers nothing; the subject must be white on black.")
    if frac > 1 - MIN_MASK_FRACTION:
        raise InputError(f"{what} covers the whole image; the subject must be white on a black background.")


def check_cutout(frame: np.ndarray, mask: np.ndarray, how: str, file: Path) -> None:
    """Refuse, in one sentence naming `file`, a cut-out that found no subject (`cutout_problem`)."""
    problem = cutout_problem(frame, mask, how)
    if problem:
        raise no_subject(file, problem)


def no_subject(file: Path, problem: str) -> InputError:
    """The one sentence refusing `file`, whose cut-out has `problem`, and saying what to give instead."""
    return InputError(f"No subject could be cut out of {file.name} ({problem}); give a mask file {file.stem}_mask.png "
                      "beside it (white = subject) or a photo of the subject on a plain background.")


def cutout_problem(frame: np.ndarray, mask: np.ndarray, how: str) -> str | None:
    """Why the cut-out `mask` of `frame` (found by `how`) is no subject, or None when it looks like one:
    a picture of one flat colour, a cut-out that is empty or the whole frame, or the centred guess."""
    small, mask = _work_size(frame, mask)
    if float(small.reshape(-1, 3).std(axis=0).max()) < FLAT_STD:
        return "the picture is a single flat colour"
    frac = float(mask.mean())
    if frac < MIN_MASK_FRACTION:
        return "the cut-out is empty"
    if frac > MAX_CUTOUT_FRACTION:
        return "the cut-out is the whole picture"
    if how == CENTRE_GUESS:
        # GrabCut found nothing (or everything) and the ellipse stood in. It is nobody's outline: measured
        # across it, the colour changes no more than beside it (0.8 to 1.4 times on leaves, gravel, grass,
        # fur, a galaxy field and stained tissue, against 2 to 70 times around the subjects of real
        # photos), so the film would show a disc of the picture's texture. A photo that is all background
        # and one that is all subject both end here.
        return "nothing stands out from the background"
    return None


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
    small, _ = _work_size(frame)
    sh, sw = small.shape[:2]

    def full_size(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)

    fg = largest_component(_grabcut_from_border(small, iterations))
    if 0.02 < fg.mean() < 0.85:
        return full_size(fg), "grabcut"
    fg = largest_component(_grabcut_from_rect(small, iterations))
    if 0.05 < fg.mean() < 0.95:
        return full_size(fg), "grabcut (rectangle)"
    yy, xx = np.mgrid[0:sh, 0:sw]
    ellipse = ((xx - sw / 2) / (0.3 * sw)) ** 2 + ((yy - sh * 0.55) / (0.4 * sh)) ** 2 <= 1
    return full_size(ellipse), CENTRE_GUESS


def _work_size(frame: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """`frame` (and `mask`) with the longer side at most `WORK_SIDE`."""
    h, w = frame.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    if size == (w, h):
        return frame, mask
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    return small, mask


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
        run_grabcut(small, gc, None, iterations, cv2.GC_INIT_WITH_MASK)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _grabcut_from_rect(small: np.ndarray, iterations: int) -> np.ndarray:
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * 0.06)), max(1, round(sh * 0.06))
    gc = np.zeros((sh, sw), np.uint8)
    run_grabcut(small, gc, (mx, my, sw - 2 * mx, sh - my), iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def run_grabcut(img: np.ndarray, gc: np.ndarray, rect, iterations: int, mode: int) -> None:
    """`cv2.grabCut` on the labels `gc`, in place; the same picture and labels always give the same cut."""
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour clusters from OpenCV's random generator (one per thread), so without
    # this a frame's cut-out depended on how many cut-outs the thread had made before it.
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(img, gc, rect, bgd, fgd, iterations, mode)
    except cv2.error:
        pass  # GrabCut refuses degenerate colour models; the initial labels then stand


def largest_component(mask: np.ndarray, keep_fraction: float = 0.1, reach: float = 0.03) -> np.ndarray:
    """The main blob: the largest component and those near it (within `reach` of the shorter side) at
    least `keep_fraction` of its size, joined and hole-filled.

    A piece of background cut out apart from the subject (a dark doorway beside a head of dark hair)
    is a separate component some way off; a part of the subject that GrabCut split off (an ear, a
    hand) lies next to it.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    k = max(3, round(min(mask.shape) * reach)) | 1
    near = cv2.dilate((labels == main).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1,) * 2))
    touching = np.unique(labels[near.astype(bool) & (labels > 0)])
    keep = [c for c in touching if areas[c - 1] >= keep_fraction * areas.max()]
    comp = np.isin(labels, keep).astype(np.uint8)
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

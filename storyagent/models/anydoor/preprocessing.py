"""AnyDoor's image geometry: reference crop, high-frequency collage, target crop, paste-back.

Boxes are `storyagent.media.Box` (top, bottom, left, right; exclusive ends), in pixels of the
image they refer to; the box geometry (`mask_box`, `expand_box`, `square_box`) lives with it.
Upstream draws some ratios at random during training; inference here is deterministic and the
ratios are settings (the trainer draws them from ranges). The training-only augmentations
(`augment_reference`, `brightness_contrast`, `perturb_mask`) are pure functions of their
arguments; the trainer makes the random draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from storyagent.errors import InputError
from storyagent.media.box import Box, expand_box, mask_box, square_box


@dataclass
class PreprocessConfig:
    """Ratios and sizes of AnyDoor's crops (defaults: upstream inference)."""

    reference_size: int = 224
    """Side of the square reference crop DINOv2 sees."""
    reference_margin: float = 1.2
    """The reference box is grown by this factor (white border) before squaring."""
    target_box_expand: float = 1.1
    """The target mask's box is grown by this factor; the subject is generated inside it."""
    target_crop_expand: float = 2.0
    """The crop around the target box is this many times the box (upstream training draws 1.3 to 2.9)."""
    target_size: int = 512
    """Side of the square target crop the diffusion model works on."""
    paste_margin: int = 5
    """Pixels of the crop border not pasted back, hiding the seam of the square crop."""
    detail_resolution: int = 256
    """Resolution at which the high-frequency map is computed."""
    detail_threshold: int = 50
    """Sobel magnitudes below this are dropped from the high-frequency map."""
    erode_kernel: int = 5
    """Side of the square kernel eroding the mask before the Sobel map (drops the outline)."""
    erode_iterations: int = 2
    """Erosion passes."""
    min_mask_pixels: int = 10
    """A mask with fewer pixels than this is treated as empty."""


@dataclass
class ReferenceCrop:
    image: np.ndarray
    """Subject on white, square, reference_size x reference_size x 3 uint8."""
    mask: np.ndarray
    """Subject mask of `image`, bool."""
    detail: np.ndarray
    """High-frequency map of `image` inside the eroded mask, uint8, same size."""


@dataclass
class TargetCrop:
    image: np.ndarray
    """The target crop, padded square and resized: S x S x 3 float32 in [-1, 1] (training target)."""
    hint: np.ndarray
    """Collage RGB in [-1, 1] and a mask channel (1 box, 0 context, -1 padding): S x S x 4 float32."""
    crop_box: Box
    """The crop's box in the full frame (before padding)."""
    box_in_crop: Box
    """The generation box inside the unpadded crop."""
    pad: tuple[int, int, int, int]
    """(top, bottom, left, right) padding that made the crop square."""


def pad_to_square(image: np.ndarray, value: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Pad the short side equally on both ends; returns the image and (top, bottom, left, right)."""
    h, w = image.shape[:2]
    diff = abs(h - w)
    a, b = diff // 2, diff - diff // 2
    pad = (a, b, 0, 0) if h < w else (0, 0, a, b)
    widths = ((pad[0], pad[1]), (pad[2], pad[3])) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="constant", constant_values=value), pad


def high_frequency_map(image: np.ndarray, mask: np.ndarray, settings: PreprocessConfig) -> np.ndarray:
    """The subject's edges with their colours: Sobel magnitude inside the eroded mask, thresholded,
    used as a per-pixel weight on the image. Keeps detail, drops flat colour and the outline."""
    h, w = image.shape[:2]
    side = settings.detail_resolution
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    small_mask = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR) > 0.5
    kernel = np.ones((settings.erode_kernel, settings.erode_kernel), np.uint8)
    small_mask = cv2.erode(small_mask.astype(np.uint8), kernel, iterations=settings.erode_iterations)
    gx = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_64F, 1, 0, ksize=3))
    gy = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_64F, 0, 1, ksize=3))
    magnitude = cv2.addWeighted(gx, 0.5, gy, 0.5, 0).max(axis=-1) * small_mask
    magnitude[magnitude < settings.detail_threshold] = 0
    detail = (magnitude[..., None].astype(np.float32) / 255.0 * small.astype(np.float32)).astype(np.uint8)
    return cv2.resize(detail, (w, h), interpolation=cv2.INTER_LINEAR)


def _check_image(image: np.ndarray, mask: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"The {what} image must be H x W x 3 uint8 RGB (got {image.shape}, {image.dtype}).")
    if mask.shape != image.shape[:2]:
        raise InputError(f"The {what} mask is {mask.shape} but its image is {image.shape[:2]}; they must match.")
    return image, mask.astype(bool)


def prepare_reference(image: np.ndarray, mask: np.ndarray, settings: PreprocessConfig) -> ReferenceCrop:
    """Subject on white, cropped to its box grown by `reference_margin`, padded square, resized."""
    image, mask = _check_image(image, mask, "reference")
    y1, y2, x1, x2 = mask_box(mask, settings.min_mask_pixels)
    on_white = np.where(mask[..., None], image, np.uint8(255))[y1:y2, x1:x2]
    sub_mask = mask[y1:y2, x1:x2]
    # White margin around the subject, then white padding to a square.
    h, w = sub_mask.shape
    H, W = int(h * settings.reference_margin), int(w * settings.reference_margin)
    border = ((H - h) // 2, H - h - (H - h) // 2), ((W - w) // 2, W - w - (W - w) // 2)
    on_white = np.pad(on_white, border + ((0, 0),), constant_values=255)
    sub_mask = np.pad(sub_mask, border, constant_values=False)
    on_white, _ = pad_to_square(on_white, 255)
    sub_mask, _ = pad_to_square(sub_mask, False)
    side = settings.reference_size
    crop = cv2.resize(on_white, (side, side), interpolation=cv2.INTER_LINEAR)
    crop_mask = cv2.resize(sub_mask.astype(np.uint8) * 255, (side, side), interpolation=cv2.INTER_LINEAR) > 127
    return ReferenceCrop(image=crop, mask=crop_mask, detail=high_frequency_map(crop, crop_mask, settings))


def prepare_target(image: np.ndarray, mask: np.ndarray, reference: ReferenceCrop,
                   settings: PreprocessConfig, box_expand: float | None = None,
                   crop_expand: float | None = None,
                   region_from_mask: Callable[[np.ndarray], np.ndarray] | None = None) -> TargetCrop:
    """Square crop around the target box with the reference detail map pasted into the box.

    The hint's mask channel is the box; with `region_from_mask` (training) it is that function of
    the target mask cropped like the image (upstream trains on perturbed target masks this way).
    """
    image, mask = _check_image(image, mask, "target")
    hw = image.shape[:2]
    box = expand_box(mask_box(mask, settings.min_mask_pixels), box_expand or settings.target_box_expand, hw)
    crop_box = square_box(expand_box(box, crop_expand or settings.target_crop_expand, hw), hw)
    cy1, cy2, cx1, cx2 = crop_box
    crop = image[cy1:cy2, cx1:cx2]
    by1, by2, bx1, bx2 = box[0] - cy1, box[1] - cy1, box[2] - cx1, box[3] - cx1

    collage = crop.copy()
    collage[by1:by2, bx1:bx2] = cv2.resize(reference.detail, (bx2 - bx1, by2 - by1), interpolation=cv2.INTER_LINEAR)
    if region_from_mask is None:
        region = np.zeros(crop.shape[:2], np.float32)
        region[by1:by2, bx1:bx2] = 1.0
    else:
        region = region_from_mask(mask[cy1:cy2, cx1:cx2]).astype(np.float32)

    crop_sq, pad = pad_to_square(crop, 0)
    collage_sq, _ = pad_to_square(collage, 0)
    region_sq, _ = pad_to_square(region, -1.0)  # -1 marks padding, as in upstream training
    side = settings.target_size
    crop_sq = cv2.resize(crop_sq, (side, side), interpolation=cv2.INTER_LINEAR)
    collage_sq = cv2.resize(collage_sq, (side, side), interpolation=cv2.INTER_LINEAR)
    region_sq = cv2.resize(region_sq, (side, side), interpolation=cv2.INTER_NEAREST)
    hint = np.concatenate([collage_sq.astype(np.float32) / 127.5 - 1.0, region_sq[..., None]], axis=-1)
    return TargetCrop(image=crop_sq.astype(np.float32) / 127.5 - 1.0, hint=hint, crop_box=crop_box,
                      box_in_crop=Box(by1, by2, bx1, bx2), pad=pad)


def paste_back(generated: np.ndarray, frame: np.ndarray, target: TargetCrop,
               settings: PreprocessConfig) -> tuple[np.ndarray, Box]:
    """Undo resize and padding of the generated square crop and paste it over `frame`'s crop box,
    less `paste_margin` on each side. Returns the new frame and the replaced box; every pixel
    outside that box is `frame`'s."""
    cy1, cy2, cx1, cx2 = target.crop_box
    top, bottom, left, right = target.pad
    side = (cy2 - cy1) + top + bottom
    full = cv2.resize(generated, (side, side), interpolation=cv2.INTER_LINEAR)
    full = full[top:side - bottom, left:side - right]  # (cy2 - cy1, cx2 - cx1, 3)
    m = max(0, min(settings.paste_margin, (cy2 - cy1) // 4, (cx2 - cx1) // 4))
    out = frame.copy()
    out[cy1 + m:cy2 - m, cx1 + m:cx2 - m] = full[m:full.shape[0] - m, m:full.shape[1] - m]
    return out, Box(cy1 + m, cy2 - m, cx1 + m, cx2 - m)


# ---------------------------------------------------------------------- training-only augmentation


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """`image * alpha + 255 * beta` on every pixel, clipped to [0, 255] and truncated to uint8.

    This is albumentations' RandomBrightnessContrast with `brightness_by_max=True` (its default,
    which upstream AnyDoor trains with): contrast scales, brightness shifts by a share of 255.
    The white background is transformed with the subject, so it turns grey whenever
    alpha + beta < 1, as in upstream's training references.
    """
    table = np.arange(256, dtype=np.float32)
    table *= alpha  # float32 arithmetic, like albumentations' lookup table
    table += beta * 255.0
    return cv2.LUT(image, np.clip(table, 0, 255).astype(np.uint8))


def augment_reference(reference: ReferenceCrop, settings: PreprocessConfig, flip: bool = False,
                      alpha: float = 1.0, beta: float = 0.0) -> ReferenceCrop:
    """The reference crop mirrored (`flip`) and/or passed through `brightness_contrast(alpha, beta)`.

    The mask follows the flip only; the high-frequency map is recomputed from the augmented image,
    because upstream derives the collage's detail from the augmented reference too.
    """
    image, mask = reference.image, reference.mask
    if flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if alpha != 1.0 or beta != 0.0:
        image = brightness_contrast(np.ascontiguousarray(image), alpha, beta)
    if image is reference.image:
        return reference
    image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
    return ReferenceCrop(image=image, mask=mask, detail=high_frequency_map(image, mask, settings))


def _random_kernel(rng: np.random.Generator) -> np.ndarray:
    """A 3-9 px square, disc, or half-height/half-width ellipse structuring element."""
    size = int(rng.integers(3, 10))
    shape, ksize = [(cv2.MORPH_RECT, (size, size)), (cv2.MORPH_ELLIPSE, (size, size)),
                    (cv2.MORPH_ELLIPSE, (size, size // 2)), (cv2.MORPH_ELLIPSE, (size // 2, size))][rng.integers(4)]
    return cv2.getStructuringElement(shape, ksize)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def perturb_mask(mask: np.ndarray, rng: np.random.Generator, iou_range: tuple[float, float] = (0.3, 0.99),
                 rounds: int = 250) -> np.ndarray:
    """A coarse region around `mask`, like one a user would draw: bool, same shape.

    Aims at an IoU with `mask` drawn from `iou_range`: each round dilates or erodes four random
    rectangles of the region (and sometimes seeds a stray pixel), never removing the mask itself,
    until the IoU falls below the aim or `rounds` run out; the largest connected part is kept.
    Upstream AnyDoor's `perturb_mask` does this to the target mask for 70 % of training samples.
    """
    truth = np.asarray(mask, bool)
    h, w = truth.shape
    region = truth.astype(np.uint8)
    if h <= 2 or w <= 2 or not truth.any():
        return truth.copy()
    aim = rng.uniform(*iou_range)
    for _ in range(rounds):
        for _ in range(4):
            x0, y0 = int(rng.integers(w)), int(rng.integers(h))
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
            if rng.random() < 0.1:  # a stray pixel: the next dilation grows it into a blob or fills a hole
                region[(y0 + y1) // 2, (x0 + x1) // 2] = rng.integers(2)
            morph = cv2.dilate if rng.random() < 0.5 else cv2.erode
            region[y0:y1, x0:x1] = morph(region[y0:y1, x0:x1], _random_kernel(rng))
            region |= truth
        if mask_iou(region, truth) < aim:
            break
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    if count <= 1:
        return truth.copy()
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))

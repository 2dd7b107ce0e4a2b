"""AnyDoor's image geometry: reference crop, high-frequency collage, target crop, paste-back.

Boxes are `storyagent.media.Box` (top, bottom, left, right; exclusive ends), in pixels of the
image they refer to; the box geometry (`mask_box`, `expand_box`, `square_box`) lives with it.
Upstream draws some ratios at random during training; inference here is deterministic and the
ratios are settings (the trainer draws them from ranges).
"""

from __future__ import annotations

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
    """The crop around the target box is this many times the box (upstream draws 1.5 to 3)."""
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
                   crop_expand: float | None = None) -> TargetCrop:
    """Square crop around the target box with the reference detail map pasted into the box."""
    image, mask = _check_image(image, mask, "target")
    hw = image.shape[:2]
    box = expand_box(mask_box(mask, settings.min_mask_pixels), box_expand or settings.target_box_expand, hw)
    crop_box = square_box(expand_box(box, crop_expand or settings.target_crop_expand, hw), hw)
    cy1, cy2, cx1, cx2 = crop_box
    crop = image[cy1:cy2, cx1:cx2]
    by1, by2, bx1, bx2 = box[0] - cy1, box[1] - cy1, box[2] - cx1, box[3] - cx1

    collage = crop.copy()
    collage[by1:by2, bx1:bx2] = cv2.resize(reference.detail, (bx2 - bx1, by2 - by1), interpolation=cv2.INTER_LINEAR)
    region = np.zeros(crop.shape[:2], np.float32)
    region[by1:by2, bx1:bx2] = 1.0

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

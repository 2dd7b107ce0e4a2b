"""Subject removal on a synthetic frame: no subject colour survives inside the grown mask."""

import numpy as np
import pytest

from storyagent.media.box import mask_box
from storyagent.models.removal import RemovalConfig, SubjectRemover, dilate_mask


def synthetic_frame(size: int = 64):
    """A sky-to-grass gradient with a red disc whose anti-aliased rim lies just outside its mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = yy / (size - 1)
    background = np.stack([40 + 20 * t, 120 + 60 * t, 220 - 140 * t], -1)
    red = np.array([220.0, 30.0, 30.0])
    dist = np.hypot(yy - 30, xx - 34)
    cover = np.clip(13.0 - dist, 0.0, 1.0)[..., None]  # 1 inside r=12, a soft 1-px rim to r=13
    frame = (background * (1 - cover) + red * cover).round().astype(np.uint8)
    return frame, dist <= 11.5  # the mask misses the outer pixel ring, as a real mask would


def redness(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(np.int32)
    return p[..., 0] - np.maximum(p[..., 1], p[..., 2])


def test_opencv_removal_leaves_no_subject_pixels():
    frame, mask = synthetic_frame()
    assert (redness(frame[mask]) > 150).all() and (redness(frame[~dilate_mask(mask, 3)]) < 0).all()
    result = SubjectRemover(RemovalConfig(min_dilate_px=3))(frame, mask)
    assert result.method == "opencv"
    assert result.mask.sum() > mask.sum() and result.mask[mask].all(), "the mask grew around the subject"
    inside = result.image[result.mask]
    # background here is blue/green dominant (redness ≤ -50); any trace of the disc would push it up
    assert redness(inside).max() < 0
    np.testing.assert_array_equal(result.image[~result.mask], frame[~result.mask])
    assert result.box == mask_box(mask) == (19, 42, 23, 46)
    np.testing.assert_array_equal(result.subject_mask, mask)


def test_without_dilation_the_rim_would_survive():
    # The same removal with the grown mask switched off keeps the disc's rim: dilation is what clears it.
    frame, mask = synthetic_frame()
    result = SubjectRemover(RemovalConfig(dilate_fraction=0.0, min_dilate_px=0))(frame, mask)
    assert redness(result.image[dilate_mask(mask, 3)]).max() > 0


def test_empty_or_mismatched_mask_is_refused():
    frame, mask = synthetic_frame()
    with pytest.raises(ValueError, match="empty"):
        SubjectRemover()(frame, np.zeros_like(mask))
    with pytest.raises(ValueError, match="differ"):
        SubjectRemover()(frame, mask[:10])


def test_diffusion_inpainting_changes_only_the_hole():
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    frame, mask = synthetic_frame(36)  # not a multiple of 8: padded for SDXL, cropped back
    remover = SubjectRemover.from_sdxl(tiny_sdxl(), RemovalConfig(num_inference_steps=2))
    result = remover(frame, mask, background="a beach at noon", avoid="red ball", seed=1)
    assert result.method == "diffusion" and result.image.shape == frame.shape
    np.testing.assert_array_equal(result.image[~result.mask], frame[~result.mask])
    assert np.abs(result.image[result.mask].astype(int) - frame[result.mask]).max() > 0
    again = remover(frame, mask, background="a beach at noon", avoid="red ball", seed=1)
    np.testing.assert_array_equal(again.image, result.image)

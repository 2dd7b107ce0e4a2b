"""The animatic renderer's shortcuts change no pixel: the scene drawn once per pipeline, compositing over
the sprite's (or the subtitle's) box only, a still camera's view warped once."""

import numpy as np
import pytest

from storyagent.media import ReferenceMedia
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.models.animatic.backgrounds import draw_background
from storyagent.models.animatic.layout import ShotLayout
from storyagent.models.animatic.pipeline import _Overlay
from storyagent.schemas import Shot
from tests.support.media import disc_image


def full_frame_over(frame, rgba, y, x):
    """The plain formula over the whole frame: the picture placed at (y, x) on a transparent layer."""
    H, W = frame.shape[:2]
    layer = np.zeros((H, W, 4), np.uint8)
    h, w = rgba.shape[:2]
    t, l, b, r = max(0, -y), max(0, -x), min(h, H - y), min(w, W - x)
    if b > t and r > l:
        layer[y + t:y + b, x + l:x + r] = rgba[t:b, l:r]
    a = layer[..., 3:4].astype(np.float32) / 255.0
    out = (frame.astype(np.float32) * (1 - a) + layer[..., :3].astype(np.float32) * a).astype(np.uint8)
    return out, a[..., 0] > 0.5


@pytest.mark.parametrize("y,x", [(10, 20), (-15, -30), (50, 100), (-100, 0), (200, 10)])
def test_compositing_over_the_box_is_the_full_frame_formula(y, x):
    rng = np.random.default_rng(abs(y) * 1000 + abs(x))
    frame = rng.integers(0, 256, (80, 120, 3), np.uint8)
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[5:30, 8:50] = rng.integers(0, 256, (25, 42, 4), np.uint8)  # a transparent margin around it
    expected, expected_mask = full_frame_over(frame, rgba, y, x)
    mask = np.zeros(frame.shape[:2], bool)
    _Overlay.of(rgba).over(frame, y, x, mask)
    assert np.array_equal(frame, expected) and np.array_equal(mask, expected_mask)


def shot(motion: str, index: int = 1) -> Shot:
    return Shot(index=index, narration="Pip looks at the sea.", description="d", subject_action="walks along",
                subject_region="center", background="a sandy beach at dawn", shot_type="medium",
                camera_motion=motion, duration=2.0)


@pytest.fixture(scope="module")
def sprites():
    img, mask = disc_image()
    return SubjectSprites.from_reference(ReferenceMedia(frames=[img], masks=[mask]))


@pytest.mark.parametrize("motion", ["static", "pan left", "zoom in"])
def test_a_pipeline_that_drew_the_storyboard_renders_the_clip_a_fresh_one_would(sprites, motion):
    cfg = AnimaticConfig(width=160, height=96, fps=4)
    used = AnimaticPipeline(cfg)
    board = used(shot(motion), sprites, seed=3, num_frames=1)
    clip = used(shot(motion), sprites, seed=3)
    fresh = AnimaticPipeline(cfg)(shot(motion), sprites, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(clip.frames, fresh.frames))
    assert all(np.array_equal(a, b) for a, b in zip(clip.masks, fresh.masks))
    assert np.array_equal(board.storyboard, clip.storyboard) and np.array_equal(board.storyboard_mask, clip.masks[0])
    # The kept scene is the one drawn for that text, size and seed, untouched by the renders.
    canvas = used.background("a sandy beach at dawn", 208, 126, 3)
    assert not canvas.flags.writeable and np.array_equal(canvas, draw_background("a sandy beach at dawn", 208, 126, 3))


def rotation(angle: float, px: float, py: float) -> np.ndarray:
    return ShotLayout(subject_box=(0, 0, 1, 1), subtitle_box=(0, 0, 1, 1), camera=np.eye(2, 3), flipped=False,
                      angle=angle, pivot=(px, py)).rotation


@pytest.mark.parametrize("y,x,px,py", [(10, 20, 40, 50), (-15, 30, 0, 0), (40, 90, 100, 70)])
def test_a_right_angle_turn_is_the_picture_rotated(y, x, px, py):
    """Turning a placed picture by 90° counter-clockwise about a pixel corner lands every pixel exactly
    where np.rot90 puts it: the turn neither shifts nor blurs the sprite."""
    rng = np.random.default_rng(abs(y * 7 + x))
    frame = rng.integers(0, 256, (80, 120, 3), np.uint8)
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[3:27, 4:36] = rng.integers(0, 256, (24, 32, 4), np.uint8)
    # Pixel (i, j) at (x + j, y + i) goes to column px - py + y + i, row px + py - x - 1 - j.
    expected, expected_mask = full_frame_over(frame, np.rot90(rgba), px + py - x - rgba.shape[1], px - py + y)
    turned, left, top = _Overlay.of(rgba).turned(rotation(90.0, px, py), x, y, 120, 80)
    out, mask = frame.copy(), np.zeros(frame.shape[:2], bool)
    turned.over(out, top, left, mask)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1 and np.array_equal(mask, expected_mask)


def test_turning_by_nothing_changes_no_pixel_and_the_water_cuts_rows():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (80, 120, 3), np.uint8)
    rgba = rng.integers(0, 256, (30, 40, 4), np.uint8)
    plain, plain_mask = full_frame_over(frame, rgba, 12, 25)
    turned, left, top = _Overlay.of(rgba).turned(rotation(0.0, 60, 60), 25, 12, 120, 80)
    out, mask = frame.copy(), np.zeros(frame.shape[:2], bool)
    turned.over(out, top, left, mask)
    assert np.abs(out.astype(int) - plain.astype(int)).max() <= 1 and np.array_equal(mask, plain_mask)
    # Above the water: rows from 20 on (the picture's own row 8) are left as the frame was.
    cut, cut_mask = frame.copy(), np.zeros(frame.shape[:2], bool)
    _Overlay.of(rgba).above(20 - 12).over(cut, 12, 25, cut_mask)
    assert np.array_equal(cut[20:], frame[20:]) and not cut_mask[20:].any()
    assert np.array_equal(cut[:20], plain[:20]) and np.array_equal(cut_mask[:20], plain_mask[:20])

"""A clip's subject masks hold still (issue 23, point 3): the first frame's cut-out carried through the
clip by optical flow, frames whose mask jumps dropped, user masks kept as they are.

The clip is `tests.support.media.write_figure_video`: a white-suited figure with dark hair, thin arms
and a 2 px antenna on leafy clutter with bark-brown patches (the hair's colour) and a near-black block
beside the head, filmed hand-held (pan, shake, exposure breathing), drifting right and growing 8%.

Baseline, before the change (per-frame GrabCut, commit 42251e4), on this clip with this file's measures:
the neighbour IoU of the sprite masks falls to 0.69 (frames 11/12: the hair, bark and pale blobs in and
out), and to between 0.68 and 0.86 under six other OpenCV random seeds (the cut-out depended on the
generator's state); every frame took in 97-100% of the black block (IoU with the truth 0.56 to 0.69).
(Measured by running these measures with `git archive 42251e4 storyagent` first on PYTHONPATH.)
"""

import cv2
import numpy as np
import pytest
from PIL import Image

from storyagent.media import load_reference, subject_cutout, track_subject
from storyagent.media.tracking import FLOW_TRACKED
from tests.support.media import PAN, busy_background, dark_block_in_frame, figure_frame, write_figure_video

SPRITE_SIZE = (64, 96)  # width, height: every sprite mask is compared at this one size


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def sprite_mask(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The sprite's opaque pixels as the animatic pastes them (cropped to the subject's box, scaled to
    one size): the figure's motion and growth drop out, a lost head or a piece of background does not."""
    alpha = subject_cutout(frame, mask)[..., 3] > 127
    return cv2.resize(alpha.astype(np.uint8), SPRITE_SIZE, interpolation=cv2.INTER_NEAREST).astype(bool)


@pytest.fixture(scope="module")
def figure_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "astronaut.mp4"
    return path, write_figure_video(path)


@pytest.fixture(scope="module")
def figure_reference(figure_clip):
    return load_reference(figure_clip[0])


def test_the_sprite_masks_of_a_moving_figure_hold_still_from_frame_to_frame(figure_reference):
    ref = figure_reference
    assert len(ref.frames) == 16 and not ref.dropped
    assert ref.mask_methods[0].startswith("grabcut") and set(ref.mask_methods[1:]) == {FLOW_TRACKED}
    sprites = [sprite_mask(f, m) for f, m in zip(ref.frames, ref.masks)]
    neighbours = [iou(a, b) for a, b in zip(sprites, sprites[1:])]
    assert min(neighbours) >= 0.9, np.round(neighbours, 3)


def test_the_masks_are_the_figure_and_never_the_dark_block(figure_clip, figure_reference):
    """Steady is not enough: steadily wrong would pass the test above."""
    _, truths = figure_clip
    ref = figure_reference
    accuracy = [iou(m, t) for m, t in zip(ref.masks, truths)]
    assert min(accuracy) >= 0.75, np.round(accuracy, 3)
    for i, mask in enumerate(ref.masks):
        block = dark_block_in_frame(i) & ~truths[i]
        assert (mask & block).sum() <= 0.02 * block.sum(), f"frame {i + 1} took the dark block in"


def test_the_same_clip_gives_the_same_masks(figure_clip, figure_reference):
    again = load_reference(figure_clip[0])
    assert all(np.array_equal(a, b) for a, b in zip(again.masks, figure_reference.masks))


@pytest.fixture(scope="module")
def figure_frames():
    bg = busy_background(240 + PAN, 320 + PAN)
    return [figure_frame(i, background=bg)[0] for i in range(16)]


@pytest.mark.parametrize("cover", ["a red card over the head", "the figure gone"])
def test_a_frame_whose_subject_is_covered_is_dropped_and_the_next_frames_are_tracked(figure_frames, cover):
    frames = list(figure_frames)
    if cover == "the figure gone":
        frames[8] = busy_background(240 + PAN, 320 + PAN)[PAN // 2:PAN // 2 + 240, 10:330].copy()
    else:
        frames[8] = frames[8].copy()
        cv2.rectangle(frames[8], (100, 60), (200, 160), (200, 40, 40), -1)
    tracked = track_subject(frames)
    assert list(tracked.dropped) == [8], tracked.dropped
    assert "from the frame before" in tracked.dropped[8]
    # Frame 9 is tracked from frame 7, the last one kept, not from the odd one.
    clean = track_subject(figure_frames)
    assert iou(tracked.masks[9], clean.masks[9]) > 0.95


def test_a_clip_that_fades_in_is_tracked_from_its_middle(tmp_path, figure_frames):
    """Its first frame is black, which no cut-out can use: tracking starts from the middle frame and runs
    both ways; the black frame is dropped, said why."""
    from storyagent.media import write_video

    frames = [np.zeros_like(figure_frames[0]), *figure_frames[1:]]
    write_video(tmp_path / "fade.mp4", frames, 8)
    ref = load_reference(tmp_path / "fade.mp4")
    assert [d.number for d in ref.dropped] == [1] and len(ref.frames) == 15
    assert ref.mask_methods[7].startswith("grabcut") and ref.mask_methods.count(FLOW_TRACKED) == 14
    sprites = [sprite_mask(f, m) for f, m in zip(ref.frames, ref.masks)]
    assert min(iou(a, b) for a, b in zip(sprites, sprites[1:])) >= 0.9


class ShiftingPropagator:
    """Stands in for SAM 2: the first mask moved right 2 px a frame, with frame 5 blown up to twice the size."""

    name = "test propagator"

    def __init__(self) -> None:
        self.calls: list[tuple[int, np.ndarray]] = []

    def __call__(self, frames, first_mask):
        self.calls.append((len(frames), first_mask))
        masks = [np.roll(first_mask, 2 * i, axis=1) for i in range(len(frames))]
        masks[5] = cv2.dilate(masks[5].astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
        return masks


def test_a_propagator_carries_the_first_mask_and_its_odd_frames_are_dropped(figure_frames):
    propagator = ShiftingPropagator()
    tracked = track_subject(figure_frames, propagator)
    assert len(propagator.calls) == 1 and propagator.calls[0][0] == 16
    assert np.array_equal(tracked.masks[0], propagator.calls[0][1])
    assert tracked.methods[0].startswith("grabcut") and set(tracked.methods[1:]) == {"test propagator"}
    assert list(tracked.dropped) == [5] and "grew" in tracked.dropped[5]  # moving is no change; growing is


def test_a_user_mask_for_a_clip_is_used_as_it_is(tmp_path, figure_clip):
    user = np.zeros((240, 320), np.uint8)
    user[100:240, 90:210] = 255
    Image.fromarray(user).save(tmp_path / "m.png")
    ref = load_reference(figure_clip[0], mask=tmp_path / "m.png")
    assert ref.mask_methods == ["user mask"] * 16 and not ref.dropped
    assert all(np.array_equal(m, user > 127) for m in ref.masks)


def test_a_photo_is_cut_out_alone(tmp_path):
    frame, truth = figure_frame(0)
    Image.fromarray(frame).save(tmp_path / "still.png")
    ref = load_reference(tmp_path / "still.png")
    assert ref.mask_methods == ["grabcut (rectangle)"] and not ref.dropped and iou(ref.masks[0], truth) > 0.75

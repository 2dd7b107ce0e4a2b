"""LoRA-BE reference clips: contiguous windows at one stride, held (never wrapped) short videos, photos as stills."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from storyagent.media import segment_subject
from storyagent.models.lora_be import Clip, fit_clip, load_subject_clips
from storyagent.models.lora_be.data import plan_windows, target_stride
from tests.support.media import index_of_frame, write_index_video



def left_half(frames: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    """A segmenter stand-in: the left half of every frame is the subject."""
    out = []
    for f in frames:
        m = np.zeros(f.shape[:2], bool)
        m[:, : f.shape[1] // 2] = True
        out.append((m, "test"))
    return out


def assert_contiguous(clip: Clip, frames: int = 16):
    idx = clip.source_indices
    assert len(idx) == frames == clip.frames.shape[0] == clip.masks.shape[0]
    assert idx == [idx[0] + clip.stride * i for i in range(frames)]
    assert [index_of_frame(f) for f in clip.frames] == idx  # the pixels are those source frames


def test_a_clip_is_consecutive_source_frames_at_one_stride(tmp_path):
    """Upstream trains on `video_length` frames at one `frame_stride` (lvdm/data/webvid.py; frame_stride in
    configs/training_512_v1.0/config.yaml). 80 frames at 30 fps: the ~2 s target stride is round(30*2/16) = 4."""
    video = write_index_video(tmp_path / "walk.mp4", 80)
    (clip,) = load_subject_clips([video], segment=left_half)
    assert clip.stride == 4 and clip.fps == pytest.approx(30 / 4) and not clip.still
    assert_contiguous(clip)
    assert clip.source_indices[0] == (80 - 61) // 2  # the one window sits in the middle
    assert clip.mask_methods == ["test"] * 16 and clip.masks[:, :, :32].all() and not clip.masks[:, :, 32:].any()


def test_a_shorter_video_gets_the_largest_stride_that_fits(tmp_path):
    # 40 frames cannot hold 16 at stride 4 (61 frames); stride 2 (31 frames) is the largest that fits.
    video = write_index_video(tmp_path / "short.mp4", 40, size=(96, 128))
    (clip,) = load_subject_clips([video], segment=left_half, max_side=64)
    assert clip.stride == 2 and clip.fps == pytest.approx(15.0)
    assert_contiguous(clip)
    assert clip.frames.shape[1:3] == (48, 64)  # long side <= max_side


def test_windows_do_not_overlap_and_are_capped(tmp_path):
    video = write_index_video(tmp_path / "long.mp4", 80)
    clips = load_subject_clips([video], segment=left_half, max_clips_per_video=3, seconds=0.5)
    assert len(clips) == 3 and {c.stride for c in clips} == {1}
    for c in clips:
        assert_contiguous(c)
    spans = [(c.source_indices[0], c.source_indices[-1]) for c in clips]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def test_a_video_shorter_than_a_clip_holds_its_last_frame_and_never_wraps(tmp_path):
    video = write_index_video(tmp_path / "tiny.mp4", 10)
    user_mask = np.zeros((48, 64), np.uint8)
    user_mask[10:30, 20:40] = 255
    Image.fromarray(user_mask).save(tmp_path / "tiny_mask.png")  # the user's mask beats the segmenter
    (clip,) = load_subject_clips([video], segment=left_half)
    assert clip.mask_methods == ["user mask"] * 16 and (clip.masks == (user_mask > 0)).all()
    assert clip.stride == 1
    assert clip.source_indices == list(range(10)) + [9] * 6
    assert [index_of_frame(f) for f in clip.frames] == clip.source_indices
    # The trainer's window of a clip holds too, rather than wrapping to frame 0.
    fitted = fit_clip(clip, 8, 48, 64, start=5)
    assert fitted.source_indices == [5, 6, 7, 8, 9, 9, 9, 9] and fitted.stride == 1 and fitted.fps == clip.fps


def test_window_plan():
    assert target_stride(30, 16) == 4 and target_stride(24, 16) == 3 and target_stride(None, 16) == 1
    assert plan_windows(200, 16, 4, 4) == (4, [[2 + 4 * i for i in range(16)], [69 + 4 * i for i in range(16)],
                                               [136 + 4 * i for i in range(16)]])
    assert plan_windows(16, 16, 4, 4) == (1, [list(range(16))])


def write_photo(path, alpha: bool):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = (30, 60, 200)
    rgba[8:30, 10:28] = (240, 200, 20, 255)
    rgba[..., 3] = rgba[..., 3] if alpha else 255
    Image.fromarray(rgba if alpha else rgba[..., :3], "RGBA" if alpha else "RGB").save(path)
    return path


def test_a_photo_is_one_still_clip_and_user_masks_win_over_the_segmenter(tmp_path):
    calls = []

    def segment(frames):
        calls.append(len(frames))
        return left_half(frames)

    with_alpha = write_photo(tmp_path / "cut.png", alpha=True)
    plain = write_photo(tmp_path / "plain.png", alpha=False)
    a, b = load_subject_clips([with_alpha, plain], segment=segment)
    for clip in (a, b):
        assert clip.still and clip.fps is None and clip.frames.shape == (1, 40, 40, 3) and clip.source_indices == [0]
    # The alpha channel is the user's own cut-out: it wins, and the segmenter only sees the plain photo.
    assert a.mask_methods == ["alpha"] and a.masks[0, 8:30, 10:28].all() and not a.masks[0, :8].any()
    assert b.mask_methods == ["test"] and calls == [1]
    # Without a segmenter the media module's GrabCut cut-out decides.
    (c,) = load_subject_clips([plain])
    mask, how = segment_subject(c.frames[0])
    assert c.mask_methods == [how] and np.array_equal(c.masks[0], mask)

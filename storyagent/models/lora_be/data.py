"""The subject's reference clips for LoRA-BE: contiguous video windows at one stride, photos as stills.

Upstream DynamiCrafter trains on `video_length` consecutive frames taken at one `frame_stride`
(`lvdm/data/webvid.py`; `data.params.train.params.frame_stride` in
`configs/training_512_v1.0/config.yaml`), and conditions on the clip's frame rate after striding.
A window therefore never jumps across the video: a video becomes up to `max_clips_per_video`
windows of `frames` source frames `start, start + s, ..., start + (frames - 1) s`; a video too
short for even stride 1 holds its last frame. A photo becomes one still clip (the trainer holds
its frame and trains appearance only on it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from storyagent.errors import InputError
from storyagent.media import MIN_SIDE, VIDEO_SUFFIXES, check_mask, read_image, read_mask, segment_subject
from storyagent.media.reading import decode_video, probe_video
from storyagent.media.reference import sibling_mask

Segmenter = Callable[[list[np.ndarray]], list[tuple[np.ndarray, str]]]
"""Frames (H, W, 3) uint8 -> one (mask (H, W) bool, how it was made) per frame."""

CLIP_SECONDS = 2.0
"""How long a clip should last by default: the target stride makes `frames` frames span about this.

16 frames over ~2 s is ~8 fps, inside the range upstream trains on (a 25-30 fps source at a
random stride of 1-6, `random_fs: true` with `frame_stride: 6`), and long enough to show motion.
"""

MAX_SIDE = 1024
"""Longest side a reference frame is kept at. The trainer resizes a clip to cover its frame (320x512
for the 512 model) and crops around the subject; a 9:16 phone video kept at 512 would be 288 px wide
and upscaled almost 2x to cover 512, so frames are kept large enough to cover it in either
orientation (a 16:9 or 9:16 frame at 1024 is 576 px on its short side) and only ever shrunk."""


@dataclass
class Clip:
    """A reference clip of the subject: frames, masks, and where in its source they came from."""

    frames: np.ndarray
    """(t, H, W, 3) uint8."""
    masks: np.ndarray
    """(t, H, W) bool, True on the subject."""
    fps: float | None = None
    """Frames per second of the clip as sampled (the source's rate / stride); None for a photo or unknown."""
    stride: int = 1
    """Source frames between two consecutive clip frames."""
    source_indices: list[int] = field(default_factory=list)
    """Index in the source video of each frame (a held last frame repeats); 0..t-1 when not given."""
    still: bool = False
    """True for a photo: no motion to learn from, so training keeps the temporal LoRA off it."""
    mask_methods: list[str] = field(default_factory=list)
    """How each mask was made ('user mask', 'alpha', the segmenter's label, 'grabcut', ...)."""
    source: Path | None = None
    """The media file the clip came from."""
    token: str | None = None
    """The cast token of the character the clip shows (`masks` are its masks); None: the adapter's
    (lead) token, as for every clip of a one-character adapter."""
    others: dict[str, np.ndarray] = field(default_factory=dict)
    """(t, H, W) bool masks of further cast characters the clip shows, by token (a two-character
    sample: its prompt names every token, each localized on its own mask)."""

    def __post_init__(self) -> None:
        if not self.source_indices:
            self.source_indices = list(range(len(self.frames)))


def target_stride(fps: float | None, frames: int, seconds: float = CLIP_SECONDS) -> int:
    """The stride at which `frames` frames of a `fps` video last about `seconds` (1 when fps is unknown)."""
    if not fps:
        return 1
    return max(1, round(fps * seconds / frames))


def plan_windows(count: int, frames: int, target: int, max_windows: int) -> tuple[int, list[list[int]]]:
    """(stride, source indices per window) for a video of `count` frames.

    The stride is the largest one <= `target` at which `frames` frames fit; windows do not overlap
    and each sits in the middle of an equal share of the video. Shorter than `frames`: one window
    at stride 1 whose last frame is held.
    """
    if count < frames:
        return 1, [[min(i, count - 1) for i in range(frames)]]
    stride = max(1, min(target, (count - 1) // max(1, frames - 1)))
    span = (frames - 1) * stride + 1
    windows = max(1, min(max_windows, count // span))
    share = count / windows  # >= span, so every window fits inside its share
    starts = [int(j * share + (share - span) / 2) for j in range(windows)]
    return stride, [[start + stride * i for i in range(frames)] for start in starts]


def fit_long_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """`image` (H, W[, C]) shrunk (area filter) so its longer side is at most `max_side`."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def subject_masks(frames: list[np.ndarray], file: Path, alpha: np.ndarray | None = None,
                  segment: Segmenter | None = None) -> list[tuple[np.ndarray, str]]:
    """One (mask, method) per frame of `file`.

    Masks the user made win over guesses: a NAME_mask.png beside the file, then a photo's alpha
    channel (`alpha`, at the frames' size), then `segment`, then GrabCut (`segment_subject`).
    """
    if (user := sibling_mask(file)) is not None:
        return [(read_mask(user, frames[0].shape[:2]), "user mask")] * len(frames)  # one file's frames share a size
    if alpha is not None:
        mask = alpha > 127
        check_mask(mask, f"The alpha channel of {file.name}")
        return [(mask, "alpha")] * len(frames)
    if segment is None:
        return [segment_subject(f) for f in frames]
    results = segment(frames)
    if len(results) != len(frames):
        raise InputError(f"The segmenter gave {len(results)} masks for {len(frames)} frames of {file.name}.")
    out = []
    for frame, (mask, how) in zip(frames, results):
        if mask.shape != frame.shape[:2]:
            mask = cv2.resize(mask.astype(np.uint8), frame.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        out.append((mask.astype(bool), how))
    return out


def _stacked(masks: list[tuple[np.ndarray, str]]) -> dict[str, Any]:
    """`subject_masks`' answer as Clip fields."""
    return {"masks": np.stack([m for m, _ in masks]), "mask_methods": [how for _, how in masks]}


def photo_clip(file: Path, segment: Segmenter | None = None, max_side: int = MAX_SIDE) -> Clip:
    """A photo as a one-frame still clip."""
    rgb, alpha = read_image(file)
    rgb = fit_long_side(rgb, max_side)
    if alpha is not None:
        alpha = cv2.resize(alpha, rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
    return Clip(rgb[None], still=True, source=file, **_stacked(subject_masks([rgb], file, alpha, segment)))


def video_clips(file: Path, frames: int = 16, segment: Segmenter | None = None, max_clips: int = 4,
                max_side: int = MAX_SIDE, seconds: float = CLIP_SECONDS) -> list[Clip]:
    """Up to `max_clips` windows of `frames` consecutive frames of a video at one stride (see `plan_windows`)."""
    count, fps = probe_video(file)
    if count == 0:
        raise InputError(f"Video {file.name} holds no frames; record a few seconds of the subject.")
    stride, windows = plan_windows(count, frames, target_stride(fps, frames, seconds), max_clips)
    # Decoded at full size and then shrunk here: libswscale's shrink (decode_video's max_side) shifts
    # grey levels a little, and the clips are training data.
    decoded = {i: fit_long_side(rgb, max_side)
               for i, rgb in decode_video(file, {i for w in windows for i in w}, min_side=MIN_SIDE).items()}
    clip_fps = fps / stride if fps else None
    clips = []
    for window in windows:
        if not all(i in decoded for i in window):
            continue  # the file ended (damaged) inside this window
        video = [decoded[i] for i in window]
        clips.append(Clip(np.stack(video), fps=clip_fps, stride=stride, source_indices=list(window), source=file,
                          **_stacked(subject_masks(video, file, segment=segment))))
    if not clips:
        raise InputError(f"Video {file.name} broke off before {frames} frames could be read; is the file complete?")
    return clips


def load_subject_clips(files: list[Path], frames: int = 16, segment: Segmenter | None = None,
                       max_clips_per_video: int = 4, max_side: int = MAX_SIDE, seconds: float = CLIP_SECONDS) -> list[Clip]:
    """The training clips of a subject's media files (e.g. `storyagent.media.media_files(folder)`).

    Per video: up to `max_clips_per_video` non-overlapping windows of `frames` consecutive frames at
    the largest stride <= the one that makes a window last `seconds` (a short video gets a smaller
    stride, down to 1, and below `frames` frames holds its last frame; never wraps). Per photo: one
    still clip of one frame. Frames are shrunk so their longer side is at most `max_side`.

    Masks: a NAME_mask.png beside the file or a photo's alpha channel when there is one, else
    `segment(frames)` when given, else the media module's GrabCut cut-out.
    """
    clips: list[Clip] = []
    for file in map(Path, files):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            clips.extend(video_clips(file, frames, segment, max_clips_per_video, max_side, seconds))
        else:
            clips.append(photo_clip(file, segment, max_side))
    if not clips:
        raise InputError("No reference media given; pass photos or short videos of the subject.")
    return clips


def cast_clips(clips_by_token: dict[str, list[Clip]]) -> list[Clip]:
    """One training list for a cast adapter: each character's clips (e.g. `load_subject_clips` of
    its own media) labelled with its token, interleaved (A, B, A, B, ..., then the longer list's
    rest) so every stretch of training sees every character."""
    labelled = [[replace(c, token=token) for c in clips] for token, clips in clips_by_token.items()]
    for token, clips in zip(clips_by_token, labelled):
        if not clips:
            raise InputError(f"No reference clips for {token}; every character of the cast needs its own media.")
    out: list[Clip] = []
    for row in itertools.zip_longest(*labelled):
        out.extend(c for c in row if c is not None)
    return out

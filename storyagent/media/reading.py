"""Reading the user's media: photos and clips as 8-bit RGB frames, mask images, and the subject's
reference media with a subject mask per frame.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from storyagent.errors import InputError
from storyagent.media.segmentation import check_mask, segment_subject

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MIN_SIDE = 32
WORK_SIDE = 512  # reference frames are downscaled so their longer side is at most this


@dataclass
class ReferenceMedia:
    """Frames sampled from the user's reference media and the subject mask of each."""

    frames: list[np.ndarray]
    masks: list[np.ndarray]
    fps: float = 8.0
    sources: list[Path] = field(default_factory=list)
    mask_methods: list[str] = field(default_factory=list)
    """How each mask was made: 'alpha', 'user mask', 'grabcut', 'grabcut (rectangle)' or 'centre guess'."""


def media_files(path: str | Path) -> list[Path]:
    """The media files at `path`: the file itself, or the photos and videos in a folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"Subject path {path} does not exist; pass a photo, a short video, or a folder of them.")
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES and not _is_mask_file(p)
        )
        if not files:
            raise InputError(f"Folder {path} holds no photos or videos ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}).")
        return files
    if path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        raise InputError(f"{path.name} is not a photo or video this tool reads; use png/jpg/webp or mp4/mov/webm/gif.")
    return [path]


def _is_mask_file(path: Path) -> bool:
    return path.stem.lower().endswith(("_mask", ".mask", "-mask"))


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image as 8-bit RGB plus its alpha channel (None when it has none).

    Grayscale, palette and 16-bit images are converted; tiny or unreadable ones are refused.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgb, alpha = _to_rgb8(img)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot read image {path.name}: {_first_line(exc)}. Is it a valid png/jpg/webp file?") from exc
    _check_size(rgb, path)
    return rgb, alpha


def _to_rgb8(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.max() > 0 else 1.0
        gray = np.clip(arr / (65535.0 if top > 255 else 255.0) * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        gray = ((arr - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    has_alpha = img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3]
        # An alpha channel that is fully opaque carries no subject information.
        return np.ascontiguousarray(rgba[..., :3]), (alpha if alpha.min() < 250 else None)
    return np.asarray(img.convert("RGB")).copy(), None


def _check_size(frame: np.ndarray, path: Path, min_side: int = MIN_SIDE) -> None:
    h, w = frame.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"{path.name} is {w}×{h} pixels; the subject needs at least {min_side}×{min_side}.")


def read_video(path: str | Path, max_frames: int = 16, min_side: int = 1) -> tuple[list[np.ndarray], float]:
    """Decode a video with PyAV and sample up to `max_frames` frames evenly over its length.

    Frames smaller than `min_side` are refused (reference media must show the subject usably).
    """
    import av

    path = Path(path)
    frames: list[np.ndarray] = []
    fps = 8.0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream.")
            stream = container.streams.video[0]
            if stream.average_rate:
                fps = float(stream.average_rate)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= 600:  # a "short clip": do not decode a feature film into memory
                    break
    except InputError:
        raise
    except Exception as exc:
        if not frames:
            raise InputError(f"Cannot read video {path.name}: {_first_line(exc)}. Is the file complete?") from exc
        # A truncated file still gives the frames decoded before the damage.
    if not frames:
        raise InputError(f"Video {path.name} holds no frames; record a few seconds of the subject.")
    _check_size(frames[0], path, min_side)
    picks = np.linspace(0, len(frames) - 1, num=min(max_frames, len(frames))).round().astype(int)
    return [frames[i] for i in picks], fps


def read_frames(path: str | Path, max_frames: int = 16) -> list[np.ndarray]:
    """Frames of an image (one) or a video (up to `max_frames`, evenly spaced)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path, max_frames)[0]
    return [read_image(path)[0]]


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A user-given mask image (white = subject), resized to `shape` (H, W) and checked."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode in {"RGBA", "LA"}:
                arr = np.asarray(img.getchannel("A"))
            else:
                arr, _ = _to_rgb8(img)
                arr = arr.max(axis=2)
    except Exception as exc:
        raise InputError(f"Cannot read mask {path.name}: {_first_line(exc)}.") from exc
    if arr.shape != shape:
        arr = cv2.resize(arr, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    mask = arr > 127
    check_mask(mask, f"Mask {path.name}")
    return mask


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_reference(path: str | Path, max_frames: int = 16, mask: str | Path | None = None) -> ReferenceMedia:
    """Read the subject's reference media and cut the subject out of every sampled frame.

    Mask source, in order: a user-given mask (`mask`, or a file `NAME_mask.png` beside a photo),
    the image's alpha channel, then GrabCut. A mask that covers nothing or everything is refused.
    """
    files = media_files(path)
    per_file = max(1, math.ceil(max_frames / len(files)))
    ref = ReferenceMedia(frames=[], masks=[])
    for file in files:
        fps = None
        if file.suffix.lower() in VIDEO_SUFFIXES:
            frames, fps = read_video(file, per_file, min_side=MIN_SIDE)
            alphas: list[np.ndarray | None] = [None] * len(frames)
        else:
            rgb, alpha = read_image(file)
            frames, alphas = [rgb], [alpha]
        user_mask = Path(mask) if mask is not None else _sibling_mask(file)
        for frame, alpha in zip(frames, alphas):
            if user_mask is not None:
                m, how = read_mask(user_mask, frame.shape[:2]), "user mask"
            elif alpha is not None:
                m, how = alpha > 127, "alpha"
                check_mask(m, f"The alpha channel of {file.name}")
            else:
                m, how = segment_subject(frame)
            frame, m = _downscale(frame, m)
            ref.frames.append(frame)
            ref.masks.append(m)
            ref.mask_methods.append(how)
            ref.sources.append(file)
        if fps:
            ref.fps = fps
        if len(ref.frames) >= max_frames:
            break
    return ref


def _sibling_mask(file: Path) -> Path | None:
    for suffix in ("_mask.png", "-mask.png", ".mask.png"):
        candidate = file.with_name(file.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def _downscale(frame: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = frame.shape[:2]
    scale = WORK_SIDE / max(h, w)
    if scale >= 1:
        return frame, mask
    size = (round(w * scale), round(h * scale))
    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return frame, mask

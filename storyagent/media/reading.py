"""Reading the user's media: photos and clips as 8-bit RGB frames, and mask images (`reference`
turns them into the subject's reference media).

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).

Memory is bounded whatever the file: a video is streamed (only the frames kept are converted to
arrays, each at once at the size asked for), a photo over `MAX_PIXELS` is decoded at a reduced
size, and special files (FIFOs, devices, sockets) are refused before they are opened.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np
from PIL import Image, ImageOps

from storyagent.errors import InputError
from storyagent.media.segmentation import check_mask

if TYPE_CHECKING:
    import av

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MIN_SIDE = 32
WORK_SIDE = 512  # reference frames are downscaled so their longer side is at most this
MAX_PIXELS = 40_000_000
"""Photos over this many pixels are downscaled on read and video frames over it refused: nothing
downstream uses more than a few megapixels, and one such picture already holds 120 MB (8K video
frames are 33 megapixels). Pillow's own decompression-bomb limit (179 megapixels by default) is
where photos are refused outright."""
MAX_SCANNED_FRAMES = 600
"""Clips are sampled from at most their first 600 frames (20 s at 30 fps), or `max_frames` when
that is more: decoding is sequential, so this bounds the time a long or crafted video takes."""

T = TypeVar("T")


def media_files(path: str | Path) -> list[Path]:
    """The media files at `path`: the file itself, or the photos and videos in a folder."""
    path = Path(path).expanduser()
    hint = "pass a photo, a short video, or a folder of them"
    if not stat.S_ISDIR(_stat(path, "Subject path", hint).st_mode):
        if path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
            raise InputError(f"{path.name} is not a photo or video this tool reads; use png/jpg/webp or mp4/mov/webm/gif.")
        return [regular_file(path, "Subject path", hint)]
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise InputError(f"Folder {path} cannot be listed ({exc.strerror}); check its permissions.") from exc
    files = [regular_file(p, "File", "remove it from the subject folder or replace it with a photo or video")
             for p in entries if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES and not _is_mask_file(p)]
    if not files:
        raise InputError(f"Folder {path} holds no photos or videos ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}).")
    return files


def regular_file(path: Path, what: str, hint: str) -> Path:
    """`path` when it is a regular file (or a link to one); otherwise one sentence, `what` naming
    the file's role and `hint` saying what to do.

    Opening a FIFO blocks until someone writes to it, and a device can stream forever, so anything
    but a regular file is refused before it is opened.
    """
    mode = _stat(path, what, hint).st_mode
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder where a file is expected; {hint}.")
    kind = ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")
    raise InputError(f"{what} {path} is a {kind}, not a regular file; {hint}.")


def _stat(path: Path, what: str, hint: str) -> os.stat_result:
    """`os.stat` of `path`, following links, with every failure as one sentence."""
    try:
        return path.stat()
    except FileNotFoundError as exc:
        problem = "is a symbolic link to a missing file" if path.is_symlink() else "does not exist"
        raise InputError(f"{what} {path} {problem}; {hint}.") from exc
    except OSError as exc:
        problem = ("is a symbolic link that loops back on itself" if exc.errno == errno.ELOOP
                   else f"cannot be read ({exc.strerror})")
        raise InputError(f"{what} {path} {problem}; {hint}.") from exc


def _is_mask_file(path: Path) -> bool:
    return path.stem.lower().endswith(("_mask", ".mask", "-mask"))


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image upright (EXIF orientation applied) as 8-bit RGB plus its alpha channel (None
    when it has none), downscaled to at most `max_pixels`.

    Grayscale, palette and 16-bit images are converted; tiny or unreadable ones are refused.
    """
    path = Path(path)
    rgb, alpha = _read_picture(path, "Image", "pass a png/jpg/webp photo", _to_rgb8, max_pixels)
    check_size(rgb, path)
    return rgb, alpha


def _read_picture(path: Path, what: str, hint: str, convert: Callable[[Image.Image], T], max_pixels: int) -> T:
    """`convert` of the image at `path`, loaded upright and at most `max_pixels`; any failure is one sentence."""
    regular_file(path, what, hint)
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels; sizes are handled here, so the user never sees it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    # A JPEG then decodes straight at 1/2, 1/4 or 1/8 scale, to between a quarter of
                    # `max_pixels` and `max_pixels`, so the full-size picture is never held.
                    width, height = _fit_pixels(img.width, img.height, max_pixels)
                    img.draft(None, (width // 2, height // 2))
                img.load()
                if img.width * img.height > max_pixels:
                    img.thumbnail(_fit_pixels(img.width, img.height, max_pixels))
                ImageOps.exif_transpose(img, in_place=True)
                return convert(img)
    except Image.DecompressionBombError as exc:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000
        raise InputError(f"{what} {path.name} has over {limit} megapixels, too many to decode safely; scale it "
                         f"below {max_pixels // 1_000_000} megapixels.") from exc
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot read {what.lower()} {path.name}: {_first_line(exc)}; {hint}.") from exc


def _fit_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) scaled by one factor so that their product is at most `max_pixels`."""
    scale = min(1.0, math.sqrt(max_pixels / max(1, width * height)))
    return max(1, int(width * scale)), max(1, int(height * scale))


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


def check_size(frame: np.ndarray, path: Path, min_side: int = MIN_SIDE) -> None:
    _check_dims(frame.shape[1], frame.shape[0], path, min_side)


def _check_dims(width: int, height: int, path: Path, min_side: int) -> None:
    if min(width, height) < min_side:
        raise InputError(f"{path.name} is {width}×{height} pixels; the subject needs at least {min_side}×{min_side}.")


def read_video(path: str | Path, max_frames: int = 16, min_side: int = 1,
               max_side: int | None = None) -> tuple[list[np.ndarray], float]:
    """Up to `max_frames` frames spread evenly over a video, and its frame rate (8 when unknown).

    Frames are picked from the first `MAX_SCANNED_FRAMES` (or `max_frames`, when more) and streamed
    (`decode_video`), each shrunk at once to a longer side of at most `max_side` (None: full size),
    so memory holds the kept frames and not the clip. Frames smaller than `min_side` are refused.
    """
    path = Path(path)
    count, fps = probe_video(path, limit=max(MAX_SCANNED_FRAMES, max_frames))
    picks = np.linspace(0, count - 1, num=min(max_frames, count)).round().astype(int)
    frames = decode_video(path, set(picks.tolist()), max_side, min_side)
    if not frames:
        raise InputError(f"Video {path.name} holds no frames; record a few seconds of the subject.")
    return [frames[i] for i in sorted(frames)], fps or 8.0


def probe_video(path: str | Path, limit: int | None = None) -> tuple[int, float | None]:
    """(frame count, frames per second or None) of a video, without decoding it.

    Packets are counted rather than the header believed: GIF and WebM often leave the stream's frame
    count at 0, and a crafted header can claim anything. Counting stops at `limit`.
    """
    path = Path(path)
    count = 0
    with _video_stream(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        try:
            for packet in container.demux(stream):
                count += bool(packet.size)  # the demuxer ends with an empty flush packet
                if limit is not None and count >= limit:
                    break
        except Exception as exc:
            if not count:
                raise _unreadable_video(path, exc) from exc
            # A damaged tail still leaves the frames before it.
    return count, float(rate) if rate else None


def decode_video(path: str | Path, wanted: Collection[int], max_side: int | None = None,
                 min_side: int = 1) -> dict[int, np.ndarray]:
    """The frames at indices `wanted` (0 = first decoded), streamed: every frame up to the last
    wanted one is decoded, as inter-coded video needs, but only the wanted ones become arrays,
    each shrunk at once so its longer side is at most `max_side` (None: full size).

    A file damaged part-way gives the wanted frames before the damage; frames smaller than
    `min_side` or over `MAX_PIXELS` are refused.
    """
    path = Path(path)
    wanted = set(wanted)
    last = max(wanted, default=0)
    kept: dict[int, np.ndarray] = {}
    with _video_stream(path) as (container, stream):
        codec = stream.codec_context
        if codec.width * codec.height > MAX_PIXELS:
            raise InputError(f"Video {path.name} has {codec.width}×{codec.height} frames, over "
                             f"{MAX_PIXELS // 1_000_000} megapixels; scale it down to 4K or less.")
        # The decoder itself refuses larger frames, should a stream change size part-way.
        codec.options = {"max_pixels": str(MAX_PIXELS)}
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i == 0:
                    _check_dims(frame.width, frame.height, path, min_side)
                if i in wanted:
                    kept[i] = _frame_to_rgb(frame, max_side)
                if i >= last:
                    break
        except InputError:
            raise
        except Exception as exc:
            if not kept:
                raise _unreadable_video(path, exc) from exc
            # A damaged tail still leaves the frames decoded before it.
    return kept


def _frame_to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """A decoded frame as an upright RGB array; libswscale shrinks it straight from the decoder's
    YUV, so the full-size RGB picture is never made."""
    width, height = (frame.width, frame.height) if max_side is None else fit_side(frame.width, frame.height, max_side)
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    # Phones store portrait video sideways plus a display matrix, as they do photos plus EXIF orientation.
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


@contextmanager
def _video_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """The open container of a video and its first video stream; failures to open are one sentence."""
    import av

    regular_file(path, "Video", "pass an mp4/mov/webm/gif clip")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise _unreadable_video(path, exc) from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path.name} has no video stream; pass an mp4/mov/webm/gif clip.")
        yield container, container.streams.video[0]


def _unreadable_video(path: Path, exc: Exception) -> InputError:
    return InputError(f"Cannot read video {path.name}: {_first_line(exc)}; is the file complete?")


def read_frames(path: str | Path, max_frames: int = 16) -> list[np.ndarray]:
    """Frames of an image (one) or a video (up to `max_frames`, evenly spaced)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path, max_frames)[0]
    return [read_image(path)[0]]


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A user-given mask image (white = subject), upright, resized to `shape` (H, W) and checked."""
    path = Path(path)
    arr = _read_picture(path, "Mask", "pass a mask image (white = subject)", _mask_values, MAX_PIXELS)
    if arr.shape != shape:
        arr = cv2.resize(arr, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    mask = arr > 127
    check_mask(mask, f"Mask {path.name}")
    return mask


def _mask_values(img: Image.Image) -> np.ndarray:
    """The mask's 0-255 values: its alpha channel when it has one, else its brightest channel."""
    if img.mode in {"RGBA", "LA"}:
        return np.asarray(img.getchannel("A"))
    return _to_rgb8(img)[0].max(axis=2)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fit_side(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) scaled by one factor so that the longer is at most `side`."""
    scale = side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))

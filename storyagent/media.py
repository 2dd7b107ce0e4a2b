"""Reference media in, video out: reading photos and clips, cutting the subject out, writing mp4.

Frames are H×W×3 uint8 RGB numpy arrays; masks are H×W bool arrays (True = subject).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storyagent.errors import InputError
from storyagent.fileio import atomic_path

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MIN_SIDE = 32
# A mask covering less than this fraction of the frame is "nothing", more than 1 - it "everything".
MIN_MASK_FRACTION = 0.002
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


# ---- reading -------------------------------------------------------------------------------


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


def check_mask(mask: np.ndarray, what: str) -> None:
    frac = float(mask.mean())
    if frac < MIN_MASK_FRACTION:
        raise InputError(f"{what} covers nothing; the subject must be white on black.")
    if frac > 1 - MIN_MASK_FRACTION:
        raise InputError(f"{what} covers the whole image; the subject must be white on a black background.")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---- subject cut-out -----------------------------------------------------------------------


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
    scale = min(1.0, 256 / max(h, w))  # GrabCut is O(pixels); 256 px is plenty for a mask
    small = cv2.resize(frame, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]

    def full_size(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)

    fg = _largest_component(_grabcut_from_border(small, iterations))
    if 0.02 < fg.mean() < 0.85:
        return full_size(fg), "grabcut"
    fg = _largest_component(_grabcut_from_rect(small, iterations))
    if 0.05 < fg.mean() < 0.95:
        return full_size(fg), "grabcut (rectangle)"
    yy, xx = np.mgrid[0:sh, 0:sw]
    ellipse = ((xx - sw / 2) / (0.3 * sw)) ** 2 + ((yy - sh * 0.55) / (0.4 * sh)) ** 2 <= 1
    return full_size(ellipse), "centre guess"


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
        _run_grabcut(small, gc, None, iterations, cv2.GC_INIT_WITH_MASK)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _grabcut_from_rect(small: np.ndarray, iterations: int) -> np.ndarray:
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * 0.06)), max(1, round(sh * 0.06))
    gc = np.zeros((sh, sw), np.uint8)
    _run_grabcut(small, gc, (mx, my, sw - 2 * mx, sh - my), iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _run_grabcut(img: np.ndarray, gc: np.ndarray, rect, iterations: int, mode: int) -> None:
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, gc, rect, bgd, fgd, iterations, mode)
    except cv2.error:
        pass  # GrabCut refuses degenerate colour models; the initial labels then stand


def _largest_component(mask: np.ndarray, keep_fraction: float = 0.1) -> np.ndarray:
    """The main blob: components at least `keep_fraction` of the largest, joined and hole-filled."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= keep_fraction * areas.max())
    comp = np.isin(labels, keep).astype(np.uint8)
    k = max(3, round(min(mask.shape) * 0.03)) | 1
    comp = cv2.morphologyEx(comp, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # Fill holes: flood the background from a padded border; whatever it cannot reach is inside.
    padded = np.pad(comp, 1)
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


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


def subject_cutout(frame: np.ndarray, mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """The subject cropped to its box as RGBA (alpha from the mask, edges softened)."""
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - margin), min(mask.shape[0], ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(mask.shape[1], xs.max() + 1 + margin)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)[y0:y1, x0:x1]
    rgba = np.dstack([frame[y0:y1, x0:x1], (alpha * 255).astype(np.uint8)])
    return rgba


# ---- writing -------------------------------------------------------------------------------


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, crf: int = 20) -> None:
    """Write frames as an H.264 mp4 (yuv420p, so every player opens it), atomically."""
    import av

    if not frames:
        raise ValueError("write_video needs at least one frame")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {w}×{h}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in frames:
                packet = stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
                container.mux(packet)
            container.mux(stream.encode())


def write_png(path: str | Path, image: np.ndarray | Image.Image) -> None:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when installed (wide Unicode coverage), else Pillow's bundled font."""
    for candidate in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> list[str]:
    """Greedy word wrap; words longer than a line (e.g. CJK text without spaces) are split."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if draw.textlength(line + ch, font=font) > max_width and line:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    return lines


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 4,
                  thumb_width: int = 256, title: str | None = None) -> Image.Image:
    """A storyboard page: thumbnails in a grid, each with a numbered caption below."""
    columns = max(1, min(columns, len(images)))
    h0, w0 = images[0].shape[:2]
    tw, th = thumb_width, round(thumb_width * h0 / w0)
    font, title_font = load_font(13), load_font(20)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [wrap_text(measure, c, font, tw - 8)[:4] for c in captions]
    cap_h = 8 + 16 * max((len(w) for w in wrapped), default=1)
    pad, top = 12, (40 if title else 0)
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (pad + columns * (tw + pad), top + pad + rows * (th + cap_h + pad)), (245, 244, 240))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 10), title, fill=(20, 20, 20), font=title_font)
    for i, (img, lines) in enumerate(zip(images, wrapped)):
        r, c = divmod(i, columns)
        x, y = pad + c * (tw + pad), top + pad + r * (th + cap_h + pad)
        sheet.paste(Image.fromarray(img).resize((tw, th), Image.LANCZOS), (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 2, y + th + 4 + 16 * j), line, fill=(30, 30, 30), font=font)
    return sheet

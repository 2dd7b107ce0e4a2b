"""Text and page layout: fonts, word wrap, the storyboard's contact sheet, and a frame letterboxed into
a picture of another shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


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


def letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` (H×W×3 uint8) in a width × height picture: resized to fit inside with its aspect kept
    and centred, black bars where it does not reach. Never squashed, never cropped: a model that
    animates at its own aspect (DynamiCrafter's 320x512) keeps every pixel of its picture in a film of
    another shape."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    scale = min(height / h, width / w)
    fh, fw = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    shrink = fh < h or fw < w
    resized = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    out = np.zeros((height, width, frame.shape[2]), frame.dtype)
    top, left = (height - fh) // 2, (width - fw) // 2
    out[top : top + fh, left : left + fw] = resized
    return out

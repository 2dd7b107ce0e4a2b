"""Draws Mo, the project's second example character (a small violet owl), as reference media.

Pip (examples/make_pip.py) comes as a transparent PNG; Mo comes the other way a user's character
often does: a photo on a busy background (`examples/mo/mo.jpg`) with its mask beside it
(`examples/mo/mo_mask.png`, white = Mo), so the cut-out comes from the mask. Together they are the
example cast (`examples/cast.toml`). Run: `python examples/make_mo.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

VIOLET = (118, 72, 168, 255)
PLUM = (64, 34, 96, 255)
CREAM = (246, 232, 205, 255)
YELLOW = (250, 204, 40, 255)
BEAK = (240, 140, 30, 255)
INK = (28, 22, 30, 255)


def draw_mo(size: int = 384) -> Image.Image:
    """Mo standing, wings folded, on a transparent canvas `size` pixels square."""
    s = size / 384
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    line = max(1, int(4 * s))

    def box(cx, cy, rx, ry):
        return [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]

    def poly(points):
        return [(x * s, y * s) for x, y in points]

    # ear tufts, behind the head
    for sign in (-1, 1):
        d.polygon(poly([(192 + sign * 40, 90), (192 + sign * 95, 28), (192 + sign * 100, 110)]), fill=VIOLET, outline=PLUM)
    # one round body: an owl's head and body are a single shape
    d.ellipse(box(192, 205, 118, 150), fill=VIOLET, outline=PLUM, width=line)
    # folded wings
    for sign in (-1, 1):
        d.ellipse(box(192 + sign * 100, 235, 38, 95), fill=PLUM)
    # a cream belly with rows of small feather marks
    d.ellipse(box(192, 255, 72, 88), fill=CREAM)
    for row, y in enumerate(range(215, 320, 26)):
        for x in range(150 + 13 * (row % 2), 240, 26):
            d.arc(box(x, y, 9, 7), 20, 160, fill=PLUM, width=max(1, int(3 * s)))
    # big yellow eyes in cream discs: what makes Mo Mo in every shot
    for x in (150, 234):
        d.ellipse(box(x, 140, 44, 44), fill=CREAM, outline=PLUM, width=line)
        d.ellipse(box(x, 140, 30, 30), fill=YELLOW)
        d.ellipse(box(x, 142, 14, 16), fill=INK)
        d.ellipse(box(x + 6, 134, 5, 5), fill=(255, 255, 255, 255))
    d.polygon(poly([(176, 170), (208, 170), (192, 204)]), fill=BEAK, outline=PLUM)
    # feet
    for x in (160, 224):
        for dx in (-14, 0, 14):
            d.ellipse(box(x + dx, 352, 8, 14), fill=BEAK)
    return img


def backdrop(width: int, height: int, seed: int = 7) -> Image.Image:
    """A leafy, uneven backdrop: the kind of background a classical cut-out gets wrong, hence the mask."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = np.array([150, 190, 160]) * (1 - y) + np.array([90, 130, 80]) * y
    img = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8)).convert("RGBA")
    d = ImageDraw.Draw(img)
    for _ in range(70):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 40)
        green = tuple(int(v) for v in rng.integers([40, 90, 30], [110, 170, 90])) + (255,)
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=green)
    return img.filter(ImageFilter.GaussianBlur(2))


def main(out: Path = Path(__file__).parent / "mo") -> None:
    out.mkdir(parents=True, exist_ok=True)
    width, height, size = 448, 416, 384
    photo = backdrop(width, height)
    mo = draw_mo(size)
    at = ((width - size) // 2, height - size - 8)
    photo.alpha_composite(mo, at)
    photo.convert("RGB").save(out / "mo.jpg", quality=88)
    mask = Image.new("L", (width, height), 0)
    mask.paste(mo.getchannel("A").point(lambda a: 255 if a > 127 else 0), at)
    mask.save(out / "mo_mask.png", optimize=True)
    print(f"wrote {out / 'mo.jpg'} and {out / 'mo_mask.png'}")


if __name__ == "__main__":
    main()

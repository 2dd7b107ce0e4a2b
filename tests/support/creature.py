"""Second characters for cast tests: Bo, a round blue-violet creature (two antennae, big eyes, stubby
feet) drawn on a transparent canvas - nothing like Pip the orange fox in colour or in shape; and the
crew tests' Mo, a plain blue owl-ish blob."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

BODY = (92, 84, 210, 255)
BELLY = (150, 170, 240, 255)
DARK = (40, 30, 110, 255)
WHITE = (250, 250, 250, 255)
INK = (20, 18, 30, 255)


def draw_creature(size: int = 256) -> Image.Image:
    """Bo standing, `size` pixels square, RGBA (alpha = Bo)."""
    s = size / 256
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    for x in (96, 160):  # antennae, each with a ball
        d.line(box(x, 70, x + (x - 128) * 0.5, 24), fill=DARK, width=max(2, int(6 * s)))
        cx = x + (x - 128) * 0.5
        d.ellipse(box(cx - 12, 12, cx + 12, 36), fill=BELLY, outline=DARK, width=max(1, int(3 * s)))
    for x in (80, 150):  # feet
        d.ellipse(box(x, 214, x + 34, 244), fill=DARK)
    d.ellipse(box(52, 60, 204, 232), fill=BODY, outline=DARK, width=max(1, int(4 * s)))
    d.ellipse(box(88, 140, 168, 220), fill=BELLY)
    for x in (92, 138):  # eyes
        d.ellipse(box(x, 92, x + 30, 126), fill=WHITE, outline=DARK, width=max(1, int(2 * s)))
        d.ellipse(box(x + 10, 104, x + 22, 118), fill=INK)
    d.arc(box(108, 126, 148, 146), 20, 160, fill=INK, width=max(1, int(3 * s)))
    return img


def write_creature_png(path: Path, size: int = 256) -> Path:
    """Bo as a transparent PNG at `path` (the way a user gives a cut-out character)."""
    draw_creature(size).save(path)
    return path


def write_owl_blob_png(path: Path) -> Path:
    """Mo as the crew's cast tests draw him: a blue owl-ish blob (body and head), 96 x 128, on a transparent
    ground, saved as a PNG at `path`."""
    picture = Image.new("RGBA", (96, 128), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((12, 30, 84, 124), fill=(40, 70, 200, 255))
    draw.ellipse((22, 4, 74, 56), fill=(60, 90, 220, 255))
    picture.save(path)
    return path

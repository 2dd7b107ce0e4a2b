"""Draws Pip, the project's own example character (a small orange fox), as reference media.

Writes `examples/pip/pip.png` (transparent background, so the cut-out comes from alpha) and
`examples/pip/pip_wave.mp4` (a 2 s clip of Pip waving its tail and blinking on a plain wall,
so the cut-out comes from the classical segmentation). Run: `python examples/make_pip.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ORANGE = (236, 120, 40, 255)
DARK = (120, 55, 20, 255)
CREAM = (255, 240, 215, 255)
INK = (30, 24, 20, 255)


def draw_pip(size: int = 512, t: float = 0.0, blink: bool = False) -> Image.Image:
    """Pip at phase `t` (0..1 of a wave cycle) on a transparent canvas."""
    s = size / 512
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    bob = 6 * math.sin(2 * math.pi * t) * s

    def box(cx, cy, rx, ry):
        return [(cx - rx) * s, (cy - ry) * s + bob, (cx + rx) * s, (cy + ry) * s + bob]

    # tail: a fat ellipse swung around the hip
    swing = math.radians(25 * math.sin(2 * math.pi * t))
    tail = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    td = ImageDraw.Draw(tail)
    td.ellipse(box(370, 360, 95, 45), fill=ORANGE, outline=DARK, width=max(1, int(4 * s)))
    td.ellipse(box(440, 355, 30, 28), fill=CREAM)
    img.alpha_composite(tail.rotate(math.degrees(swing), center=(300 * s, 380 * s + bob)))
    d = ImageDraw.Draw(img)
    # body and legs
    d.ellipse(box(256, 370, 100, 90), fill=ORANGE, outline=DARK, width=max(1, int(4 * s)))
    d.ellipse(box(256, 390, 55, 60), fill=CREAM)
    for x in (200, 312):
        d.ellipse(box(x, 455, 32, 22), fill=DARK)
    # ears (behind the head outline, drawn first)
    for sign in (-1, 1):
        ear = [(256 + sign * 40, 150), (256 + sign * 120, 40), (256 + sign * 130, 170)]
        d.polygon([(x * s, y * s + bob) for x, y in ear], fill=ORANGE, outline=DARK)
        inner = [(256 + sign * 62, 145), (256 + sign * 115, 75), (256 + sign * 118, 158)]
        d.polygon([(x * s, y * s + bob) for x, y in inner], fill=DARK)
    # head with cream cheeks
    d.ellipse(box(256, 215, 125, 105), fill=ORANGE, outline=DARK, width=max(1, int(4 * s)))
    d.ellipse(box(200, 255, 60, 45), fill=CREAM)
    d.ellipse(box(312, 255, 60, 45), fill=CREAM)
    # eyes, nose, mouth
    for x in (205, 307):
        if blink:
            d.line([((x - 16) * s, 205 * s + bob), ((x + 16) * s, 205 * s + bob)], fill=INK, width=max(1, int(5 * s)))
        else:
            d.ellipse(box(x, 205, 15, 19), fill=INK)
            d.ellipse(box(x + 5, 198, 5, 6), fill=(255, 255, 255, 255))
    d.ellipse(box(256, 252, 16, 11), fill=INK)
    d.arc(box(240, 268, 16, 12), 20, 160, fill=INK, width=max(1, int(3 * s)))
    d.arc(box(272, 268, 16, 12), 20, 160, fill=INK, width=max(1, int(3 * s)))
    # a blue scarf makes Pip easy to recognise in every shot
    d.rounded_rectangle(box(256, 305, 95, 18), radius=int(12 * s), fill=(40, 90, 200, 255))
    d.polygon([(x * s, y * s + bob) for x, y in [(290, 315), (330, 380), (300, 385), (275, 318)]],
              fill=(40, 90, 200, 255))
    return img


def main(out: Path = Path(__file__).parent / "pip") -> None:
    import av

    out.mkdir(parents=True, exist_ok=True)
    draw_pip(512).save(out / "pip.png")
    wall = Image.new("RGBA", (640, 480), (214, 226, 235, 255))
    with av.open(str(out / "pip_wave.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(16):
            frame = wall.copy()
            frame.alpha_composite(draw_pip(400, t=i / 16, blink=i in (5, 6)), (120 + 4 * i, 60))
            vf = av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24")
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    print(f"wrote {out / 'pip.png'} and {out / 'pip_wave.mp4'}")


if __name__ == "__main__":
    main()

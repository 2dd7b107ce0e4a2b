"""Writing media atomically: H.264 mp4 clips and PNG images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from storyagent.fileio import atomic_path


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

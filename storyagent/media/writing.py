"""Writing media atomically: H.264 mp4 clips, clips joined without re-encoding, and PNG images."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from storyagent.fileio import atomic_path

if TYPE_CHECKING:
    import av

CRF = 20
PRESET = "superfast"
"""x264's speed preset. At the same CRF the picture is as good as "veryfast" (34.8 dB against the
rendered RGB frames for an animatic, where chroma subsampling sets the ceiling) in half the time;
the files are about twice as big (a few hundred kB per animatic film)."""
PNG_COMPRESSION = 1
"""zlib level of the PNGs: the pixels are the same at every level; level 1 writes a storyboard
picture four times faster than Pillow's default 6, for files about 15% bigger."""


class CannotJoin(Exception):
    """A clip was not encoded the way `join_videos` encodes its frames, so its packets cannot follow them."""


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, crf: int = CRF,
                preset: str = PRESET) -> None:
    """Write frames as an H.264 mp4 (yuv420p, so every player opens it), atomically."""
    _check_frames(frames)
    with atomic_path(path) as tmp:
        _encode(str(tmp), frames, fps, crf, preset)


def join_videos(path: str | Path, frames: Sequence[np.ndarray], clips: Sequence[str | Path], fps: float,
                crf: int = CRF, preset: str = PRESET) -> int:
    """Write `frames` (encoded as `write_video` encodes them) followed by every clip in order, the clips'
    H.264 packets copied as they are (no decoding, no second generation of encoder loss), atomically.

    Returns the number of frames written. Raises `CannotJoin`, and writes nothing, when a clip is not
    what `write_video(clip, ..., fps, crf, preset)` makes at the frames' size (another codec, size,
    frame rate or encoder settings); the caller then decodes and re-encodes.
    """
    import av

    _check_frames(frames)
    head = BytesIO()
    _encode(head, frames, fps, crf, preset)
    head.seek(0)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream: av.VideoStream | None = None
            start = Fraction(0)  # where the next part begins, in seconds
            last_dts: Fraction | None = None
            total = 0
            for part in [head, *map(str, clips)]:
                with av.open(part) as src:
                    if not src.streams.video:
                        raise CannotJoin(f"{part} has no video stream")
                    video = src.streams.video[0]
                    if stream is None:
                        stream, encoding = out.add_stream_from_template(video), _encoding(video)
                        if encoding[0] != "h264" or not encoding[-1]:
                            raise CannotJoin("the frames were not encoded as H.264 with global parameter sets")
                    elif _encoding(video) != encoding:
                        raise CannotJoin(f"{part} is not encoded as the frames before it")
                    count = 0
                    for packet in src.demux(video):
                        if not packet.size or packet.pts is None or packet.dts is None:
                            continue  # the demuxer's final flush packet
                        shift = round(start / packet.time_base)
                        packet.pts += shift
                        packet.dts += shift
                        dts = packet.dts * packet.time_base
                        if last_dts is not None and dts <= last_dts:
                            raise CannotJoin(f"{part} would decode before the frames it follows")
                        last_dts = dts
                        packet.stream = stream
                        out.mux(packet)
                        count += 1
                    start += count / Fraction(video.average_rate)
                    total += count
    return total


def _encoding(video: av.VideoStream) -> tuple[object, ...]:
    """What must be the same for one stream's packets to follow another's in one track: codec, size,
    pixel format, frame rate and parameter sets (the avcC record holds the SPS and PPS, which carry
    x264's settings)."""
    codec = video.codec_context
    return codec.name, codec.width, codec.height, codec.pix_fmt, video.average_rate, bytes(codec.extradata or b"")


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if not frames:
        raise ValueError("write_video needs at least one frame")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {w}×{h}")


def _encode(target: str | BytesIO, frames: Sequence[np.ndarray], fps: float, crf: int, preset: str) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(target, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            packet = stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            container.mux(packet)
        container.mux(stream.encode())


def write_png(path: str | Path, image: np.ndarray | Image.Image) -> None:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=PNG_COMPRESSION)

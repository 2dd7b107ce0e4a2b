"""Writing media atomically: H.264 mp4 clips, clips joined without re-encoding, and PNG images.

A film may carry a soundtrack (`Audio`): it is encoded as AAC (48 kHz stereo) beside the H.264 stream
in the same pass, its packets interleaved with the pictures' by time."""

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

    from storyagent.media.audio import Audio

CRF = 20
PRESET = "superfast"
"""x264's speed preset. At the same CRF the picture is as good as "veryfast" (34.8 dB against the
rendered RGB frames for an animatic, where chroma subsampling sets the ceiling) in half the time;
the files are about twice as big (a few hundred kB per animatic film)."""
AUDIO_RATE = 48_000
AUDIO_BITRATE = 192_000
"""AAC at 192 kb/s stereo: transparent for speech and a score (the audio is a few percent of an animatic film)."""
AUDIO_CHUNK = 1024
"""Samples per AAC frame."""
PNG_COMPRESSION = 1
"""zlib level of the PNGs: the pixels are the same at every level; level 1 writes a storyboard
picture four times faster than Pillow's default 6, for files about 15% bigger."""


class CannotJoin(Exception):
    """A clip was not encoded the way `join_videos` encodes its frames, so its packets cannot follow them."""


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, crf: int = CRF,
                preset: str = PRESET, audio: Audio | None = None) -> None:
    """Write frames as an H.264 mp4 (yuv420p, so every player opens it), atomically; with `audio`, an AAC
    stream beside it (see `AudioTrack`)."""
    _check_frames(frames)
    with atomic_path(path) as tmp:
        _encode(str(tmp), frames, fps, crf, preset, audio)


def join_videos(path: str | Path, frames: Sequence[np.ndarray], clips: Sequence[str | Path | Sequence[np.ndarray]],
                fps: float, crf: int = CRF, preset: str = PRESET, audio: Audio | None = None) -> int:
    """Write `frames` (encoded as `write_video` encodes them) followed by every clip in order, the clips'
    H.264 packets copied as they are (no decoding, no second generation of encoder loss), atomically.

    A clip may also be a list of frames (a shot's last picture held while its line ends): those are
    encoded as `frames` are and joined the same way. With `audio`, an AAC stream goes beside the pictures.

    Returns the number of frames written. Raises `CannotJoin`, and writes nothing, when a clip is not
    what `write_video(clip, ..., fps, crf, preset)` makes at the frames' size (another codec, size,
    frame rate or encoder settings); the caller then decodes and re-encodes.
    """
    import av

    _check_frames(frames)
    parts: list[str | BytesIO] = []
    for part in [frames, *clips]:
        if isinstance(part, (str, Path)):
            parts.append(str(part))
        else:
            _check_frames(part)
            parts.append(BytesIO())
            _encode(parts[-1], part, fps, crf, preset)
            parts[-1].seek(0)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream: av.VideoStream | None = None
            sound = AudioTrack(out, audio) if audio is not None else None
            start = Fraction(0)  # where the next part begins, in seconds
            last_dts: Fraction | None = None
            total = 0
            for part in parts:
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
                        if sound is not None:
                            sound.write_until(dts)
                        packet.stream = stream
                        out.mux(packet)
                        count += 1
                    start += count / Fraction(video.average_rate)
                    total += count
            if sound is not None:
                sound.finish()
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


def _encode(target: str | BytesIO, frames: Sequence[np.ndarray], fps: float, crf: int, preset: str,
            audio: Audio | None = None) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(target, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        sound = AudioTrack(container, audio) if audio is not None else None
        for i, frame in enumerate(frames):
            if sound is not None:
                sound.write_until(Fraction(i) / round(fps))
            packet = stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            container.mux(packet)
        container.mux(stream.encode())
        if sound is not None:
            sound.finish()


class AudioTrack:
    """An AAC stream (48 kHz stereo) in a container being written, fed as the pictures advance.

    The sound is converted once (resampled to 48 kHz, made stereo) and encoded a frame at a time as the
    pictures' timestamps pass, so the muxer interleaves the two streams without holding either whole.
    """

    def __init__(self, container: av.container.OutputContainer, audio: Audio) -> None:
        self.container = container
        self.samples = np.ascontiguousarray(audio.resampled(AUDIO_RATE).as_stereo().samples.T)  # (2, n)
        self.stream = container.add_stream("aac", rate=AUDIO_RATE)
        self.stream.layout = "stereo"
        self.stream.bit_rate = AUDIO_BITRATE
        # FFmpeg's "fast" AAC coder: a quarter of the default two-loop search's time, and at 192 kb/s its error
        # on a narrated mix measured lower (-38 dB against -28 dB of the signal).
        self.stream.codec_context.options = {"aac_coder": "fast"}
        self.done = 0  # samples encoded so far

    def write_until(self, seconds: float | Fraction) -> None:
        """Encode the sound up to `seconds` (and a frame beyond, so the sound never trails the pictures)."""
        self._encode(min(self.samples.shape[1], round(seconds * AUDIO_RATE) + AUDIO_CHUNK))

    def finish(self) -> None:
        self._encode(self.samples.shape[1])
        self.container.mux(self.stream.encode(None))

    def _encode(self, upto: int) -> None:
        import av

        while self.done < upto:
            chunk = self.samples[:, self.done:self.done + AUDIO_CHUNK]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = self.done
            frame.time_base = Fraction(1, AUDIO_RATE)
            self.container.mux(self.stream.encode(frame))
            self.done += chunk.shape[1]


def write_png(path: str | Path, image: np.ndarray | Image.Image) -> None:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=PNG_COMPRESSION)

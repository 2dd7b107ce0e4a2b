"""Sound as numbers: `Audio` (float samples and their rate), any audio file read with PyAV, WAV written
atomically.

Samples are float32 in [-1, 1], shape (n,) for mono or (n, 2) for stereo. Reading is bounded
(`MAX_AUDIO_SECONDS`): a film's music or a voice's line is minutes at most, and a crafted file must not
fill memory.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyagent.errors import InputError
from storyagent.fileio import atomic_path

MAX_AUDIO_SECONDS = 3600.0
"""The longest audio `read_audio` decodes; a track longer than this is cut there."""


@dataclass
class Audio:
    """A piece of sound: `samples` float32 in [-1, 1], (n,) mono or (n, 2) stereo, at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] not in (1, 2)):
            raise ValueError(f"audio samples must be (n,) or (n, 2), got shape {samples.shape}")
        if samples.ndim == 2 and samples.shape[1] == 1:
            samples = samples[:, 0]
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")
        self.samples = samples
        self.sample_rate = int(self.sample_rate)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else self.samples.shape[1]

    def resampled(self, sample_rate: int) -> Audio:
        """This sound at `sample_rate` (polyphase filtering, scipy's `resample_poly`)."""
        if sample_rate == self.sample_rate:
            return self
        from scipy.signal import resample_poly

        g = math.gcd(sample_rate, self.sample_rate)
        out = resample_poly(self.samples, sample_rate // g, self.sample_rate // g, axis=0)
        return Audio(out.astype(np.float32), sample_rate)

    def as_mono(self) -> Audio:
        return self if self.samples.ndim == 1 else Audio(self.samples.mean(axis=1), self.sample_rate)

    def as_stereo(self) -> Audio:
        return self if self.samples.ndim == 2 else Audio(np.stack([self.samples, self.samples], axis=1), self.sample_rate)

    @classmethod
    def silence(cls, seconds: float, sample_rate: int, channels: int = 1) -> Audio:
        n = round(seconds * sample_rate)
        return cls(np.zeros((n,) if channels == 1 else (n, channels), np.float32), sample_rate)


def read_audio(path: str | Path, max_seconds: float = MAX_AUDIO_SECONDS) -> Audio:
    """Any audio file PyAV (FFmpeg) decodes, at its own rate; mono stays mono, anything else becomes stereo.

    Refuses, in one sentence, a missing or special file and a file with no audio stream.
    """
    import av

    from storyagent.media.reading import regular_file

    path = Path(path)
    regular_file(path, "Audio file", "pass a wav, mp3, ogg, flac or m4a file")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"Cannot read audio {path.name}: {_first_line(exc)}; is it a complete audio file?") from exc
    with container:
        if not container.streams.audio:
            raise InputError(f"{path.name} has no audio stream; pass a wav, mp3, ogg, flac or m4a file.")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise InputError(f"{path.name} does not say its sample rate; convert it to wav or flac.")
        mono = stream.codec_context.channels == 1
        # Planar float keeps every decoder's output exact up to float32; the resampler only converts layout.
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else "stereo", rate=rate)
        limit = int(max_seconds * rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    total += chunks[-1].shape[1]
                if total >= limit:
                    break
            else:
                chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except Exception as exc:
            if not chunks:
                raise InputError(f"Cannot decode audio {path.name}: {_first_line(exc)}; is the file complete?") from exc
            # A damaged tail still leaves the sound before it.
    if not chunks:
        raise InputError(f"{path.name} holds no sound.")
    data = np.concatenate(chunks, axis=1)[:, :limit]  # (channels, n)
    samples = data[0] if mono else data.T
    return Audio(np.clip(samples, -1.0, 1.0), rate)


def write_wav(path: str | Path, audio: Audio) -> None:
    """16-bit PCM WAV, atomically. The same samples always give the same bytes (the stems are compared byte
    for byte, and a resumed run reuses them by their content hash)."""
    pcm = np.round(np.clip(audio.samples, -1.0, 1.0) * 32767).astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(audio.channels)
            out.setsampwidth(2)
            out.setframerate(audio.sample_rate)
            out.writeframes(pcm.tobytes())


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

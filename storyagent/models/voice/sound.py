"""What every engine does to its output: WAV bytes read back, the style's pitch and energy applied where
the engine has no control for them, silence for an empty line."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np

from storyagent.errors import InputError
from storyagent.media.audio import Audio

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def decode_wav(data: bytes) -> Audio:
    """A WAV file's bytes as mono `Audio`. Streamed WAVs (espeak-ng's --stdout, most speech servers) carry
    placeholder sizes in their headers, so the data chunk is read to the end of the bytes rather than
    trusted; `wave` would take those sizes at their word. Raises ValueError when the bytes are not WAV."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[body:body + 16])
            if fmt[0] == _EXTENSIBLE and size >= 26:
                # WAVE_FORMAT_EXTENSIBLE: the real format tag opens the SubFormat GUID, 24 bytes in.
                fmt = (struct.unpack("<H", data[body + 24:body + 26])[0], *fmt[1:])
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("WAV data before its format")
            end = min(len(data), body + size)
            return _samples(data[body:end], fmt)
        pos = body + size + (size & 1)
    raise ValueError("WAV without a data chunk")


def _samples(raw: bytes, fmt: tuple[int, ...]) -> Audio:
    tag, channels, rate, _, _, bits = fmt
    width = bits // 8
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if tag == _FLOAT and bits in (32, 64):
        samples = np.frombuffer(raw, dtype=f"<f{width}").astype(np.float32)
    elif tag == _PCM and bits == 16:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 32:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif tag == _PCM and bits == 8:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        samples = (np.where(ints >= 1 << 23, ints - (1 << 24), ints) / float(1 << 23)).astype(np.float32)
    else:
        raise ValueError(f"WAV sample format {tag}/{bits} bits is not supported")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)  # (n * channels,) -> (n,)
    return Audio(np.clip(samples, -1.0, 1.0), rate)


def decode_audio(data: bytes, suffix: str = ".bin") -> Audio:
    """Audio bytes of any format as mono `Audio`: WAV read here, anything else (mp3, ogg, flac ...) through
    PyAV. Raises ValueError when the bytes hold no audio."""
    try:
        return decode_wav(data)
    except ValueError:
        if data[:4] == b"RIFF":
            raise
    from storyagent.media.audio import read_audio

    with tempfile.TemporaryDirectory(prefix="storyagent-voice-") as tmp:
        path = Path(tmp) / f"speech{suffix}"
        path.write_bytes(data)
        try:
            return read_audio(path).as_mono()
        except InputError as exc:
            raise ValueError(str(exc)) from exc


def with_energy(audio: Audio, energy: float) -> Audio:
    """Louder or softer by `energy`, for engines with no such control; clipped to [-1, 1]."""
    if energy == 1.0:
        return audio
    return Audio(np.clip(audio.samples * np.float32(energy), -1.0, 1.0), audio.sample_rate)


def pitch_factor(semitones: float) -> float:
    """The frequency ratio of a pitch shift."""
    return float(2.0 ** (semitones / 12.0))


def raised_by_resampling(audio: Audio, factor: float) -> Audio:
    """Pitch (and formants) times `factor` by playing the samples `factor` times faster: the engine was
    asked to speak `factor` times slower first, so the line keeps the length the style asked for. Engines
    with a speed control but no pitch control (Piper, Kokoro, speech servers) use this."""
    if abs(factor - 1.0) < 1e-6:
        return audio
    out = Audio(audio.samples, max(1, round(audio.sample_rate * factor))).resampled(audio.sample_rate)
    return Audio(np.clip(out.samples, -1.0, 1.0), out.sample_rate)  # the filter may ring past full scale


def silence(sample_rate: int) -> Audio:
    """What an empty line sounds like: nothing (no samples)."""
    return Audio(np.zeros(0, np.float32), sample_rate)

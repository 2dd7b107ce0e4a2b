"""The user's own track as the score: looped (with a crossfade where it joins itself) or trimmed to
the film's length, faded in and out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyagent.errors import InputError
from storyagent.media.audio import Audio, read_audio
from storyagent.models.music.config import TrackConfig
from storyagent.models.music.fluidsynth import shape_ends


def loop_to_length(samples: np.ndarray, n: int, crossfade: int) -> np.ndarray:
    """`samples` repeated until `n` frames, each repeat overlapping the end of the one before by
    `crossfade` frames (equal-power, so the join neither dips nor swells), then cut to `n`."""
    length = len(samples)
    if length >= n:
        return samples[:n]
    c = max(0, min(crossfade, length // 4))
    if c == 0:
        reps = -(-n // length)
        return np.concatenate([samples] * reps)[:n]
    t = np.linspace(0.0, np.pi / 2, c, dtype=np.float64)
    fade_out, fade_in = np.cos(t).astype(np.float32), np.sin(t).astype(np.float32)
    if samples.ndim == 2:
        fade_out, fade_in = fade_out[:, None], fade_in[:, None]
    join = samples[-c:] * fade_out + samples[:c] * fade_in
    body = samples[c:-c]
    pieces, total = [samples[:-c]], length - c
    while total < n:
        pieces += [join, body]
        total += c + len(body)
    pieces.append(samples[-c:])
    return np.concatenate(pieces)[:n]


def fit_track(audio: Audio, duration: float, sample_rate: int = 48000, config: TrackConfig | None = None) -> Audio:
    """`audio` as a stereo score of exactly `duration` seconds at `sample_rate`."""
    config = config or TrackConfig()
    audio = audio.as_stereo().resampled(sample_rate)
    n = round(duration * sample_rate)
    if len(audio.samples) < 2:
        raise InputError("The music track is too short to loop; pass a track of a second or more.")
    samples = loop_to_length(audio.samples, n, round(config.crossfade * sample_rate))
    samples = shape_ends(samples, sample_rate, config.fade_in, config.fade_out)
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top > config.peak:
        samples = samples * (config.peak / top)
    return Audio(samples.astype(np.float32), sample_rate)


def load_track(path: str | Path, duration: float, sample_rate: int = 48000, config: TrackConfig | None = None) -> Audio:
    """The user's track at `path` (any format PyAV decodes) fitted to the film; a missing or unreadable
    file is an InputError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Music file {path} does not exist; pass an audio file, --music auto or --music none.")
    return fit_track(read_audio(path), duration, sample_rate, config)

"""The film's mix: narration lines over a score that ducks under them, at broadcast loudness.

- Loudness is ITU-R BS.1770 integrated loudness (LUFS), measured by pyloudnorm; true peak (dBTP) is
  the peak of the signal oversampled 4× (BS.1770-4 Annex 2; scipy's polyphase filter).
- Ducking: the score plays at a bed level under the voice (`MUSIC_BED_LU` under the lines' loudness) and
  drops, over each spoken line, far enough that its level there is at least `DUCK_MARGIN_DB` under the
  line's (both as RMS over the line: plain RMS counts a score's bass fully, which K-weighting would
  discount, so it is the stricter measure for the score). The gain moves in `ATTACK` before the line
  and comes back over `RELEASE` after it, so the score is fully down while a word is spoken.
- Master: one gain to `TARGET_LUFS`, and a look-ahead true-peak limiter to `PEAK_CEILING_DBTP`; the two
  are iterated, since limiting lowers the loudness a little.

`mix` returns the mixed sound and its parts as mixed (each track with its own gain applied, before the
master gain that both share), so a test measures the ducking from what was actually mixed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storyagent.media.audio import Audio

SAMPLE_RATE = 48_000
"""The film's audio rate (AAC 48 kHz)."""
TARGET_LUFS = -16.0
"""Integrated loudness of the mix (EBU R128's figure for online and mobile listening)."""
PEAK_CEILING_DBTP = -2.0
"""Where the limiter holds the true peak: 1 dB under the -1 dBTP the film must keep, which leaves room
for the AAC encoder's own overshoot (0.1 to 0.4 dB measured on narrated films)."""
VOICE_LUFS = -20.0
"""Each narration line is brought to this loudness before the mix, so every line sounds as loud."""
MUSIC_BED_LU = 8.0
"""How far under the lines' loudness the score plays between them."""
DUCK_DB = 10.0
"""How far the score drops from its bed while a line is spoken (more where the margin asks for it)."""
DUCK_MARGIN_DB = 12.0
"""The least distance between a line's RMS and the ducked score's RMS over the line (the film promises 10)."""
ATTACK = 0.1
"""Seconds the score takes to duck, ending as the line starts."""
RELEASE = 0.3
"""Seconds the score takes to come back after a line."""
LIMITER_LOOKAHEAD = 0.005
"""Seconds over which the limiter's gain moves to meet a peak (and to leave it)."""
LIMITER_HOLD = 0.03
"""Seconds the limiter's gain stays down after a peak."""
OVERSAMPLE = 4
LOUDNESS_TOLERANCE = 0.05
"""How close to the target the master's loudness search stops (LU)."""


def loudness(audio: Audio) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, gated); -inf for silence. Sound shorter than one
    400 ms gating block is measured as if looped to one block."""
    import pyloudnorm

    samples = audio.samples.astype(np.float64)
    block = math.ceil(0.4 * audio.sample_rate)
    if len(samples) == 0 or not np.any(samples):
        return -math.inf
    if len(samples) < block:
        samples = np.resize(samples, (block, *samples.shape[1:]))
    value = pyloudnorm.Meter(audio.sample_rate).integrated_loudness(samples)
    return float(value)


def true_peak(audio: Audio) -> float:
    """True peak in dBTP: the largest magnitude of the signal oversampled 4× (BS.1770-4 Annex 2); -inf for silence."""
    peak = float(_oversampled_peaks(_2d(audio.samples)).max(initial=0.0))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def rms_db(samples: np.ndarray) -> float:
    """RMS level in dBFS over all channels; -inf for silence."""
    if samples.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _2d(samples: np.ndarray) -> np.ndarray:
    return samples[:, None] if samples.ndim == 1 else samples


def _oversampled_peaks(x: np.ndarray) -> np.ndarray:
    """Per input sample, the largest magnitude (over channels) of the 4× oversampled signal between it and
    the next sample. x: (n, channels) -> (n,)."""
    from scipy.signal import resample_poly

    n = len(x)
    if n == 0:
        return np.zeros(0, np.float32)
    up = np.abs(resample_poly(x.astype(np.float32), OVERSAMPLE, 1, axis=0))  # (4n, channels)
    # Element-wise maxima: numpy reduces a short axis far more slowly than it compares two arrays.
    peak = functools.reduce(np.maximum, (up[:, c] for c in range(up.shape[1])))
    phases = peak.reshape(n, OVERSAMPLE)
    return functools.reduce(np.maximum, (phases[:, k] for k in range(OVERSAMPLE)))


def _limiter_gain(peaks: np.ndarray, sample_rate: int, aim: float) -> np.ndarray:
    """The limiter's gain per sample for these true peaks: each peak's gain reached `LIMITER_LOOKAHEAD`
    before it, held `LIMITER_HOLD` after (so speech is not fluttered by every cycle of a vowel), then let
    go. A minimum filter over that reach followed by a moving average over the look-ahead, so at every
    sample the gain is an average of values each at most what that sample needs."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    need = np.minimum(1.0, aim / np.maximum(peaks, 1e-12))
    ahead, hold = max(1, round(LIMITER_LOOKAHEAD * sample_rate)), round(LIMITER_HOLD * sample_rate)
    size = ahead + max(hold, ahead) + 1
    held = minimum_filter1d(need, size, mode="nearest", origin=size // 2 - ahead)  # min over [i-hold, i+ahead]
    return uniform_filter1d(held, 2 * ahead + 1, mode="nearest")


def _aim(ceiling_db: float) -> float:
    # A hair under the ceiling, so float rounding cannot leave a peak over it.
    return 10 ** ((ceiling_db - 0.01) / 20)


def limit(samples: np.ndarray, sample_rate: int, ceiling_db: float = PEAK_CEILING_DBTP) -> np.ndarray:
    """`samples` with their true peak held under `ceiling_db` by a look-ahead limiter (`_limiter_gain`)."""
    x = _2d(samples).astype(np.float32)
    ceiling = 10 ** (ceiling_db / 20)
    for _ in range(3):  # the gain's own movement can lift a peak between samples a little: check again
        peaks = _oversampled_peaks(x)
        if peaks.max(initial=0.0) <= ceiling:
            break
        x = x * _limiter_gain(peaks, sample_rate, _aim(ceiling_db))[:, None]
    else:
        peak = _oversampled_peaks(x).max(initial=0.0)
        if peak > ceiling:  # what is left after the passes, taken off the whole
            x = x * (_aim(ceiling_db) / peak)
    return x[:, 0] if samples.ndim == 1 else x


def master(samples: np.ndarray, sample_rate: int, target_lufs: float = TARGET_LUFS,
           ceiling_db: float = PEAK_CEILING_DBTP) -> tuple[np.ndarray, float]:
    """`samples` brought to `target_lufs` with the true peak at most `ceiling_db`; returns them and the gain
    in dB applied before the limiter. Silence is returned as it is.

    Limiting takes some loudness off, more the harder it works, so the gain is found by the secant method
    on (gain -> loudness after limiting): two or three tries. The true peaks scale with the gain, so they
    are found once; only the result is checked again (`limit`)."""
    x = _2d(samples).astype(np.float32)
    level = loudness(Audio(x, sample_rate))
    if not math.isfinite(level):
        return samples.astype(np.float32), 0.0
    peaks = _oversampled_peaks(x)
    tries: list[tuple[float, float]] = []  # (gain dB, loudness after limiting)
    gain_db = target_lufs - level
    for _ in range(6):
        gain = 10 ** (gain_db / 20)
        out = x * (gain * _limiter_gain(gain * peaks, sample_rate, _aim(ceiling_db)))[:, None]
        tries.append((gain_db, loudness(Audio(out, sample_rate))))
        if abs(target_lufs - tries[-1][1]) < LOUDNESS_TOLERANCE:
            break
        slope = 1.0
        if len(tries) > 1 and tries[-1][0] != tries[-2][0]:
            slope = (tries[-1][1] - tries[-2][1]) / (tries[-1][0] - tries[-2][0])
        # The loudness never grows faster than the gain, nor stops growing with it.
        gain_db += (target_lufs - tries[-1][1]) / min(1.0, max(0.2, slope))
    out = limit(out, sample_rate, ceiling_db)
    return (out[:, 0] if samples.ndim == 1 else out), gain_db


@dataclass
class Line:
    """One spoken line placed in the film: its sound, where it starts (seconds), and how much louder than
    the others it is meant to be (a reviewer's "louder": every line is first brought to `VOICE_LUFS`)."""

    audio: Audio
    start: float
    gain_db: float = 0.0

    @property
    def end(self) -> float:
        return self.start + self.audio.duration


@dataclass
class Mix:
    """The mixed film sound and its parts as mixed, all stereo at `SAMPLE_RATE`.

    `audio` = limit(master_gain · (voice + music)): `voice` is the lines placed and levelled, `music` the
    score at its bed level times the ducking envelope (`duck`, linear gain per sample)."""

    audio: Audio
    voice: np.ndarray | None
    music: np.ndarray | None
    duck: np.ndarray | None
    master_gain_db: float
    line_spans: list[tuple[int, int]]
    """Each line's first and past-last sample in the film."""

    def levels(self) -> list[tuple[float, float]]:
        """(voice RMS dB, ducked music RMS dB) over each line, as mixed (before the shared master gain)."""
        out = []
        for a, b in self.line_spans:
            voice = rms_db(self.voice[a:b]) if self.voice is not None else -math.inf
            music = rms_db(self.music[a:b]) if self.music is not None else -math.inf
            out.append((voice, music))
        return out


def trim_silence(audio: Audio, below_db: float = -40.0, keep: float = 0.03) -> Audio:
    """`audio` without the silence a speech engine pads it with at either end: everything quieter than
    `below_db` under its peak, but `keep` seconds of it either side (so no breath or consonant is cut)."""
    mono = np.abs(audio.as_mono().samples)
    peak = float(mono.max(initial=0.0))
    if peak == 0:
        return audio
    loud = np.flatnonzero(mono > peak * 10 ** (below_db / 20))
    margin = round(keep * audio.sample_rate)
    a, b = max(0, loud[0] - margin), min(len(mono), loud[-1] + 1 + margin)
    return Audio(audio.samples[a:b], audio.sample_rate)


def level_line(audio: Audio, lufs: float = VOICE_LUFS) -> Audio:
    """A line at `lufs` integrated loudness (silence as it is)."""
    level = loudness(audio)
    if not math.isfinite(level):
        return audio
    return Audio(audio.samples * 10 ** ((lufs - level) / 20), audio.sample_rate)


def duck_envelope(num_samples: int, sample_rate: int, spans: Sequence[tuple[int, int]],
                  depths_db: Sequence[float]) -> np.ndarray:
    """Linear gain per sample: 1, falling to -depth dB over `ATTACK` before each span, held through it, and
    rising back over `RELEASE` after it (in dB, so the change sounds even); overlapping ramps take the lower."""
    env_db = np.zeros(num_samples)
    attack, release = round(ATTACK * sample_rate), round(RELEASE * sample_rate)
    for (a, b), depth in zip(spans, depths_db, strict=True):
        lo, hi = max(0, a - attack), min(num_samples, b + release)
        t = np.arange(lo, hi)
        shape = np.ones(len(t))
        down = t < a
        shape[down] = (t[down] - (a - attack)) / max(1, attack)
        up = t >= b
        shape[up] = 1 - (t[up] - b) / max(1, release)
        env_db[lo:hi] = np.minimum(env_db[lo:hi], -depth * np.clip(shape, 0, 1))
    return (10 ** (env_db / 20)).astype(np.float32)


def _fit(samples: np.ndarray, n: int) -> np.ndarray:
    """Stereo `samples` cut or padded with silence to `n` samples."""
    out = np.zeros((n, 2), np.float32)
    m = min(n, len(samples))
    out[:m] = samples[:m]
    return out


def mix(duration: float, lines: Sequence[Line], music: Audio | None, *, target_lufs: float = TARGET_LUFS,
        ceiling_db: float = PEAK_CEILING_DBTP) -> Mix | None:
    """The film's sound, `duration` seconds long: `lines` over `music` with ducking, mastered (see the
    module docstring). None when there is neither voice nor music."""
    if not lines and music is None:
        return None
    n = round(duration * SAMPLE_RATE)
    voice: np.ndarray | None = None
    spans: list[tuple[int, int]] = []
    if lines:
        voice = np.zeros((n, 2), np.float32)
        for line in lines:
            placed = level_line(line.audio.as_mono().resampled(SAMPLE_RATE), VOICE_LUFS + line.gain_db)
            a = round(line.start * SAMPLE_RATE)
            b = min(n, a + len(placed.samples))
            if b <= a:
                continue
            voice[a:b] += placed.samples[: b - a, None]
            spans.append((a, b))
    score = duck = None
    if music is not None:
        score = _fit(music.as_stereo().resampled(SAMPLE_RATE).samples, n)
        if voice is not None:
            score_level = loudness(Audio(score, SAMPLE_RATE))
            if math.isfinite(score_level):
                score *= 10 ** ((VOICE_LUFS - MUSIC_BED_LU - score_level) / 20)
            # Each line's drop: the usual depth, or more where the score is loud against a quiet line.
            depths = [max(DUCK_DB, rms_db(score[a:b]) - (rms_db(voice[a:b]) - DUCK_MARGIN_DB)) for a, b in spans]
            duck = duck_envelope(n, SAMPLE_RATE, spans, [d if math.isfinite(d) else DUCK_DB for d in depths])
            score *= duck[:, None]
    total = (voice if voice is not None else 0) + (score if score is not None else 0)
    out, gain_db = master(np.asarray(total, np.float32), SAMPLE_RATE, target_lufs, ceiling_db)
    return Mix(Audio(out, SAMPLE_RATE), voice, score, duck, gain_db, spans)

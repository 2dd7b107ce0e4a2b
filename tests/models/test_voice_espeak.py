"""espeak-ng for real: the offline floor speaks, and the style's rate, pitch and energy reach it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.models.voice import VoiceStyle, load_voice

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")

LINE = "Pip the fox wakes up in the forest and looks at the sky."


@pytest.fixture(scope="module")
def voice():
    return load_voice("espeak")


def frame_rms(samples: np.ndarray, rate: int, seconds: float = 0.02) -> np.ndarray:
    n = int(rate * seconds)
    frames = samples[: len(samples) // n * n].reshape(-1, n)  # (frames, n)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


def median_f0(samples: np.ndarray, rate: int) -> float:
    """The median fundamental of the loud frames, from each frame's autocorrelation peak in 60-500 Hz."""
    n = int(rate * 0.04)
    frames = samples[: len(samples) // n * n].reshape(-1, n).astype(np.float64)  # (frames, n)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    f0s = []
    for frame in frames[rms > 0.3 * rms.max()]:
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lo, hi = rate // 500, rate // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            f0s.append(rate / lag)
    assert len(f0s) >= 5, "too few voiced frames to measure a pitch"
    return float(np.median(f0s))


def test_espeak_speaks_a_line_with_energy_well_above_its_silence(voice):
    audio = voice.speak(LINE)
    assert voice.spec == "espeak"
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32 and audio.sample_rate > 8000
    assert 1.5 < audio.duration < 10
    rms = frame_rms(audio.samples, audio.sample_rate)
    loud = np.sort(rms)[-len(rms) // 4:].mean()
    assert loud > 0.02, "speech is present"
    assert loud > 20 * np.sort(rms)[: max(1, len(rms) // 20)].mean(), "speech stands well above the pauses"
    assert np.abs(audio.samples).max() <= 1.0


def test_a_longer_line_lasts_longer_and_an_empty_one_is_silent(voice):
    short = voice.speak("Pip wakes.")
    long = voice.speak(LINE + " " + LINE)
    assert long.duration > 2 * short.duration
    assert len(voice.speak("   ").samples) == 0


def test_rate_changes_the_length(voice):
    slow = voice.speak(LINE, VoiceStyle(rate=0.7))
    fast = voice.speak(LINE, VoiceStyle(rate=1.3))
    plain = voice.speak(LINE)
    assert slow.duration > plain.duration > fast.duration
    assert slow.duration > 1.4 * fast.duration


def test_pitch_moves_the_fundamental(voice):
    low = median_f0(voice.speak(LINE, VoiceStyle(pitch=-5)).samples, 22050)
    high = median_f0(voice.speak(LINE, VoiceStyle(pitch=5)).samples, 22050)
    assert high > 1.15 * low, (low, high)


def test_energy_changes_the_loudness(voice):
    soft = voice.speak(LINE, VoiceStyle(energy=0.5)).samples
    loud = voice.speak(LINE, VoiceStyle(energy=1.5)).samples
    assert np.sqrt((loud ** 2).mean()) > 1.5 * np.sqrt((soft ** 2).mean())


def test_words_from_a_reviewer_reach_the_voice(voice):
    plain = voice.speak(LINE)
    slower = voice.speak(LINE, VoiceStyle.from_words("say it slower"))
    assert slower.duration > plain.duration


def test_another_espeak_voice_and_a_wrong_one():
    assert load_voice("espeak:en-gb").speak("Hello there.").duration > 0.3
    with pytest.raises(InputError, match="no voice 'xx-nonesuch'.*espeak-ng --voices"):
        load_voice("espeak:xx-nonesuch")

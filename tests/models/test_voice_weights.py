"""The narration voices with their real weights, where `storyagent weights fetch` has put them in the
local cache; skipped, with the command that fetches them, where it has not."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from storyagent.models.voice import VoiceStyle, load_voice
from tests.support.paths import cached_weights

pytestmark = pytest.mark.weights
LINE = "Pip the fox wakes up in the forest and looks at the sky."


def speech_checks(voice, line: str) -> None:
    audio = voice.speak(line)
    # About 2.5 words a second for narration: the line's eleven words in two to eight seconds.
    assert 2.0 < audio.duration < 8.0, audio.duration
    assert np.sqrt((audio.samples ** 2).mean()) > 0.02
    assert voice.speak(line, VoiceStyle(rate=0.7)).duration > 1.2 * voice.speak(line, VoiceStyle(rate=1.3)).duration


def test_piper_lessac_speaks():
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[voice]')")
    cached_weights("piper-en-us-lessac-medium")
    speech_checks(load_voice("piper:en_US-lessac-medium"), LINE)


def test_kokoro_speaks():
    pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[voice]')")
    cached_weights("kokoro-82m")
    if importlib.util.find_spec("en_core_web_sm") is None:
        speech_checks(load_voice("kokoro:ef_dora"), "Pip el zorro se despierta en el bosque y mira el cielo.")
    else:
        speech_checks(load_voice("kokoro:af_heart"), LINE)

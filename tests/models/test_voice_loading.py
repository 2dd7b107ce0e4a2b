"""The `voice` setting: specs read and refused in one sentence, "auto" and "none", the best voice this
machine has, and what doctor is told. No network; PATH and the caches are changed, not our code."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from storyagent.errors import InputError
from storyagent.models.voice import (
    best_voice_spec,
    load_voice,
    parse_voice_spec,
    read_voice_spec,
    voice_status,
)
from tests.support.paths import ROOT


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """No voice weights: an empty Hugging Face cache, no STORYAGENT_WEIGHTS_* for a voice."""
    from huggingface_hub import constants

    from storyagent.weights import WEIGHTS, env_var

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for name in WEIGHTS:
        monkeypatch.delenv(env_var(name), raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.mark.parametrize("spec, normal", [
    ("espeak", "espeak"), ("espeak:en-us", "espeak"), (" ESPEAK:en-gb ", "espeak:en-gb"), ("espeak:en+f3", "espeak:en+f3"),
    ("piper", "piper:en_US-lessac-medium"), ("piper:de_DE-thorsten-medium", "piper:de_DE-thorsten-medium"),
    ("piper:/voices/my-voice.onnx", "piper:/voices/my-voice.onnx"),
    ("kokoro", "kokoro:af_heart"), ("kokoro:bm_george", "kokoro:bm_george"),
    ("openai", "openai:alloy"), ("openai:nova", "openai:nova"), ("openai:tts-1-hd/nova", "openai:tts-1-hd/nova"),
    ("openai-compatible:af_heart@http://127.0.0.1:8880/", "openai-compatible:af_heart@http://127.0.0.1:8880"),
    ("openai-compatible:kokoro/af_heart@http://127.0.0.1:8880/v1", "openai-compatible:kokoro/af_heart@http://127.0.0.1:8880/v1"),
    ("none", "none"), ("off", "none"), ("auto", "auto"),
])
def test_specs_are_normalised(spec, normal):
    assert parse_voice_spec(spec) == normal
    assert parse_voice_spec(normal) == normal


@pytest.mark.parametrize("spec, words", [
    ("festival", "not understood"), ("", "not understood"), ("espeak:two words", "espeak-ng voice name"),
    ("piper:lessac", "en_US-lessac-medium"), ("kokoro:Heart!", "af_heart"), ("kokoro:xf_fox", "first letter"),
    ("openai-compatible:alloy", "VOICE@URL"), ("openai-compatible:alloy@ftp://x", "VOICE@URL"),
    ("openai:al loy", "letters, digits"), ("none:thing", "not understood"),
])
def test_bad_specs_are_refused_in_one_sentence(spec, words):
    with pytest.raises(InputError, match=words) as info:
        parse_voice_spec(spec)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_credentials_in_a_server_url_stay_out_of_the_voice_spec():
    parsed = read_voice_spec("openai-compatible:af_heart@http://me:secret@127.0.0.1:9/v1")
    assert parsed.url == "http://me:secret@127.0.0.1:9/v1", "the client needs them"
    assert "secret" not in load_voice("openai-compatible:af_heart@http://me:secret@127.0.0.1:9/v1").spec


def test_none_gives_no_voice_and_auto_the_best():
    assert load_voice("none") is None
    best = best_voice_spec()
    voice = load_voice("auto")
    assert (voice is None) == (best == "none")
    if voice is not None:
        assert voice.spec == best


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_with_no_weights_the_best_voice_is_espeak():
    assert best_voice_spec() == "espeak"
    status = {engine: (ok, what) for engine, ok, what in voice_status()}
    assert status["espeak"][0] and "espeak" in status["espeak"][1]
    assert not status["kokoro"][0] and not status["piper"][0]
    assert not status["openai"][0] and "OPENAI_API_KEY" in status["openai"][1]


def test_without_espeak_on_path_the_best_is_none_and_espeak_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert best_voice_spec() == "none"
    assert load_voice("auto") is None
    with pytest.raises(InputError, match="apt-get install espeak-ng"):
        load_voice("espeak")
    status = {engine: (ok, what) for engine, ok, what in voice_status()}
    assert status["espeak"] == (False, status["espeak"][1]) and "apt-get install espeak-ng" in status["espeak"][1]


def test_openai_needs_its_key_named():
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        load_voice("openai:alloy")


def test_weights_are_missing_with_the_fetch_command_named():
    with pytest.raises(InputError, match="storyagent weights fetch piper-en-us-lessac-medium"):
        load_voice("piper:en_US-lessac-medium")
    with pytest.raises(InputError, match="storyagent weights fetch kokoro-82m"):
        load_voice("kokoro:af_heart")


def test_choosing_a_voice_imports_no_torch():
    """The animatic path: reading the setting, choosing the best voice and speaking with espeak-ng (or
    with none) never import torch, piper or kokoro."""
    code = ("import sys; from storyagent.models.voice import best_voice_spec, load_voice, voice_status\n"
            "voice_status(); v = load_voice(best_voice_spec())\n"
            "v is None or v.speak('Hello.')\n"
            "bad = [m for m in ('torch', 'piper', 'kokoro', 'onnxruntime') if m in sys.modules]\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

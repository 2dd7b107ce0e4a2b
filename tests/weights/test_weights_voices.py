"""The narration voices in the weights registry: `storyagent weights fetch` brings a Piper voice and
Kokoro-82M from a local imitation of the Hub on 127.0.0.1 into the Hugging Face cache, only the files
they need, and the voice loaders find them there offline with nothing else to set."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from storyagent.weights import WEIGHTS
from tests.support.fake_hub import FakeHub, empty_caches_at


@pytest.fixture(scope="module")
def hub():
    server = FakeHub()
    yield server
    server.server.shutdown()


@pytest.fixture
def caches(tmp_path, monkeypatch, hub):
    return empty_caches_at(hub, tmp_path, monkeypatch)


def fetch(*names: str):
    import typer

    from storyagent.commands.weights import app as weights_app

    app = typer.Typer()
    app.add_typer(weights_app, name="weights")
    return CliRunner().invoke(app, ["weights", "fetch", *names, "--quiet"])


def test_the_registry_names_the_voices_where_the_loaders_look():
    from storyagent.models.voice.config import (
        DEFAULT_VOICES,
        piper_voice_path,
        piper_weights_name,
    )
    from storyagent.models.voice.kokoro import KOKORO_REPO, WEIGHTS_NAME
    from storyagent.models.voice.loading import piper_voices

    assert WEIGHTS[WEIGHTS_NAME].repo_id == KOKORO_REPO and WEIGHTS[WEIGHTS_NAME].licence == "Apache-2.0"
    voices = piper_voices()
    assert voices[0] == DEFAULT_VOICES["piper"] and len(voices) >= 2
    for voice in voices:
        spec = WEIGHTS[piper_weights_name(voice)]
        assert spec.repo_id == "rhasspy/piper-voices"
        assert spec.files == (piper_voice_path(voice), piper_voice_path(voice) + ".json")


def test_a_fetched_piper_voice_is_chosen_and_speaks_offline(hub, caches, monkeypatch):
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[voice]')")
    pytest.importorskip("onnx", reason="onnx is not installed (it builds the tiny voice)")
    from storyagent.models.voice import best_voice_spec, load_voice
    from storyagent.models.voice.config import piper_voice_path
    from tests.models.test_voice_piper import tiny_piper_model

    model, config = tiny_piper_model()
    path = piper_voice_path("en_US-lessac-medium")
    hub.add("rhasspy/piper-voices", {path: model, path + ".json": json.dumps(config).encode(),
                                     "en/en_US/lessac/medium/MODEL_CARD": b"lessac",
                                     "de/de_DE/thorsten/medium/de_DE-thorsten-medium.onnx": b"another voice"})
    result = fetch("piper-en-us-lessac-medium")
    assert result.exit_code == 0, result.output
    assert set(hub.sent) == {path, path + ".json"}, "only the voice asked for"

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # from here on, as a run is: the cache only
    hub.down = True
    assert best_voice_spec() == "piper:en_US-lessac-medium"
    assert load_voice("auto").speak("Pip wakes up.").duration > 0.2


def test_kokoro_is_fetched_without_the_files_it_does_not_read(hub, caches):
    from storyagent.models.voice.kokoro import find_kokoro_files

    hub.add("hexgrad/Kokoro-82M", {"config.json": b"{}", "kokoro-v1_0.pth": b"model", "voices/af_heart.pt": b"a",
                                   "voices/ef_dora.pt": b"e", "README.md": b"card", "samples/HEARME.wav": b"RIFF",
                                   "eval/ArtificialAnalysis.png": b"png"})
    result = fetch("kokoro-82m")
    assert result.exit_code == 0, result.output
    assert set(hub.sent) == {"config.json", "kokoro-v1_0.pth", "voices/af_heart.pt", "voices/ef_dora.pt"}
    config, model, pack = find_kokoro_files("ef_dora")
    assert (config.name, model.read_bytes(), pack.read_bytes()) == ("config.json", b"model", b"e")

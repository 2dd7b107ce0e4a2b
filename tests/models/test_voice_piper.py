"""Piper through piper-tts's own `PiperVoice` and onnxruntime, on a tiny voice built here: an ONNX graph
with Piper's inputs and output (input, input_lengths, scales -> output) and random weights, plus its
.onnx.json, found through the weights registry and the Hugging Face cache as a fetched voice is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.models.voice import (
    VoiceStyle,
    best_voice_spec,
    load_voice,
    voice_status,
)
from storyagent.weights import WEIGHTS, env_var

pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[voice]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (it builds the tiny voice)")

RATE = 22050
PERIOD = 100
"""Samples in one period of the tiny voice's tone: 220.5 Hz at 22050 Hz."""
PERIODS_PER_ID = 8
LINE = "Pip the fox wakes up in the forest and looks at the sky."


def tiny_piper_model(seed: int = 0) -> tuple[bytes, dict]:
    """(the .onnx bytes, the .onnx.json) of a voice that speaks each phoneme id as PERIODS_PER_ID periods of
    a tone with random harmonics; length_scale repeats periods (the pitch stays), as a VITS decoder does."""
    from onnx import TensorProto, helper, numpy_helper
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    rng = np.random.default_rng(seed)
    symbols = max(i for ids in DEFAULT_PHONEME_ID_MAP.values() for i in ids) + 1
    t = np.arange(PERIOD) / PERIOD
    harmonics = rng.uniform(0.0, 0.3, size=(symbols, 4))  # random weights: each id's timbre
    table = np.sin(2 * np.pi * t)[None] + sum(harmonics[:, k, None] * np.sin(2 * np.pi * (k + 2) * t)[None]
                                             for k in range(4))
    table = np.repeat(table[:, None, :], PERIODS_PER_ID, axis=1).astype(np.float32)  # (symbols, periods, PERIOD)

    def ints(name: str, values: list[int]):
        return numpy_helper.from_array(np.array(values, np.int64), name)

    nodes = [
        helper.make_node("Gather", ["table", "input"], ["frames"], axis=0),  # (1, T, periods, PERIOD)
        helper.make_node("Gather", ["scales", "one"], ["length_scale"], axis=0),  # (1,)
        helper.make_node("Shape", ["frames"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "three"], ["periods"]),
        helper.make_node("Cast", ["periods"], ["periods_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["periods_f", "length_scale"], ["stretched_f"]),
        helper.make_node("Round", ["stretched_f"], ["stretched_r"]),
        helper.make_node("Cast", ["stretched_r"], ["stretched"], to=TensorProto.INT64),
        helper.make_node("Max", ["stretched", "one_count"], ["kept"]),
        helper.make_node("Slice", ["shape", "zero", "two"], ["head"]),
        helper.make_node("Concat", ["head", "kept", "period"], ["sizes"], axis=0),
        helper.make_node("Resize", ["frames", "", "", "sizes"], ["resized"], mode="nearest"),  # (1, T, kept, PERIOD)
        helper.make_node("Reshape", ["resized", "flat"], ["output"]),  # (1, 1, T * kept * PERIOD)
    ]
    graph = helper.make_graph(
        nodes, "tiny_piper",
        [helper.make_tensor_value_info("input", TensorProto.INT64, [1, None]),
         helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, None])],
        [numpy_helper.from_array(table, "table"), ints("one", [1]), ints("zero", [0]), ints("two", [2]),
         ints("three", [3]), ints("one_count", [1]), ints("period", [PERIOD]), ints("flat", [1, 1, -1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    config = {"audio": {"sample_rate": RATE}, "espeak": {"voice": "en-us"}, "phoneme_type": "espeak",
              "num_symbols": symbols, "num_speakers": 1,
              "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
              "phoneme_id_map": DEFAULT_PHONEME_ID_MAP, "piper_version": "1.0.0"}
    return model.SerializeToString(), config


@pytest.fixture(scope="module")
def tiny_voice():
    return tiny_piper_model()


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (its folder returned), no STORYAGENT_WEIGHTS_*."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for name in WEIGHTS:
        monkeypatch.delenv(env_var(name), raising=False)
    return tmp_path / "hf" / "hub"


def put_in_hf_cache(hub, voice: str, model: bytes, config: dict) -> None:
    """`voice` laid out as `storyagent weights fetch` leaves it: refs/main -> snapshots/<commit>/<path>."""
    from storyagent.models.voice.config import piper_voice_path

    repo = hub / "models--rhasspy--piper-voices"
    commit = "c" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / piper_voice_path(voice)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model)
    path.with_name(path.name + ".json").write_text(json.dumps(config))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def test_a_fetched_piper_voice_is_the_best_and_speaks(tiny_voice, hf_cache):
    from storyagent.models.voice.piper import PiperVoice

    put_in_hf_cache(hf_cache, "en_US-lessac-medium", *tiny_voice)
    assert best_voice_spec() == "piper:en_US-lessac-medium"
    status = {engine: (ok, what) for engine, ok, what in voice_status()}
    assert status["piper"] == (True, "--voice piper:en_US-lessac-medium")
    voice = load_voice("auto")
    assert isinstance(voice, PiperVoice) and voice.spec == "piper:en_US-lessac-medium"
    audio = voice.speak(LINE)
    assert audio.sample_rate == RATE and audio.samples.dtype == np.float32
    assert np.sqrt((audio.samples ** 2).mean()) > 0.1
    assert peak_hz(audio.samples, RATE) == pytest.approx(RATE / PERIOD, rel=0.02)
    longer = voice.speak(LINE + " " + LINE)
    assert longer.duration > 1.8 * audio.duration
    assert len(voice.speak("").samples) == 0


def test_style_rate_is_the_length_scale_and_pitch_is_kept_apart(tiny_voice, hf_cache):
    put_in_hf_cache(hf_cache, "en_US-lessac-medium", *tiny_voice)
    voice = load_voice("piper:en_US-lessac-medium")
    plain = voice.speak(LINE)
    slow, fast = voice.speak(LINE, VoiceStyle(rate=0.7)), voice.speak(LINE, VoiceStyle(rate=1.3))
    assert slow.duration > plain.duration > fast.duration
    assert slow.duration == pytest.approx(plain.duration / 0.7, rel=0.1)
    higher = voice.speak(LINE, VoiceStyle(pitch=4.0))
    assert peak_hz(higher.samples, RATE) == pytest.approx(RATE / PERIOD * 2 ** (4 / 12), rel=0.03)
    assert higher.duration == pytest.approx(plain.duration, rel=0.1)
    softer = voice.speak(LINE, VoiceStyle(energy=0.5))
    assert np.abs(softer.samples).max() < 0.7 * np.abs(plain.samples).max()


def test_a_voice_file_the_environment_or_a_path_names(tiny_voice, tmp_path, monkeypatch):
    model, config = tiny_voice
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "en_US-lessac-medium.onnx").write_bytes(model)
    (folder / "en_US-lessac-medium.onnx.json").write_text(json.dumps(config))
    monkeypatch.setenv(env_var("piper-en-us-lessac-medium"), str(folder))
    assert load_voice("piper").speak("Hello there.").duration > 0.2
    monkeypatch.delenv(env_var("piper-en-us-lessac-medium"))
    by_path = load_voice(f"piper:{folder / 'en_US-lessac-medium.onnx'}")
    assert by_path.spec == f"piper:{folder / 'en_US-lessac-medium.onnx'}"
    assert by_path.speak("Hello there.").duration > 0.2


def test_a_voice_the_registry_does_not_name_is_found_in_the_cache(tiny_voice, hf_cache):
    put_in_hf_cache(hf_cache, "de_DE-thorsten-medium", *tiny_voice)
    assert load_voice("piper:de_DE-thorsten-medium").speak("Guten Morgen.").duration > 0.2
    with pytest.raises(InputError, match="fr_FR-siwis-medium is not on this machine; `storyagent weights fetch` knows "
                                         "en_GB-alan-medium"):
        load_voice("piper:fr_FR-siwis-medium")


def test_broken_voices_are_refused_in_one_sentence(tiny_voice, tmp_path):
    model, config = tiny_voice
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(model)
    with pytest.raises(InputError, match="has no lonely.onnx.json beside it"):
        load_voice(f"piper:{lonely}")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    (tmp_path / "broken.onnx.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="Cannot load the Piper voice broken.onnx"):
        load_voice(f"piper:{broken}")
    with pytest.raises(InputError, match="does not exist"):
        load_voice(f"piper:{tmp_path / 'absent.onnx'}")
    (tmp_path / "chinese.onnx").write_bytes(model)
    (tmp_path / "chinese.onnx.json").write_text(json.dumps({**config, "phoneme_type": "pinyin"}))
    with pytest.raises(InputError, match="reads pinyin phonemes"):
        load_voice(f"piper:{tmp_path / 'chinese.onnx'}")


def test_a_missing_registered_voice_names_its_fetch_command():
    with pytest.raises(InputError, match="storyagent weights fetch piper-en-us-amy-medium"):
        load_voice("piper:en_US-amy-medium")

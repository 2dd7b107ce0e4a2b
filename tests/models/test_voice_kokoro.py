"""Kokoro through the `kokoro` package's own `KModel` and `KPipeline`, on a tiny model built here: a
`KModel` from a small config with random weights, saved as the model file, and random voice packs, laid
out in the Hugging Face cache as `storyagent weights fetch kokoro-82m` leaves them.

A Spanish voice runs end to end offline (misaki reads Spanish with the espeak-ng it bundles). English
voices need spaCy's en_core_web_sm, which misaki would download at run time: without it they are refused
in one sentence, and with it they speak."""

from __future__ import annotations

import importlib.util
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

torch = pytest.importorskip("torch")
pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[voice]')")

HAS_ENGLISH_G2P = importlib.util.find_spec("en_core_web_sm") is not None
SPANISH = "Pip despierta en el bosque."
# Kokoro's decoder and prosody predictor have fixed widths (1024 and hidden_dim 512 channels); what can
# be small is the PL-BERT, the number of layers and the generator's resblocks.
TINY_CONFIG = {
    "n_token": 178, "hidden_dim": 512, "style_dim": 128, "n_layer": 1, "max_dur": 8, "dropout": 0.0,
    "text_encoder_kernel_size": 5, "n_mels": 80,
    "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 512,
               "num_hidden_layers": 1, "dropout": 0.0, "embedding_size": 16},
    "istftnet": {"upsample_rates": [10, 6], "upsample_kernel_sizes": [20, 12], "gen_istft_n_fft": 20,
                 "gen_istft_hop_size": 5, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
                 "upsample_initial_channel": 512},
}
PHONEMES = ("abdefhijklmnoprstuvwxyzæçðøŋœɐɑɒɔɕəɚɛɜɟɡɣɥɨɪɫɬɯɲɳɹɾʁʃʊʋʌʎʒʔˈˌːᵊθχβ ,.!?;:—…\"()“”AIWYOQTʤʧ")


@pytest.fixture(scope="module")
def tiny_kokoro(tmp_path_factory):
    """A folder in Kokoro-82M's layout: config.json, kokoro-v1_0.pth (random weights), voices/*.pt."""
    from kokoro import KModel

    folder = tmp_path_factory.mktemp("kokoro")
    config = {**TINY_CONFIG, "vocab": {p: i + 1 for i, p in enumerate(PHONEMES[: TINY_CONFIG["n_token"] - 1])}}
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    torch.manual_seed(0)
    torch.save({}, folder / "empty.pth")  # nothing to load: KModel keeps its random initialisation
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(folder / "empty.pth"))
    (folder / "empty.pth").unlink()
    # The upstream file's layout: one state dict per part; half precision keeps the file at ~120 MB.
    parts = {name: {k: v.half() if v.is_floating_point() else v for k, v in getattr(model, name).state_dict().items()}
             for name in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")}
    torch.save(parts, folder / "kokoro-v1_0.pth")
    (folder / "voices").mkdir()
    for voice in ("ef_dora", "af_heart", "bf_emma"):
        torch.save(torch.randn(510, 1, 256, generator=torch.Generator().manual_seed(len(voice))) * 0.1,
                   folder / "voices" / f"{voice}.pt")
    return folder


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for name in WEIGHTS:
        monkeypatch.delenv(env_var(name), raising=False)
    return tmp_path / "hf" / "hub"


def put_in_hf_cache(hub, folder) -> None:
    """The tiny model as the Hugging Face cache holds a snapshot (files linked, as the cache links blobs)."""
    repo = hub / "models--hexgrad--Kokoro-82M"
    commit = "k" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for source in folder.rglob("*"):
        if source.is_file():
            target = snapshot / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)


def test_a_spanish_voice_speaks_offline_from_the_cache(tiny_kokoro, hf_cache):
    from storyagent.models.voice.kokoro import KokoroVoice

    put_in_hf_cache(hf_cache, tiny_kokoro)
    voice = load_voice("kokoro:ef_dora")
    assert isinstance(voice, KokoroVoice) and voice.spec == "kokoro:ef_dora"
    audio = voice.speak(SPANISH)
    assert audio.sample_rate == 24000 and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.sqrt((audio.samples ** 2).mean()) > 1e-3 and np.abs(audio.samples).max() <= 1.0
    assert voice.speak(SPANISH + " " + SPANISH).duration > 1.5 * audio.duration
    assert len(voice.speak(" ").samples) == 0


def test_style_rate_is_kokoros_speed(tiny_kokoro, hf_cache):
    put_in_hf_cache(hf_cache, tiny_kokoro)
    voice = load_voice("kokoro:ef_dora")
    slow, fast = voice.speak(SPANISH, VoiceStyle(rate=0.7)), voice.speak(SPANISH, VoiceStyle(rate=1.3))
    assert slow.duration > 1.4 * fast.duration
    quiet = voice.speak(SPANISH, VoiceStyle(energy=0.5))
    assert np.abs(quiet.samples).max() < 0.75 * np.abs(voice.speak(SPANISH).samples).max()


def test_the_weights_can_come_from_the_environment(tiny_kokoro, monkeypatch):
    monkeypatch.setenv(env_var("kokoro-82m"), str(tiny_kokoro))
    assert load_voice("kokoro:ef_dora").speak("Hola.").duration > 0


@pytest.mark.skipif(HAS_ENGLISH_G2P, reason="en_core_web_sm is installed, so English voices are not refused")
def test_english_voices_without_spacys_model_are_refused_and_not_chosen(tiny_kokoro, hf_cache):
    put_in_hf_cache(hf_cache, tiny_kokoro)
    with pytest.raises(InputError, match=r"needs spaCy's en_core_web_sm.*python -m spacy download en_core_web_sm") as info:
        load_voice("kokoro:af_heart")
    assert "\n" not in str(info.value)
    assert not best_voice_spec().startswith("kokoro")
    status = {engine: (ok, what) for engine, ok, what in voice_status()}
    assert status["kokoro"][0] is False and "en_core_web_sm" in status["kokoro"][1]


@pytest.mark.skipif(not HAS_ENGLISH_G2P, reason="spaCy's en_core_web_sm is not installed: Kokoro's English G2P "
                    "(misaki) would download it at run time, so English voices are refused offline")
def test_english_voices_speak_and_kokoro_is_the_best(tiny_kokoro, hf_cache):
    put_in_hf_cache(hf_cache, tiny_kokoro)
    assert best_voice_spec() == "kokoro:af_heart"
    assert load_voice("auto").speak("Pip wakes up in the forest.").duration > 0


def test_missing_and_broken_files_are_one_sentence(tiny_kokoro, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="storyagent weights fetch kokoro-82m"):
        load_voice("kokoro:ef_dora")
    monkeypatch.setenv(env_var("kokoro-82m"), str(tiny_kokoro))
    with pytest.raises(InputError, match=r"no voice 'ef_nobody' here; voices in .*: af_heart, bf_emma, ef_dora"):
        load_voice("kokoro:ef_nobody")
    with pytest.raises(InputError, match="first letter is its language"):
        load_voice("kokoro:xf_test")
    broken = tmp_path / "broken"
    (broken / "voices").mkdir(parents=True)
    (broken / "config.json").write_text((tiny_kokoro / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    (broken / "kokoro-v1_0.pth").write_bytes(b"truncated download")
    (broken / "voices" / "ef_dora.pt").write_bytes((tiny_kokoro / "voices" / "ef_dora.pt").read_bytes())
    monkeypatch.setenv(env_var("kokoro-82m"), str(broken))
    with pytest.raises(InputError, match="Cannot load Kokoro from .*storyagent weights fetch kokoro-82m"):
        load_voice("kokoro:ef_dora")

"""Issue 24: the score from a text-to-music model (Stable Audio Open through diffusers), on a tiny
random `StableAudioPipeline` built here, saved, and loaded by the package's own loading code
(`local_files_only`, found through the weights registry's environment variable as `auto` finds it)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("torchsde", reason="Stable Audio Open's scheduler needs torchsde (pip install torchsde)")

from storyagent.errors import WeightsNotFoundError  # noqa: E402
from storyagent.models.music import make_score, music_engine, music_unavailable  # noqa: E402
from storyagent.models.music import text_to_music as ttm  # noqa: E402
from storyagent.models.music.config import TEXT_TO_MUSIC_WEIGHTS, TextToMusicConfig  # noqa: E402
from storyagent.weights import env_var, weights_available  # noqa: E402
from tests.models.test_music_score import story  # noqa: E402

# Words the tiny tokenizer knows (SentencePiece pieces, "▁" starting a word); the rest are letters.
WORDS = ("instrumental film score storybook sad worried joyful bright calm gentle warm tense flute harp strings guitar "
         "nylon piano then about bpm vocals singing speech low quality distortion noise").split()


def build_tiny_stable_audio(folder):
    """A StableAudioPipeline with every part tiny and random (the sizes of diffusers' own fast tests,
    a 1-layer T5 and a 16-step latent: at most 2 s of audio at 16 Hz), saved as diffusers saves it."""
    from diffusers import (AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline, StableAudioProjectionModel)
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>"] + [f"\u2581{w}" for w in WORDS] + list("abcdefghijklmnopqrstuvwxyz,0123456789")
    tokenizer = T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0, model_max_length=32)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(pieces), d_model=8, d_kv=4, d_ff=16, num_layers=1,
                                           num_heads=2))
    transformer = StableAudioDiTModel(sample_size=16, in_channels=3, num_layers=2, attention_head_dim=4,
                                      num_key_value_attention_heads=2, out_channels=3, cross_attention_dim=4,
                                      time_proj_dim=8, global_states_input_dim=8, cross_attention_input_dim=4)
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[1, 2], decoder_channels=3,
                             decoder_input_channels=3, audio_channels=2, channel_multiples=[2, 4], sampling_rate=16)
    projection = StableAudioProjectionModel(text_encoder_dim=8, conditioning_dim=4, min_value=0, max_value=32)
    scheduler = CosineDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                                  sigma_schedule="exponential")
    pipe = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer,
                               transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_stable_audio(tmp_path_factory.mktemp("tiny-stable-audio"))


@pytest.fixture
def cached_tiny(tiny_folder, monkeypatch):
    """The tiny model where `auto` looks for Stable Audio Open, run with 2 denoising steps."""
    monkeypatch.setenv(env_var(TEXT_TO_MUSIC_WEIGHTS), str(tiny_folder))
    monkeypatch.setattr(ttm, "TextToMusicConfig", functools.partial(TextToMusicConfig, num_inference_steps=2))
    return tiny_folder


def windows(seconds: float, n: int = 4) -> list[tuple[float, float]]:
    return [(seconds * i / n, seconds * (i + 1) / n) for i in range(n)]


def test_prompt_follows_the_story():
    prompt = ttm.music_prompt(story())
    assert "joyful" in prompt and "sad" in prompt and prompt.index("joyful") < prompt.index("sad")
    assert "flute" in prompt and "instrumental" in prompt and "BPM" in prompt


@pytest.mark.parametrize("seconds", [1.5, 5.0])  # shorter than the model's 2 s, and longer (looped)
def test_auto_uses_the_cached_model(cached_tiny, tmp_path, monkeypatch, seconds):
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth: the model needs none
    assert music_engine("auto") == TEXT_TO_MUSIC_WEIGHTS and music_unavailable("auto") is None
    audio = make_score(story(), windows(seconds), "auto", seed=1)
    assert audio.sample_rate == 48000 and audio.channels == 2
    assert len(audio.samples) == round(seconds * 48000)
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0
    assert np.abs(audio.samples[len(audio.samples) // 3: 2 * len(audio.samples) // 3]).max() > 0


def test_same_seed_same_score_other_seed_another(cached_tiny):
    a = make_score(story(), windows(1.5), "auto", seed=1)
    b = make_score(story(), windows(1.5), "auto", seed=1)
    c = make_score(story(), windows(1.5), "auto", seed=2)
    assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, c.samples)


def test_loader_reads_a_folder_and_knows_the_models_length(tiny_folder):
    model = ttm.TextToMusic.from_pretrained(tiny_folder, device="cpu", config=TextToMusicConfig(num_inference_steps=2))
    assert model.max_seconds == pytest.approx(2.0)  # 16 latent steps x hop 2 / 16 Hz
    audio = model("calm harp", 0.75, seed=0, sample_rate=44100)
    assert audio.sample_rate == 44100 and len(audio.samples) == round(0.75 * 44100)


def test_a_soundfont_named_asks_for_the_composed_score(cached_tiny):
    from storyagent.models.music.fluidsynth import find_soundfont, fluidsynth_binary

    if fluidsynth_binary() is None or find_soundfont() is None:
        pytest.skip("FluidSynth or a General MIDI SoundFont is not installed")
    assert music_engine("auto", find_soundfont()) == f"fluidsynth:{find_soundfont()}"


def test_missing_weights_name_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv(env_var(TEXT_TO_MUSIC_WEIGHTS), str(tmp_path / "nowhere"))
    with pytest.raises(WeightsNotFoundError, match=f"storyagent weights fetch {TEXT_TO_MUSIC_WEIGHTS}"):
        ttm.TextToMusic.from_pretrained()


@pytest.mark.weights
def test_real_stable_audio_open():
    if not weights_available(TEXT_TO_MUSIC_WEIGHTS):
        pytest.skip(f"{TEXT_TO_MUSIC_WEIGHTS} is not in the local cache (storyagent weights fetch {TEXT_TO_MUSIC_WEIGHTS})")
    model = ttm.TextToMusic.from_pretrained(config=TextToMusicConfig(num_inference_steps=20))
    assert model.max_seconds > 40
    audio = model(ttm.music_prompt(story()), 6.0, seed=0)
    assert audio.sample_rate == 48000 and len(audio.samples) == 6 * 48000
    assert 20 * np.log10(np.sqrt(np.mean(audio.samples[48000:-96000] ** 2)) + 1e-12) > -40

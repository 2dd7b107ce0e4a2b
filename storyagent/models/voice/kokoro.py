"""Kokoro-82M (hexgrad, Apache-2.0): StyleTTS 2 with an iSTFTNet decoder, 24 kHz, through the `kokoro`
package's own `KModel` and `KPipeline`. The model, its config and its voice packs come from the weights
registry and the Hugging Face cache (`storyagent weights fetch kokoro-82m`); nothing is downloaded here.

The G2P is the package's (misaki): English voices (a*, b*) need spaCy's en_core_web_sm, which misaki
would fetch from the network on first use, so its absence is refused in one sentence instead; Spanish,
French, Hindi, Italian and Portuguese voices read through espeak-ng, bundled with the package, offline.
"""

from __future__ import annotations

from pathlib import Path

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.media.audio import Audio
from storyagent.models.voice.config import VoiceError
from storyagent.models.voice.sound import (
    pitch_factor,
    raised_by_resampling,
    silence,
    with_energy,
)
from storyagent.models.voice.style import VoiceStyle

KOKORO_REPO = "hexgrad/Kokoro-82M"
WEIGHTS_NAME = "kokoro-82m"
SAMPLE_RATE = 24000
"""Kokoro's output rate (fixed by its decoder)."""
LANGUAGES = {"a": "American English", "b": "British English", "e": "Spanish", "f": "French", "h": "Hindi",
             "i": "Italian", "p": "Brazilian Portuguese", "j": "Japanese", "z": "Mandarin Chinese"}
"""A voice's first letter: the language its pipeline reads."""
EXTRAS = {"j": "misaki[ja]", "z": "misaki[zh]"}
"""What a language's G2P needs beyond the voice extra."""


def find_kokoro_files(voice: str) -> tuple[Path, Path, Path]:
    """(config.json, model .pth, voices/VOICE.pt) from `STORYAGENT_WEIGHTS_KOKORO_82M` or the Hugging Face
    cache, offline; InputError naming `storyagent weights fetch kokoro-82m` when they are not there."""
    from storyagent.weights import fetch_hint, resolve_weights

    try:
        folder = resolve_weights(WEIGHTS_NAME)
    except WeightsNotFoundError as exc:
        raise InputError(f"Kokoro-82M is not on this machine; {fetch_hint(WEIGHTS_NAME)}.") from exc
    config = folder / "config.json"
    models = sorted(folder.glob("*.pth"))
    if not config.is_file() or not models:
        raise InputError(f"{folder} holds no Kokoro config.json and .pth model; {fetch_hint(WEIGHTS_NAME)}.")
    pack = folder / "voices" / f"{voice}.pt"
    if not pack.is_file():
        have = sorted(p.stem for p in (folder / "voices").glob("*.pt"))
        raise InputError(f"Kokoro has no voice {voice!r} here; voices in {folder / 'voices'}: "
                         f"{', '.join(have) if have else 'none'} (`storyagent weights fetch {WEIGHTS_NAME}` fetches "
                         "them all).")
    return config, models[0], pack


def g2p_problem(voice: str) -> str | None:
    """Why Kokoro's G2P cannot read `voice`'s language offline here (one sentence naming what to install), or None."""
    import importlib.util

    language = voice[:1]
    if language not in LANGUAGES:
        return (f"Kokoro voice {voice!r} names no language Kokoro reads (its first letter is one of "
                f"{', '.join(sorted(LANGUAGES))}).")
    if language in "ab" and importlib.util.find_spec("en_core_web_sm") is None:
        return ("Kokoro's English G2P needs spaCy's en_core_web_sm, which is not installed (misaki would download it "
                "at run time); install it with `python -m spacy download en_core_web_sm`, or use a Piper or espeak "
                "voice.")
    if language in EXTRAS:
        module = {"j": "pyopenjtalk", "z": "jieba"}[language]
        if importlib.util.find_spec(module) is None:
            return (f"Kokoro's {LANGUAGES[language]} G2P needs {EXTRAS[language]}; install it with "
                    f"pip install \"{EXTRAS[language]}\".")
    return None


class KokoroVoice:
    """Narration by Kokoro: style rate -> `speed` (pitch folded in and taken back by resampling, as Kokoro
    has no pitch control), energy -> a gain."""

    def __init__(self, config_path: Path, model_path: Path, voice_path: Path, spec: str,
                 device: str | None = None) -> None:
        import torch
        from kokoro import KModel, KPipeline

        from storyagent.models.device import default_device

        self.spec = spec
        self.voice_path = voice_path
        problem = g2p_problem(voice_path.stem)
        if problem is not None:
            raise InputError(problem)
        try:
            model = KModel(repo_id=KOKORO_REPO, config=str(config_path), model=str(model_path))
        except Exception as exc:  # torch's and json's own errors for a damaged file
            raise InputError(f"Cannot load Kokoro from {model_path.parent} ({_first_line(exc)}); fetch it again with "
                             f"`storyagent weights fetch {WEIGHTS_NAME}`.") from exc
        self.model = model.to(device or default_device()).eval()
        self.pipeline = KPipeline(lang_code=voice_path.stem[0], repo_id=KOKORO_REPO, model=self.model)
        # The pack is read now (torch.load weights_only), so a damaged one fails at load, not mid-film.
        try:
            self.pack = self.pipeline.load_voice(str(voice_path))
        except Exception as exc:
            raise InputError(f"Cannot read the Kokoro voice {voice_path.name} ({_first_line(exc)}); fetch it again "
                             f"with `storyagent weights fetch {WEIGHTS_NAME}`.") from exc
        if not isinstance(self.pack, torch.Tensor) or self.pack.ndim != 3:
            raise InputError(f"The Kokoro voice {voice_path.name} is not a voice pack (a (positions, 1, 256) tensor).")

    def speak(self, text: str, style: VoiceStyle = VoiceStyle()) -> Audio:
        import numpy as np

        text = " ".join(text.split())
        if not text:
            return silence(SAMPLE_RATE)
        factor = pitch_factor(style.pitch)
        try:
            pieces = [r.audio for r in self.pipeline(text, voice=str(self.voice_path), speed=style.rate / factor)
                      if r.audio is not None]
        except Exception as exc:
            raise VoiceError(f"Kokoro could not speak with {self.spec} ({_first_line(exc)}); choose another "
                             "--voice.") from exc
        if not pieces:
            return silence(SAMPLE_RATE)
        samples = np.concatenate([p.detach().float().cpu().numpy().reshape(-1) for p in pieces])
        audio = Audio(np.clip(samples, -1.0, 1.0), SAMPLE_RATE)
        return with_energy(raised_by_resampling(audio, factor), style.energy)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def load_kokoro_voice(voice: str, spec: str | None = None) -> KokoroVoice:
    """`kokoro:voice` ready to speak, or InputError naming what to install or fetch."""
    import importlib.util

    spec = spec or f"kokoro:{voice}"
    if importlib.util.find_spec("kokoro") is None:
        raise InputError(f'--voice {spec} needs the kokoro package; install it with pip install -e ".[voice]" or '
                         "choose another --voice.")
    config, model, pack = find_kokoro_files(voice)
    problem = g2p_problem(voice)
    if problem is not None:
        raise InputError(problem)
    return KokoroVoice(config, model, pack, spec)

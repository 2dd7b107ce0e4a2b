"""Piper: a VITS voice exported to ONNX, run on the CPU by onnxruntime through piper-tts's own
`PiperVoice` (its phonemizer is espeak-ng, bundled with the package). Voices come from
`rhasspy/piper-voices` through the weights registry and the Hugging Face cache, never the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.media.audio import Audio
from storyagent.models.voice.config import (
    VoiceError,
    piper_voice_path,
    piper_weights_name,
)
from storyagent.models.voice.sound import pitch_factor, raised_by_resampling, silence
from storyagent.models.voice.style import VoiceStyle

PIPER_REPO = "rhasspy/piper-voices"
VOLUME = 0.9
"""Peak level of a line at energy 1 (piper scales each sentence to its peak, then by this volume)."""
OFFLINE_PHONEMES = ("espeak", "text")
"""The phoneme types piper-tts reads with what it ships; the others fetch models of their own at first use."""


def find_piper_voice(voice: str) -> tuple[Path, Path]:
    """(model .onnx, config .onnx.json) of `voice`: a path to an .onnx file, the registry's weights
    (`STORYAGENT_WEIGHTS_PIPER_*`, then the Hugging Face cache), or, for a voice the registry does not
    name, the Hugging Face cache of rhasspy/piper-voices; always offline."""
    from storyagent.weights import WEIGHTS, fetch_hint, resolve_weights

    if voice.endswith(".onnx"):
        model = Path(voice).expanduser()
        if not model.is_file():
            raise InputError(f"The Piper voice file {model} does not exist; pass the path of a voice's .onnx file "
                             "(its .onnx.json beside it).")
        return model, _config_beside(model)
    name = piper_weights_name(voice)
    if name in WEIGHTS:
        try:
            found = resolve_weights(name)
        except WeightsNotFoundError as exc:
            raise InputError(f"The Piper voice {voice} is not on this machine; {fetch_hint(name)}.") from exc
        model = found if found.is_file() else found / f"{voice}.onnx"
        if not model.is_file():
            candidates = sorted(found.glob("*.onnx")) if found.is_dir() else []
            if not candidates:
                raise InputError(f"No Piper voice (.onnx) in {found}; {fetch_hint(name)}.")
            model = candidates[0]
        return model, _config_beside(model)
    from huggingface_hub import hf_hub_download

    try:
        path = piper_voice_path(voice)
        model = Path(hf_hub_download(PIPER_REPO, path, local_files_only=True))
        config = Path(hf_hub_download(PIPER_REPO, path + ".json", local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        known = ", ".join(WEIGHTS[n].files[0].rsplit("/", 1)[-1].removesuffix(".onnx")
                          for n in sorted(WEIGHTS) if n.startswith("piper-"))
        raise InputError(f"The Piper voice {voice} is not on this machine; `storyagent weights fetch` knows {known}, "
                         "or pass the path of a voice's .onnx file as piper:/path/VOICE.onnx.") from exc
    return model, config


def _config_beside(model: Path) -> Path:
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise InputError(f"The Piper voice {model.name} has no {config.name} beside it; fetch both files of the voice.")
    return config


class PiperVoice:
    """Narration by Piper: style rate -> `length_scale` (the voice's own divided by the rate), pitch by
    resampling (Piper has no pitch control), energy -> the output volume."""

    def __init__(self, model_path: Path, config_path: Path, spec: str) -> None:
        try:
            from piper import PiperVoice as Piper
            from piper.config import PhonemeType
        except ImportError as exc:
            raise InputError(f'--voice {spec} needs piper-tts; install it with pip install -e ".[voice]" '
                             "or choose another --voice.") from exc
        self.spec = spec
        try:
            self.piper = Piper.load(model_path, config_path=config_path, download_dir=_no_downloads())
        except Exception as exc:  # onnxruntime and json raise their own types for a broken file
            raise InputError(f"Cannot load the Piper voice {model_path.name} ({_first_line(exc)}); fetch it again "
                             "(storyagent weights fetch ...) or pass another .onnx file.") from exc
        kind = PhonemeType(self.piper.config.phoneme_type).value
        if kind not in OFFLINE_PHONEMES:
            raise InputError(f"The Piper voice {model_path.name} reads {kind} phonemes, which piper-tts fetches models "
                             "for at first use; choose a voice whose phonemes are espeak (most of them).")

    @property
    def sample_rate(self) -> int:
        return int(self.piper.config.sample_rate)

    def synthesis_config(self, style: VoiceStyle) -> Any:
        from piper.config import SynthesisConfig

        factor = pitch_factor(style.pitch)
        # A larger length_scale is slower speech; the pitch factor is taken back out by resampling.
        length_scale = self.piper.config.length_scale * factor / style.rate
        volume = min(max(VOLUME * style.energy, 0.05), 1.0)
        return SynthesisConfig(length_scale=length_scale, volume=volume)

    def speak(self, text: str, style: VoiceStyle = VoiceStyle()) -> Audio:
        import numpy as np

        text = " ".join(text.split())
        if not text:
            return silence(self.sample_rate)
        try:
            chunks = [c.audio_float_array for c in self.piper.synthesize(text, self.synthesis_config(style))]
        except Exception as exc:  # onnxruntime's errors for a model that does not fit piper's inputs
            raise VoiceError(f"Piper could not speak with {self.spec} ({_first_line(exc)}); fetch the voice again "
                             "or choose another --voice.") from exc
        if not chunks:
            return silence(self.sample_rate)
        samples = np.concatenate([np.asarray(c, np.float32).reshape(-1) for c in chunks])  # sentences in order
        return raised_by_resampling(Audio(samples, self.sample_rate), pitch_factor(style.pitch))


def _no_downloads() -> Path:
    """Where piper-tts would put models it fetches itself (only for phoneme types refused above): a folder in
    the StoryAgent cache, not the working directory."""
    from storyagent.weights import cache_dir

    return cache_dir("piper")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def load_piper_voice(voice: str, spec: str | None = None) -> PiperVoice:
    """`piper:voice` ready to speak, or InputError naming what to install or fetch."""
    import importlib.util

    spec = spec or f"piper:{voice}"
    if importlib.util.find_spec("piper") is None:
        raise InputError(f'--voice {spec} needs piper-tts; install it with pip install -e ".[voice]" or choose '
                         "another --voice.")
    model, config = find_piper_voice(voice)
    return PiperVoice(model, config, spec)

"""From a `voice` setting to a voice that speaks: `load_voice`, the best voice this machine has
(`best_voice_spec`), and what `doctor` says about each engine (`voice_status`).

Nothing here imports torch, piper or kokoro: the engines import them when they are loaded, so the
offline animatic path (espeak-ng or no voice) stays free of them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Protocol, runtime_checkable

from storyagent.environment import without_credentials
from storyagent.errors import InputError
from storyagent.media.audio import Audio
from storyagent.models.voice.config import (
    DEFAULT_SPEECH_MODEL,
    DEFAULT_VOICES,
    OPENAI_KEY_VARIABLE,
    OPENAI_URL,
    SERVER_KEY_VARIABLE,
    EspeakConfig,
    SpeechServerConfig,
    VoiceSpec,
    read_voice_spec,
    voice_timeout,
)
from storyagent.models.voice.style import VoiceStyle

VOICE_EXTRA = 'pip install -e ".[voice]"'
"""How the neural engines (piper-tts, kokoro) are installed."""


@runtime_checkable
class Voice(Protocol):
    """Something that speaks a line."""

    spec: str
    """The setting it was loaded from, normalised and safe to record (no credentials)."""

    def speak(self, text: str, style: VoiceStyle = VoiceStyle()) -> Audio:
        """`text` spoken in `style`: mono float samples at the engine's own rate; no samples for an empty line."""
        ...


def load_voice(spec: str) -> Voice | None:
    """The voice `spec` names, ready to speak; None for "none"; "auto" is `best_voice_spec()`. A missing
    engine, program or weight raises InputError naming what to install or fetch."""
    parsed = read_voice_spec(spec)
    if parsed.engine == "auto":
        parsed = read_voice_spec(best_voice_spec())
    if parsed.engine == "none":
        return None
    if parsed.engine == "espeak":
        from storyagent.models.voice.espeak import EspeakVoice

        return EspeakVoice(EspeakConfig(voice=parsed.voice), spec=str(parsed))
    if parsed.engine == "piper":
        from storyagent.models.voice.piper import load_piper_voice

        return load_piper_voice(parsed.voice, spec=str(parsed))
    if parsed.engine == "kokoro":
        from storyagent.models.voice.kokoro import load_kokoro_voice

        return load_kokoro_voice(parsed.voice, spec=str(parsed))
    from storyagent.models.voice.openai_speech import SpeechServerVoice

    return SpeechServerVoice(speech_server_config(parsed), spec=_safe_spec(parsed))


def speech_server_config(parsed: VoiceSpec) -> SpeechServerConfig:
    """Where an openai / openai-compatible voice is and how it is reached; the key from the environment,
    as the LLM's is (OPENAI_API_KEY for OpenAI, at OPENAI_BASE_URL if set; STORYAGENT_VOICE_API_KEY, if set,
    for another server: a key meant for OpenAI is never sent to a server the user named)."""
    model = parsed.model or DEFAULT_SPEECH_MODEL
    if parsed.engine == "openai":
        key = os.environ.get(OPENAI_KEY_VARIABLE)
        if not key:
            raise InputError(f"--voice {parsed} needs {OPENAI_KEY_VARIABLE} in the environment; set it or choose "
                             "another --voice (espeak, piper:..., none).")
        # OPENAI_BASE_URL as the openai client reads it (a proxy or a gateway in front of OpenAI).
        base = os.environ.get("OPENAI_BASE_URL", "").strip() or OPENAI_URL
        return SpeechServerConfig(base, parsed.voice, model, key, voice_timeout())
    return SpeechServerConfig(parsed.url, parsed.voice, model, os.environ.get(SERVER_KEY_VARIABLE) or None,
                              voice_timeout())


def _safe_spec(parsed: VoiceSpec) -> str:
    return without_credentials(str(parsed))


# ---------------------------------------------------------------------- what this machine has
def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (kokoro would bring torch in)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def piper_voices() -> list[str]:
    """The Piper voices `storyagent weights fetch` knows, the default first."""
    from storyagent.weights import WEIGHTS

    names = [spec.files[0].rsplit("/", 1)[-1].removesuffix(".onnx") for name, spec in WEIGHTS.items()
             if name.startswith("piper-") and spec.files]
    return sorted(names, key=lambda v: v != DEFAULT_VOICES["piper"])


def kokoro_problem(voice: str = DEFAULT_VOICES["kokoro"]) -> str | None:
    """Why `kokoro:voice` cannot speak on this machine (one clause naming the fix), or None."""
    from storyagent.models.voice.kokoro import WEIGHTS_NAME, g2p_problem
    from storyagent.weights import weights_available

    if not _installed("kokoro"):
        return f"the kokoro package is not installed ({VOICE_EXTRA})"
    if not weights_available(WEIGHTS_NAME):
        return f"Kokoro-82M is not in the local cache (storyagent weights fetch {WEIGHTS_NAME})"
    problem = g2p_problem(voice)
    return problem.rstrip(".") if problem else None


def piper_problem(voice: str = DEFAULT_VOICES["piper"]) -> str | None:
    """Why `piper:voice` cannot speak on this machine (one clause naming the fix), or None."""
    from storyagent.models.voice.config import piper_weights_name
    from storyagent.weights import WEIGHTS, weights_available

    if not _installed("piper"):
        return f"piper-tts is not installed ({VOICE_EXTRA})"
    name = piper_weights_name(voice)
    if name in WEIGHTS and not weights_available(name):
        return f"the Piper voice {voice} is not in the local cache (storyagent weights fetch {name})"
    return None


def best_voice_spec() -> str:
    """The best voice this machine has: Kokoro with its weights cached, else a cached Piper voice, else
    espeak-ng when it is installed, else "none"."""
    if kokoro_problem() is None:
        return f"kokoro:{DEFAULT_VOICES['kokoro']}"
    if _installed("piper"):
        for voice in piper_voices():
            if piper_problem(voice) is None:
                return f"piper:{voice}"
    from storyagent.models.voice.espeak import espeak_executable

    return "espeak" if espeak_executable() else "none"


def voice_status() -> list[tuple[str, bool, str]]:
    """For `doctor`: (engine, available, what it gives or what to do), best engine first."""
    from storyagent.models.voice.espeak import INSTALL_HINT, espeak_executable

    rows: list[tuple[str, bool, str]] = []
    problem = kokoro_problem()
    rows.append(("kokoro", problem is None, f"--voice kokoro:{DEFAULT_VOICES['kokoro']}" if problem is None
                 else problem))
    cached = [v for v in piper_voices() if piper_problem(v) is None] if _installed("piper") else []
    rows.append(("piper", bool(cached), f"--voice piper:{cached[0]}" if cached else piper_problem() or ""))
    program = espeak_executable()
    rows.append(("espeak", program is not None, f"--voice espeak ({program})" if program else
                 f"espeak-ng is not installed; {INSTALL_HINT}"))
    has_key = bool(os.environ.get(OPENAI_KEY_VARIABLE))
    rows.append(("openai", has_key, f"--voice openai:{DEFAULT_VOICES['openai']}" if has_key
                 else f"set {OPENAI_KEY_VARIABLE} to use --voice openai:VOICE"))
    rows.append(("openai-compatible", True, "--voice openai-compatible:VOICE@URL for any server with "
                 f"/v1/audio/speech (key, if it needs one: {SERVER_KEY_VARIABLE})"))
    return rows

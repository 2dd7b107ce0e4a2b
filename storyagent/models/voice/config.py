"""The `voice` setting: what each spec names, read into a `VoiceSpec`, and each engine's settings.

Specs:
  auto                                   the best voice this machine has (`best_voice_spec`)
  none                                   no narration (a silent film)
  espeak[:VOICE]                         Debian's espeak-ng (VOICE: an espeak-ng voice, default en-us)
  piper[:VOICE]                          Piper (ONNX, CPU), VOICE e.g. en_US-lessac-medium, or the path of a
                                         voice's .onnx file (its .onnx.json beside it)
  kokoro[:VOICE]                         Kokoro-82M, VOICE e.g. af_heart
  openai[:[MODEL/]VOICE]                 OpenAI's /v1/audio/speech, key from OPENAI_API_KEY
  openai-compatible:[MODEL/]VOICE@URL    any server with /v1/audio/speech (key: STORYAGENT_VOICE_API_KEY)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from storyagent.environment import timeout_from_env
from storyagent.errors import InputError, StoryAgentError

ENGINES = ("espeak", "piper", "kokoro", "openai", "openai-compatible")
SPEC_FORMS = ("auto, none, espeak[:VOICE], piper:VOICE (e.g. piper:en_US-lessac-medium), kokoro:VOICE "
              "(e.g. kokoro:af_heart), openai:VOICE (e.g. openai:alloy) or openai-compatible:VOICE@http://host:port")

DEFAULT_VOICES = {"espeak": "en-us", "piper": "en_US-lessac-medium", "kokoro": "af_heart", "openai": "alloy",
                  "openai-compatible": "alloy"}
"""The voice an engine speaks with when the spec names none."""
DEFAULT_SPEECH_MODEL = "tts-1"
"""The model asked of a speech server when the spec names none (OpenAI's; most local servers ignore it)."""

TIMEOUT_VARIABLE = "STORYAGENT_VOICE_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
OPENAI_KEY_VARIABLE = "OPENAI_API_KEY"
SERVER_KEY_VARIABLE = "STORYAGENT_VOICE_API_KEY"
OPENAI_URL = "https://api.openai.com"

_ESPEAK_VOICE = re.compile(r"^[A-Za-z0-9_+\-/]{1,60}$")
_PIPER_VOICE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[A-Za-z0-9_]+-(x_low|low|medium|high)$")
_KOKORO_VOICE = re.compile(r"^[a-z][a-z]_[a-z0-9]+$")
KOKORO_LANGUAGES = "abefhijpz"
"""The first letters of Kokoro's voices: a, b English; e, f, h, i, p read through espeak-ng; j, z Japanese, Chinese."""
_SERVER_VOICE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


class VoiceError(StoryAgentError):
    """A voice could not speak a line (its server failed, its engine broke); the message says what to do."""


@dataclass(frozen=True)
class VoiceSpec:
    """One `voice` setting, read."""

    engine: str
    """auto, none, espeak, piper, kokoro, openai or openai-compatible."""
    voice: str = ""
    """The engine's voice: an espeak-ng voice, a Piper voice name or .onnx path, a Kokoro voice, a server's voice."""
    model: str = ""
    """For a speech server: the model asked for ("" = DEFAULT_SPEECH_MODEL)."""
    url: str = ""
    """For openai-compatible: the server's base URL, as the user wrote it (may hold credentials)."""

    def __str__(self) -> str:
        if self.engine in ("auto", "none"):
            return self.engine
        name = f"{self.model}/{self.voice}" if self.model else self.voice
        if self.engine == "openai-compatible":
            return f"openai-compatible:{name}@{self.url}"
        if self.engine == "espeak" and self.voice == DEFAULT_VOICES["espeak"]:
            return "espeak"
        return f"{self.engine}:{name}"


def read_voice_spec(spec: str) -> VoiceSpec:
    """`spec` read into a `VoiceSpec`, or InputError in one sentence naming the forms."""
    text = (spec or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    rest = rest.strip()
    if kind in ("auto", "none", "off", "silent") and not rest:
        return VoiceSpec("none" if kind in ("off", "silent") else kind)
    if kind not in ENGINES:
        raise InputError(f"--voice {spec!r} is not understood; use {SPEC_FORMS}.")
    if kind == "openai-compatible":
        # The first "@": a voice name holds none, a URL may (user:password@host).
        name, at, url = rest.partition("@")
        if not at or not url.startswith(("http://", "https://")) or not name:
            raise InputError(f"--voice {spec!r} needs VOICE@URL, e.g. openai-compatible:af_heart@http://127.0.0.1:8880 "
                             "(the server answers POST /v1/audio/speech).")
        model, voice = _model_and_voice(name, spec)
        return VoiceSpec(kind, voice, model, url.rstrip("/"))
    if kind == "openai":
        model, voice = _model_and_voice(rest or DEFAULT_VOICES["openai"], spec)
        return VoiceSpec(kind, voice, model)
    voice = rest or DEFAULT_VOICES[kind]
    if kind == "espeak" and not _ESPEAK_VOICE.match(voice):
        raise InputError(f"--voice {spec!r}: {voice!r} is not an espeak-ng voice name; see `espeak-ng --voices`.")
    if kind == "piper" and not (_PIPER_VOICE.match(voice) or voice.endswith(".onnx")):
        raise InputError(f"--voice {spec!r}: a Piper voice is named like en_US-lessac-medium (language_REGION-name-"
                         "quality), or is the path of its .onnx file.")
    if kind == "kokoro" and not _KOKORO_VOICE.match(voice):
        raise InputError(f"--voice {spec!r}: a Kokoro voice is named like af_heart (language and gender letters, "
                         "an underscore, a name).")
    if kind == "kokoro" and voice[0] not in KOKORO_LANGUAGES:
        raise InputError(f"--voice {spec!r}: a Kokoro voice's first letter is its language, one of "
                         f"{', '.join(KOKORO_LANGUAGES)} (a: American English, b: British English), as in af_heart.")
    return VoiceSpec(kind, voice)


def _model_and_voice(name: str, spec: str) -> tuple[str, str]:
    model, slash, voice = name.rpartition("/")
    if not _SERVER_VOICE.match(voice) or (slash and not _SERVER_VOICE.match(model)):
        raise InputError(f"--voice {spec!r}: the voice (and model, as MODEL/VOICE) may hold letters, digits, '.', '_' "
                         "and '-' only.")
    return model, voice


def parse_voice_spec(spec: str) -> str:
    """The normalised form of `spec` ("espeak:en-us" -> "espeak", "kokoro" -> "kokoro:af_heart"), or
    InputError in one sentence."""
    return str(read_voice_spec(spec))


def voice_timeout() -> float:
    """Seconds to wait for a speech server's answer, from STORYAGENT_VOICE_TIMEOUT (default 60)."""
    return timeout_from_env(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)


@dataclass(frozen=True)
class EspeakConfig:
    """How espeak-ng is asked to speak."""

    voice: str = DEFAULT_VOICES["espeak"]
    """The espeak-ng voice (`espeak-ng --voices` lists them); "+f3"-style variants are allowed."""
    words_per_minute: int = 165
    """Speed at style rate 1; espeak-ng's own default is 175, a little quick for narration."""
    pitch: int = 50
    """espeak-ng's pitch (0-99) at style pitch 0."""
    pitch_per_semitone: float = 4.0
    """espeak-ng pitch units per semitone of style pitch (its scale is not musical; this is close near 50)."""
    amplitude: int = 100
    """espeak-ng's amplitude (0-200) at style energy 1."""
    executable: str = "espeak-ng"
    """The program, found on PATH."""


@dataclass(frozen=True)
class SpeechServerConfig:
    """A server that answers OpenAI's POST /v1/audio/speech."""

    url: str
    """Base URL: the path /v1/audio/speech is added (a trailing /v1 is accepted)."""
    voice: str
    """The server's voice name."""
    model: str = DEFAULT_SPEECH_MODEL
    """The speech model asked for."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as a Bearer token; never written to logs or the manifest."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds to wait for one answer."""

    @property
    def endpoint(self) -> str:
        return f"{self.url.rstrip('/').removesuffix('/v1')}/v1/audio/speech"


def piper_voice_path(voice: str) -> str:
    """Where `rhasspy/piper-voices` keeps a voice's model: en_US-lessac-medium ->
    en/en_US/lessac/medium/en_US-lessac-medium.onnx."""
    language, name, quality = voice.split("-", 1)[0], *voice.split("-", 1)[1].rsplit("-", 1)
    return f"{language.split('_')[0]}/{language}/{name}/{quality}/{voice}.onnx"


def piper_weights_name(voice: str) -> str:
    """The weights registry's name for a Piper voice: en_US-lessac-medium -> piper-en-us-lessac-medium."""
    return "piper-" + voice.lower().replace("_", "-")


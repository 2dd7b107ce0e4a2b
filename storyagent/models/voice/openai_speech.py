"""A speech server: OpenAI's POST /v1/audio/speech, or any server that answers it (Kokoro-FastAPI,
openedai-speech, LocalAI, vLLM-Omni ...). One request per line; WAV asked for, any audio format read."""

from __future__ import annotations

import json
import re

from storyagent.environment import without_credentials
from storyagent.media.audio import Audio
from storyagent.models.voice.config import (
    OPENAI_KEY_VARIABLE,
    SERVER_KEY_VARIABLE,
    TIMEOUT_VARIABLE,
    SpeechServerConfig,
    VoiceError,
)
from storyagent.models.voice.sound import (
    decode_audio,
    pitch_factor,
    raised_by_resampling,
    silence,
    with_energy,
)
from storyagent.models.voice.style import VoiceStyle

SPEED_RANGE = (0.25, 4.0)
"""The speeds OpenAI's endpoint accepts."""
MAX_ANSWER_BYTES = 200 << 20
"""The most audio one answer may bring (a minute of 48 kHz float stereo is 23 MB); a runaway server stops here."""
_SUFFIXES = {"mpeg": ".mp3", "mp3": ".mp3", "ogg": ".ogg", "opus": ".ogg", "flac": ".flac", "aac": ".aac",
             "mp4": ".m4a", "webm": ".webm"}


class SpeechServerVoice:
    """Narration by a speech server: style rate -> `speed` (with pitch folded in, see `raised_by_resampling`),
    energy -> a gain on what comes back."""

    def __init__(self, config: SpeechServerConfig, spec: str) -> None:
        self.config = config
        self.spec = spec

    @property
    def where(self) -> str:
        """The endpoint, safe to show."""
        return without_credentials(self.config.endpoint)

    def request_body(self, text: str, style: VoiceStyle) -> dict[str, object]:
        factor = pitch_factor(style.pitch)
        speed = min(max(style.rate / factor, SPEED_RANGE[0]), SPEED_RANGE[1])
        return {"model": self.config.model, "input": text, "voice": self.config.voice, "response_format": "wav",
                "speed": round(speed, 4)}

    def speak(self, text: str, style: VoiceStyle = VoiceStyle()) -> Audio:
        text = " ".join(text.split())
        if not text:
            return silence(24000)
        body = self.request_body(text, style)
        data, content_type = self._post(body)
        if not _is_audio(content_type, data):
            raise VoiceError(f"The speech server at {self.where} answered with no audio ({content_type or 'no content type'}: "
                             f"{_excerpt(data)}); check that --voice {self.spec} points at a /v1/audio/speech endpoint.")
        try:
            audio = decode_audio(data, _suffix(content_type))
        except ValueError as exc:
            raise VoiceError(f"The speech server at {self.where} sent audio that cannot be read ({exc}); "
                             f"check --voice {self.spec}.") from exc
        # What the server could not do with the pitch, the speed asked for left room to do here.
        factor = style.rate / float(body["speed"])  # type: ignore[arg-type]
        return with_energy(raised_by_resampling(audio, factor), style.energy)

    def _post(self, body: dict[str, object]) -> tuple[bytes, str]:
        import httpx

        headers = {"Accept": "audio/wav, audio/*"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        try:
            with httpx.Client(timeout=self.config.timeout, follow_redirects=True) as client:
                with client.stream("POST", self.config.endpoint, json=body, headers=headers) as response:
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) > MAX_ANSWER_BYTES:
                            raise VoiceError(f"The speech server at {self.where} sent more than "
                                             f"{MAX_ANSWER_BYTES >> 20} MB for one line; check --voice {self.spec}.")
                    status, content_type = response.status_code, response.headers.get("content-type", "")
        except httpx.TimeoutException as exc:
            raise VoiceError(f"The speech server at {self.where} did not answer within {self.config.timeout:g} s; raise "
                             f"{TIMEOUT_VARIABLE}, check the server, or choose another --voice.") from exc
        except httpx.HTTPError as exc:
            raise VoiceError(f"Cannot reach the speech server at {self.where} ({type(exc).__name__}); check that it is "
                             f"running and the --voice setting, or choose another --voice.") from exc
        if status in (401, 403):
            key = OPENAI_KEY_VARIABLE if self.spec.startswith("openai:") else SERVER_KEY_VARIABLE
            raise VoiceError(f"The speech server at {self.where} refused the request ({status}: {_excerpt(bytes(data))}); "
                             f"check {key}.")
        if status == 404:
            raise VoiceError(f"The speech server at {self.where} has no such endpoint, model or voice (404: "
                             f"{_excerpt(bytes(data))}); check --voice {self.spec}.")
        if status >= 400:
            raise VoiceError(f"The speech server at {self.where} answered with an error ({status}: "
                             f"{_excerpt(bytes(data))}); check the server and --voice {self.spec}.")
        return bytes(data), content_type.split(";")[0].strip().lower()


def _is_audio(content_type: str, data: bytes) -> bool:
    if data[:4] in (b"RIFF", b"OggS", b"fLaC", b"ID3\x03", b"ID3\x04") or data[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return True
    return content_type.startswith("audio/") and bool(data)


def _suffix(content_type: str) -> str:
    subtype = content_type.partition("/")[2]
    return next((s for key, s in _SUFFIXES.items() if key in subtype), ".bin")


def _excerpt(data: bytes) -> str:
    """The server's message, short and on one line: a JSON error's message, else the start of the text."""
    text = data[:4000].decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            error = parsed.get("error", parsed.get("detail", parsed))
            text = str(error.get("message", error) if isinstance(error, dict) else error)
    except ValueError:
        pass
    line = " ".join(re.sub(r"<[^>]*>", " ", text).split())  # an HTML error page's words, not its tags
    return (line[:160] + "...") if len(line) > 160 else (line or "empty answer")

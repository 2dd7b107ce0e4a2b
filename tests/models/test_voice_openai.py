"""The speech-server voices (`openai:VOICE`, `openai-compatible:VOICE@URL`) against a real HTTP server on
127.0.0.1 that this test starts: it records each request and answers with a WAV tone it synthesises, as
long as the text and the speed ask, or with the failure a test names."""

from __future__ import annotations

import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from storyagent.errors import InputError
from storyagent.models.voice import VoiceError, VoiceStyle, load_voice

RATE = 24000
TONE_HZ = 220.0
SECONDS_PER_CHAR = 0.04


def tone_wav(seconds: float, streamed: bool = False) -> bytes:
    """A 16-bit mono WAV of a sine; `streamed` writes the placeholder sizes streaming servers send."""
    t = np.arange(int(seconds * RATE)) / RATE
    pcm = (0.5 * np.sin(2 * np.pi * TONE_HZ * t) * 32767).astype("<i2").tobytes()
    riff, data = (0xFFFFFFFF, 0xFFFFFFFF) if streamed else (36 + len(pcm), len(pcm))
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
            + b"data" + struct.pack("<I", data) + pcm)


class SpeechServer:
    """POST /v1/audio/speech on 127.0.0.1; `mode` picks the answer: ok, streamed, error, slow, html, denied, junk."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.mode = "ok"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "json": body, "auth": self.headers.get("Authorization")})
                mode = server.mode
                if mode == "slow":
                    time.sleep(2.0)
                if self.path != "/v1/audio/speech":
                    return self.answer(404, "application/json", b'{"error": {"message": "no such route"}}')
                if mode == "error":
                    return self.answer(500, "application/json", b'{"error": {"message": "model crashed\\nat line 3"}}')
                if mode == "html":
                    return self.answer(200, "text/html", b"<html><body>Welcome to nginx!</body></html>")
                if mode == "denied":
                    return self.answer(401, "application/json", b'{"error": {"message": "invalid api key"}}')
                if mode == "junk":
                    return self.answer(200, "audio/wav", b"this is not sound at all")
                seconds = SECONDS_PER_CHAR * len(body["input"]) / float(body.get("speed", 1.0))
                self.answer(200, "audio/wav", tone_wav(seconds, streamed=mode == "streamed"))

            def answer(self, status, content_type, data):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = SpeechServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fresh(server, monkeypatch):
    server.requests.clear()
    server.mode = "ok"
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "STORYAGENT_VOICE_API_KEY", "STORYAGENT_VOICE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


LINE = "Pip the fox wakes up in the forest."


def test_the_request_carries_model_voice_input_speed_and_the_key(server, monkeypatch):
    monkeypatch.setenv("STORYAGENT_VOICE_API_KEY", "sk-local-123")
    voice = load_voice(f"openai-compatible:kokoro/af_heart@{server.url}/v1")
    audio = voice.speak(LINE, VoiceStyle(rate=0.8))
    (request,) = server.requests
    assert request["path"] == "/v1/audio/speech"
    assert request["json"] == {"model": "kokoro", "voice": "af_heart", "input": LINE, "response_format": "wav",
                               "speed": 0.8}
    assert request["auth"] == "Bearer sk-local-123"
    assert "sk-local-123" not in voice.spec and "sk-local-123" not in repr(voice.config)
    assert audio.sample_rate == RATE and audio.duration == pytest.approx(SECONDS_PER_CHAR * len(LINE) / 0.8, abs=0.01)
    assert peak_hz(audio.samples, RATE) == pytest.approx(TONE_HZ, rel=0.02)


def test_without_a_key_no_authorization_is_sent_and_the_default_model_is_asked(server):
    load_voice(f"openai-compatible:nova@{server.url}").speak("Hello.")
    (request,) = server.requests
    assert request["auth"] is None and request["json"]["model"] == "tts-1" and request["json"]["voice"] == "nova"


def test_openai_uses_its_key_and_base_url(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-xyz")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("STORYAGENT_VOICE_API_KEY", "sk-other")
    voice = load_voice("openai:tts-1-hd/shimmer")
    assert voice.spec == "openai:tts-1-hd/shimmer"
    voice.speak(LINE)
    (request,) = server.requests
    assert request["auth"] == "Bearer sk-openai-xyz"
    assert request["json"]["model"] == "tts-1-hd" and request["json"]["voice"] == "shimmer"


def test_rate_and_pitch_reach_the_sound(server):
    voice = load_voice(f"openai-compatible:af_heart@{server.url}")
    slow, fast = voice.speak(LINE, VoiceStyle(rate=0.7)), voice.speak(LINE, VoiceStyle(rate=1.3))
    assert slow.duration > 1.5 * fast.duration
    higher = voice.speak(LINE, VoiceStyle(pitch=3.0))
    # The server was asked to speak slower by the pitch ratio, and the answer played faster by it: the
    # line keeps its length and its pitch rises three semitones.
    assert server.requests[-1]["json"]["speed"] == pytest.approx(2 ** (-3 / 12), abs=1e-3)
    assert higher.duration == pytest.approx(SECONDS_PER_CHAR * len(LINE), abs=0.02)
    assert peak_hz(higher.samples, higher.sample_rate) == pytest.approx(TONE_HZ * 2 ** (3 / 12), rel=0.02)
    louder = voice.speak(LINE, VoiceStyle(energy=1.5))
    assert np.abs(louder.samples).max() == pytest.approx(0.75, abs=0.01)


def test_a_streamed_wav_with_placeholder_sizes_is_read(server):
    server.mode = "streamed"
    audio = load_voice(f"openai-compatible:af_heart@{server.url}").speak(LINE)
    assert audio.duration == pytest.approx(SECONDS_PER_CHAR * len(LINE), abs=0.01)


def test_an_empty_line_asks_nothing(server):
    assert len(load_voice(f"openai-compatible:af_heart@{server.url}").speak("  \n ").samples) == 0
    assert server.requests == []


@pytest.mark.parametrize("mode, words", [
    ("error", r"answered with an error \(500: model crashed at line 3\)"),
    ("html", r"answered with no audio \(text/html: Welcome to nginx!\)"),
    ("denied", r"refused the request \(401: invalid api key\); check STORYAGENT_VOICE_API_KEY"),
    ("junk", r"sent audio that cannot be read"),
])
def test_a_failing_server_is_one_sentence(server, mode, words):
    server.mode = mode
    with pytest.raises(VoiceError, match=words) as info:
        load_voice(f"openai-compatible:af_heart@{server.url}").speak(LINE)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".") and server.url in message


def test_a_server_that_does_not_answer_in_time(server, monkeypatch):
    server.mode = "slow"
    monkeypatch.setenv("STORYAGENT_VOICE_TIMEOUT", "0.3")
    with pytest.raises(VoiceError, match=r"did not answer within 0\.3 s; raise STORYAGENT_VOICE_TIMEOUT"):
        load_voice(f"openai-compatible:af_heart@{server.url}").speak(LINE)


def test_a_wrong_path_and_a_closed_port(server):
    with pytest.raises(VoiceError, match=r"no such endpoint, model or voice \(404: no such route\)"):
        load_voice(f"openai-compatible:af_heart@{server.url}/api").speak(LINE)
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(VoiceError, match="Cannot reach the speech server at http://127.0.0.1"):
        load_voice(f"openai-compatible:af_heart@http://127.0.0.1:{port}").speak(LINE)


def test_a_bad_timeout_setting_is_refused(monkeypatch, server):
    monkeypatch.setenv("STORYAGENT_VOICE_TIMEOUT", "soon")
    with pytest.raises(InputError, match="STORYAGENT_VOICE_TIMEOUT='soon' is not a timeout"):
        load_voice(f"openai-compatible:af_heart@{server.url}")

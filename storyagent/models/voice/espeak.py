"""espeak-ng, the offline floor: no weights, a Debian package, a formant voice that is plainly synthetic
but always intelligible. Run as a program (`--stdout` WAV read back), so nothing is linked."""

from __future__ import annotations

import shutil
import subprocess

from storyagent.errors import InputError
from storyagent.media.audio import Audio
from storyagent.models.voice.config import EspeakConfig, VoiceError
from storyagent.models.voice.sound import decode_wav, silence
from storyagent.models.voice.style import VoiceStyle

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)"
SAMPLE_RATE = 22050
"""espeak-ng's output rate (used only for the empty line, which is never synthesised)."""


def espeak_executable(config: EspeakConfig = EspeakConfig()) -> str | None:
    """The espeak-ng program on PATH, or None."""
    return shutil.which(config.executable)


class EspeakVoice:
    """Narration by espeak-ng: style rate -> words per minute (-s), pitch -> -p, energy -> amplitude (-a)."""

    def __init__(self, config: EspeakConfig = EspeakConfig(), spec: str = "espeak") -> None:
        program = espeak_executable(config)
        if program is None:
            raise InputError(f"--voice {spec} needs espeak-ng, which is not installed; {INSTALL_HINT}, "
                             "or choose another --voice.")
        self.config = config
        self.program = program
        self.spec = spec
        # A wrong voice name is found now, in one sentence, not at the first line of the film.
        probe = self._run(["-v", config.voice, "-q"], "x")
        if probe.returncode != 0:
            raise InputError(f"espeak-ng has no voice {config.voice!r} ({_first_line(probe.stderr)}); "
                             "`espeak-ng --voices` lists them.")

    def command(self, style: VoiceStyle) -> list[str]:
        """The espeak-ng arguments for `style` (text comes on standard input)."""
        c = self.config
        words_per_minute = round(min(max(c.words_per_minute * style.rate, 80), 500))
        pitch = round(min(max(c.pitch + c.pitch_per_semitone * style.pitch, 0), 99))
        amplitude = round(min(max(c.amplitude * style.energy, 0), 200))
        return ["-v", c.voice, "-s", str(words_per_minute), "-p", str(pitch), "-a", str(amplitude), "-b", "1",
                "--stdout", "--stdin"]

    def speak(self, text: str, style: VoiceStyle = VoiceStyle()) -> Audio:
        text = " ".join(text.split())
        if not text:
            return silence(SAMPLE_RATE)
        # "[[...]]" is espeak-ng's phoneme input; narration means the letters.
        result = self._run(self.command(style), text.replace("[[", "[ ["))
        if result.returncode != 0:
            raise VoiceError(f"espeak-ng failed ({_first_line(result.stderr)}); check `espeak-ng --version` "
                             "or choose another --voice.")
        try:
            return decode_wav(result.stdout)
        except ValueError as exc:
            raise VoiceError(f"espeak-ng wrote no usable WAV ({exc}); check `espeak-ng --version`.") from exc

    def _run(self, args: list[str], text: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.program, *args], input=text.encode("utf-8"), capture_output=True,
                                  timeout=300, check=False)
        except subprocess.TimeoutExpired as exc:
            raise VoiceError("espeak-ng did not finish within 300 s; is the line extremely long?") from exc


def _first_line(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return (text.strip().splitlines() or ["no message"])[0][:200]

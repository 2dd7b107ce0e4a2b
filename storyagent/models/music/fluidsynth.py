"""Playing a MIDI score through FluidSynth and a General MIDI SoundFont.

The Debian `fluidsynth` binary renders faster than real time into a raw float file (`-F`), which
is read back exactly (no 16-bit rounding, no clipping before the level is set here). FluidSynth
renders past the last note until its voices fall silent; the score is cut to the film's length and
faded, so its length is exact.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from storyagent.errors import InputError
from storyagent.media.audio import Audio
from storyagent.models.music.config import DEFAULT_SOUNDFONTS, RenderConfig

INSTALL_HINT = "install it with `apt-get install fluidsynth fluid-soundfont-gm`"


def fluidsynth_binary() -> str | None:
    """The `fluidsynth` program on PATH, or None."""
    return shutil.which("fluidsynth")


def find_soundfont(soundfont: Path | None = None) -> Path | None:
    """The SoundFont to play with: the user's when named (None if it does not exist), else the first
    General MIDI font a distribution installs."""
    if soundfont is not None:
        path = Path(soundfont).expanduser()
        return path if path.is_file() else None
    return next((p for p in DEFAULT_SOUNDFONTS if p.is_file()), None)


def is_soundfont(path: Path) -> bool:
    """Whether `path` starts as a SoundFont 2 file does (a RIFF chunk of form `sfbk`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def fluidsynth_unavailable(soundfont: Path | None = None) -> str | None:
    """Why FluidSynth cannot play a score here, in one line; None when it can."""
    if fluidsynth_binary() is None:
        return f"No music: the `fluidsynth` program is not installed; {INSTALL_HINT}, or pass --music none."
    if find_soundfont(soundfont) is None:
        if soundfont is not None:
            return (f"No music: the SoundFont {soundfont} does not exist; name an existing .sf2 file with --soundfont "
                    "or leave it out to use fluid-soundfont-gm.")
        return ("No music: no General MIDI SoundFont found; install one with `apt-get install fluid-soundfont-gm` "
                "or name a .sf2 file with --soundfont.")
    if not is_soundfont(find_soundfont(soundfont)):
        return (f"No music: {find_soundfont(soundfont)} is not a SoundFont 2 (.sf2) file; name another with "
                "--soundfont or install fluid-soundfont-gm.")
    return None


def shape_ends(samples: np.ndarray, sample_rate: int, fade_in: float, fade_out: float) -> np.ndarray:
    """`samples` with a raised-cosine fade-in and fade-out (each at most a third of the length)."""
    n = len(samples)
    out = samples.astype(np.float32, copy=True)
    for seconds, at_start in ((fade_in, True), (fade_out, False)):
        k = min(round(seconds * sample_rate), n // 3)
        if k <= 0:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, k, dtype=np.float64))).astype(np.float32)
        if not at_start:
            ramp = ramp[::-1]
        shape = (k, 1) if out.ndim == 2 else (k,)
        if at_start:
            out[:k] *= ramp.reshape(shape)
        else:
            out[n - k:] *= ramp.reshape(shape)
    return out


def fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    """`samples` cut or padded with silence to exactly `n` frames."""
    if len(samples) >= n:
        return samples[:n]
    pad = np.zeros((n - len(samples), *samples.shape[1:]), samples.dtype)
    return np.concatenate([samples, pad])


def normalise_peak(samples: np.ndarray, peak: float) -> np.ndarray:
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    return samples if top == 0.0 else (samples * (peak / top)).astype(np.float32)


def render_midi(midi: bytes, soundfont: Path, duration: float, sample_rate: int = 48000,
                fade_in: float = 0.0, fade_out: float = 0.0, config: RenderConfig | None = None) -> Audio:
    """Play a Standard MIDI File with FluidSynth: stereo `Audio` of exactly `duration` seconds."""
    config = config or RenderConfig()
    binary = fluidsynth_binary()
    if binary is None:
        raise InputError(f"The `fluidsynth` program is not installed; {INSTALL_HINT}.")
    with tempfile.TemporaryDirectory(prefix="storyagent-score-") as tmp:
        mid, raw = Path(tmp) / "score.mid", Path(tmp) / "score.raw"
        mid.write_bytes(midi)
        # -ni: no shell, no MIDI input; raw little-endian float frames, interleaved stereo.
        cmd = [binary, "-ni", "-q", "-g", f"{config.gain:g}", "-r", str(sample_rate), "-T", "raw", "-O", "float",
               "-E", "little", "-F", str(raw), str(soundfont), str(mid)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=config.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InputError(f"FluidSynth took more than {config.timeout:.0f} s to play the score; try another "
                             "SoundFont or --music none.") from exc
        if done.returncode != 0 or not raw.is_file():
            said = (done.stderr or done.stdout).strip().splitlines()
            raise InputError(f"FluidSynth could not play the score with {soundfont.name}: "
                             f"{said[-1] if said else 'exit code ' + str(done.returncode)}; is it a valid .sf2 file?")
        frames = np.fromfile(raw, dtype="<f4")
    if not np.any(frames):
        # FluidSynth skips a file it cannot read, says so on stderr, and plays the score silently.
        said = (done.stderr or "").strip().splitlines()
        raise InputError(f"FluidSynth played nothing with {soundfont.name}"
                         f"{': ' + said[0] if said else ''}; is it a General MIDI .sf2 file?")
    samples = frames[: len(frames) // 2 * 2].reshape(-1, 2)
    samples = fit_length(samples, round(duration * sample_rate))
    samples = shape_ends(samples, sample_rate, fade_in, fade_out)
    return Audio(normalise_peak(samples, config.peak), sample_rate)

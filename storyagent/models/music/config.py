"""Settings of the score: the composer's defaults, FluidSynth's rendering, a user's track, and the
text-to-music model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Where distributions put a General MIDI SoundFont: Debian/Ubuntu `fluid-soundfont-gm` first, then
# Fedora's and Arch's names for the same font, then MuseScore's (a common second choice).
DEFAULT_SOUNDFONTS: tuple[Path, ...] = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
    Path("/usr/share/sounds/sf2/MuseScore_General.sf2"),
)

TEXT_TO_MUSIC_WEIGHTS = "stable-audio-open-1.0"
"""The registry name of the text-to-music weights `auto` uses when they are cached."""


@dataclass(frozen=True)
class ComposerConfig:
    """How the offline score is written: tempo, loudness and the shape of transitions."""

    base_bpm: float = 96.0
    """Tempo of a neutral shot in beats per minute; a shot's mood moves it up or down."""
    base_velocity: int = 84
    """MIDI velocity of a neutral shot's melody (1..127); the mood and the time of day move it."""
    crossfade: float = 0.6
    """Seconds over which one shot's pad fades out while the next one's fades in."""
    fade_in: float = 0.5
    """Seconds of fade-in at the start of the film."""
    fade_out: float = 1.5
    """Seconds of fade-out at the end of the film (the synthesiser's tails are cut there)."""
    min_beats: int = 2
    """Fewest beats a shot's music has, however short the shot."""


@dataclass(frozen=True)
class RenderConfig:
    """How FluidSynth plays the score."""

    gain: float = 0.5
    """FluidSynth's master gain (`-g`); its output is float, so this only sets the level before
    the peak normalisation below."""
    peak: float = 0.89
    """Peak amplitude the rendered score is scaled to (-1 dBFS); the mix sets the loudness."""
    timeout: float = 300.0
    """Seconds FluidSynth may take before it is given up on."""


@dataclass(frozen=True)
class TrackConfig:
    """How a user's own track is fitted to the film."""

    fade_in: float = 1.0
    """Seconds of fade-in at the start."""
    fade_out: float = 2.0
    """Seconds of fade-out at the end."""
    crossfade: float = 1.0
    """Seconds over which the end of the track overlaps its start where it loops."""
    peak: float = 0.89
    """Peak amplitude a track is scaled down to when it is louder (never scaled up)."""


@dataclass(frozen=True)
class TextToMusicConfig:
    """How the text-to-music model is run (the defaults follow Stable Audio Open's model card)."""

    num_inference_steps: int = 100
    """Denoising steps."""
    guidance_scale: float = 7.0
    """Classifier-free guidance weight."""
    negative_prompt: str = "vocals, singing, speech, low quality, distortion, noise"
    """What the score must not contain: a voice would fight the narration."""
    extra_words: tuple[str, ...] = field(default=("instrumental", "film score", "storybook"))
    """Words added to every prompt."""

"""The film's score: `make_score(script, windows, spec)`.

`spec` is "none", "auto" or the path of the user's own track. "auto" is a text-to-music model
(Stable Audio Open through diffusers) when its weights are cached and no SoundFont is named, else a
score composed from the story (`composer`) and played by FluidSynth with a General MIDI SoundFont
(`fluidsynth`). When neither can be made, `make_score` returns None and `music_unavailable` says
in one line what to install; the film is then made without music.

torch and diffusers are imported only on the text-to-music path.
"""

from __future__ import annotations

from pathlib import Path

from storyagent.errors import InputError
from storyagent.media.audio import Audio
from storyagent.models.music.composer import Score, compose
from storyagent.models.music.config import TEXT_TO_MUSIC_WEIGHTS, ComposerConfig
from storyagent.models.music.fluidsynth import find_soundfont, fluidsynth_unavailable, render_midi
from storyagent.models.music.user_track import load_track
from storyagent.schemas import StoryScript

__all__ = ["Score", "compose", "make_score", "music_engine", "music_unavailable", "parse_music_spec"]


def parse_music_spec(spec: str) -> str:
    """"auto", "none", or the absolute path of an existing audio file; InputError otherwise."""
    text = str(spec).strip()
    if text.lower() in ("auto", "none"):
        return text.lower()
    if not text:
        raise InputError("--music is empty; use auto, none or the path of an audio file.")
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"Music file {text} does not exist; use auto, none or the path of an audio file.")
    if not path.is_file():
        raise InputError(f"Music {text} is not a file; use auto, none or the path of an audio file.")
    return str(path.resolve())


def _text_to_music_cached() -> bool:
    from storyagent.weights import weights_available

    return weights_available(TEXT_TO_MUSIC_WEIGHTS)


def music_engine(spec: str, soundfont: Path | None = None) -> str:
    """What `spec` makes here: "none", "file:PATH", "stable-audio-open-1.0" or "fluidsynth:SOUNDFONT"
    ("none" also when "auto" can make nothing; `music_unavailable` says why)."""
    spec = parse_music_spec(spec)
    if spec == "none":
        return "none"
    if spec != "auto":
        return f"file:{spec}"
    if soundfont is None and _text_to_music_cached():
        return TEXT_TO_MUSIC_WEIGHTS
    if fluidsynth_unavailable(soundfont) is not None:
        return "none"
    return f"fluidsynth:{find_soundfont(soundfont)}"


def music_unavailable(spec: str, soundfont: Path | None = None) -> str | None:
    """Why no score can be made now, in one line saying what to install or pass; None when it can
    (or when no music was asked for)."""
    try:
        spec = parse_music_spec(spec)
    except InputError as exc:
        return str(exc)
    if spec != "auto" or (soundfont is None and _text_to_music_cached()):
        return None
    return fluidsynth_unavailable(soundfont)


def make_score(script: StoryScript, windows: list[tuple[float, float]], spec: str, *,
               soundfont: Path | None = None, seed: int = 0, sample_rate: int = 48000) -> Audio | None:
    """The score of the film: stereo `Audio` lasting `windows[-1][1]` seconds, or None for "none" and
    for "auto" where nothing can play it (see `music_unavailable`).

    `windows` are each shot's (start, end) in the film, in seconds. The same script, windows, seed
    and SoundFont give the same samples.
    """
    spec = parse_music_spec(spec)
    if spec == "none":
        return None
    if not windows:
        raise InputError("The score needs at least one shot window.")
    duration = float(windows[-1][1])
    if spec != "auto":
        return load_track(spec, duration, sample_rate)
    if soundfont is None and _text_to_music_cached():
        from storyagent.models.music.text_to_music import TextToMusic, music_prompt

        return TextToMusic.from_pretrained()(music_prompt(script), duration, seed=seed, sample_rate=sample_rate)
    if fluidsynth_unavailable(soundfont) is not None:
        return None
    score = compose(script, windows, seed=seed)
    config = ComposerConfig()
    return render_midi(score.to_midi(), find_soundfont(soundfont), duration, sample_rate,
                       fade_in=config.fade_in, fade_out=config.fade_out)

"""Tool: the film's sound. Each shot's line spoken, the film's timing, the score, and the mix.

The stems live in the run folder's `audio/` and each is recorded in the manifest with the hash of
what made it, so a resumed run reuses every unchanged one and a redo remakes only what it changed:

- `audio/narration_NN.wav`: shot NN's line, hashed on its text, the voice, the way it is said (the
  reviewer's voice words: `voice_feedback`) and the engine's version;
- `audio/music.wav`: the score, hashed on the story, the shots' windows in the film, the music setting,
  the SoundFont's (or the user's track's) content, and the seed;
- `audio/mix.wav`: the lines over the score, ducked and mastered (`media.mixing.mix`), hashed on the
  stems it is made of and where the lines start.

Timing: a shot lasts as long as its clip or its line plus a breath, whichever is longer (`Timing`); the
clip's last picture is held to fill, so no line is cut mid-word. A longer line therefore moves the
windows of the shots after it, and the score, written to the windows, is made again; a line said
another way in the same time (higher, louder) moves nothing, and the score is kept.

A part the machine cannot make with `auto` (no voice engine, no FluidSynth) is left out: the film is
made without it, one line says what to install, and the manifest's `sound` stage notes it.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from storyagent.environment import without_credentials
from storyagent.hashing import hash_file, hash_json
from storyagent.schemas import Artifact, ShotClip, StoryScript

if TYPE_CHECKING:
    from storyagent.config import RunConfig
    from storyagent.manifest import Manifest
    from storyagent.models.voice import Voice, VoiceStyle
    from storyagent.tools.run import Run

AUDIO_DIR = "audio"
MUSIC = f"{AUDIO_DIR}/music"
MIX = f"{AUDIO_DIR}/mix"
LEAD = 0.15
"""Seconds from a shot's first picture to its first word."""
BREATH = 0.4
"""Seconds after a line's last word before the next shot begins."""
SOUND_VERSION = 1
"""Part of every stem's hash: a change to how the stems are made here makes them again."""


def narration_key(index: int) -> str:
    """Shot `index`'s line in the manifest (`audio/narration_03`); its file adds `.wav`."""
    return f"{AUDIO_DIR}/narration_{index:02d}"


def stem_path(key: str) -> str:
    return key + ".wav"


# ---- the reviewer's words about a line ----------------------------------------------------------

def _voice_redos(manifest: Manifest, shot: int) -> list[str]:
    from storyagent.models.voice import VoiceStyle

    words = [r.get("feedback", "") for r in manifest.redos("story", shot)]
    return [w for w in words if w and VoiceStyle.from_words(w) != VoiceStyle()]


def voice_feedback(manifest: Manifest, shot: int) -> str:
    """The reviewer's words about how shot `shot`'s line is said ("say it slower; happier"), oldest first;
    "" when none. They are the story stage's redos of the shot whose words change the voice (see
    `agents/lines.py`); other words of those redos change nothing here."""
    return "; ".join(_voice_redos(manifest, shot))


def line_style(manifest: Manifest, shot: int) -> VoiceStyle:
    """How shot `shot`'s line is said: each of the reviewer's voice redos applied in turn ("slower" twice is
    slower still)."""
    from storyagent.models.voice import VoiceStyle

    style = VoiceStyle()
    for words in _voice_redos(manifest, shot):
        style = VoiceStyle.from_words(words, base=style)
    return style


# ---- the voice and the lines ----------------------------------------------------------------------

@dataclass
class Parts:
    """What the sound can be made of on this machine, and why a part asked for is missing."""

    voice: Voice | None
    music: str
    """The music setting, or "none" when no score can be made here."""
    notes: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _load_voice(spec: str) -> Voice | None:
    # A voice with a model (Piper, Kokoro) loads once per process, whatever asks for its lines.
    from storyagent.models.voice import load_voice

    return load_voice(spec)


def find_voice(spec: str) -> tuple[Voice | None, str]:
    """The voice `spec` names and, when `auto` finds none here, the one line that says what to install."""
    from storyagent.models.voice import best_voice_spec, voice_status

    if spec.strip().lower() == "auto" and best_voice_spec() == "none":
        fixes = [fix for engine, ok, fix in voice_status() if engine.startswith("espeak") and not ok and fix]
        return None, "No narration voice on this machine, so the film has no narration" + (
            f": {fixes[0].rstrip('.')}." if fixes else "; install espeak-ng (apt install espeak-ng).")
    return _load_voice(spec), ""


def engine_version(voice: Voice) -> str | None:
    """What version of its engine a voice speaks with, when it says (or, for espeak-ng, the program's own
    `--version`): part of each line's hash, so an upgraded engine speaks the lines again."""
    version = getattr(voice, "version", None)
    if version is None and voice.spec.split(":")[0] == "espeak":
        return _espeak_version()
    return None if version is None else str(version)


@functools.lru_cache(maxsize=1)
def _espeak_version() -> str | None:
    import shutil
    import subprocess

    program = shutil.which("espeak-ng")
    if program is None:
        return None
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split("Data at")[0].strip() or None  # "eSpeak NG text-to-speech: 1.51"


def narrate(run: Run, script: StoryScript) -> tuple[dict[int, str], list[int]]:
    """Every shot's line spoken into `audio/narration_NN.wav` (each reused while its text, voice and style are
    unchanged), recorded in the manifest. Returns {shot: its file in the run folder} and the shots spoken
    now; ({}, []) for `--voice none`, or `auto` on a machine with no voice (see `find_voice`)."""
    voice, _ = find_voice(run.config.voice)
    if voice is None:
        return {}, []
    stems, made = _speak(run, script, voice)
    return {i: a.path for i, a in stems.items()}, made


def speaking_voice(run: Run, speaker: str | None, narrator: Voice) -> Voice:
    """The voice of a line said by `speaker`: that character's own voice (its `voice` in the cast), else the
    narrator's. A film whose narrator is `none` is silent: `_speak` is not called at all."""
    if speaker is not None:
        for member in run.config.cast:
            if member.name.casefold() == speaker.casefold() and member.voice is not None:
                own = _load_voice(member.voice)
                if own is not None:
                    return own
    return narrator


def _speak(run: Run, script: StoryScript, voice: Voice) -> tuple[dict[int, Artifact], list[int]]:
    from storyagent.media.audio import write_wav
    from storyagent.media.mixing import trim_silence
    from storyagent.progress import make_progress

    ws = run.ws
    stems: dict[int, Artifact] = {}
    todo = []
    for shot in script.shots:
        style = line_style(run.manifest, shot.index)
        key = narration_key(shot.index)
        says = speaking_voice(run, shot.speaker, voice)
        h = hash_json({"text": shot.narration, "voice": without_credentials(says.spec), "style": asdict(style),
                       "engine": engine_version(says), "sound": SOUND_VERSION})
        if ws.fresh(key, h):
            stems[shot.index] = Artifact.model_validate(ws.manifest.artifact(key))
        else:
            todo.append((shot, says, style, key, h))
    made: list[int] = []
    with make_progress(disable=not run.show_progress) as progress:
        task = progress.add_task("Narration", total=len(script.shots), completed=len(stems), status="")
        for shot, says, style, key, h in todo:
            # The engine's own leading and trailing silence is cut: the film's timing adds its lead and breath.
            audio = trim_silence(says.speak(shot.narration, style))
            write_wav(ws.path(stem_path(key)), audio)
            meta = {"seconds": round(audio.duration, 4), "voice": without_credentials(says.spec),
                    "style": asdict(style), "words": voice_feedback(run.manifest, shot.index)}
            if shot.speaker is not None:
                meta["speaker"] = shot.speaker
            stems[shot.index] = ws.record(key, Artifact(kind="narration", path=stem_path(key), input_hash=h,
                                                        shot=shot.index, meta=meta))
            made.append(shot.index)
            progress.update(task, advance=1, status=f"shot {shot.index}")
        reused = [s.index for s in script.shots if s.index not in made]
        progress.update(task, status="; ".join(part for part in (
            f"made: {', '.join(map(str, made))}" if made else "",
            f"reused: {', '.join(map(str, reused))}" if reused else "") if part))
    return stems, made


# ---- the film's timing ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Where everything sits in the film, in frames at the film's rate and in seconds."""

    fps: float
    title_frames: int
    clip_frames: list[int]
    shot_frames: list[int]
    """Each shot's length: its clip, or its line plus `LEAD` and `BREATH` when longer."""
    lines: list[tuple[float, float] | None]
    """Each shot's line: (start, end) in the film, or None with no voice."""

    @property
    def holds(self) -> list[int]:
        """How many times each shot's last picture is repeated after its clip."""
        return [s - c for s, c in zip(self.shot_frames, self.clip_frames, strict=True)]

    @property
    def windows(self) -> list[tuple[float, float]]:
        """Each shot's (start, end) in the film, in seconds (after the title card)."""
        out, at = [], self.title_frames
        for n in self.shot_frames:
            out.append((at / self.fps, (at + n) / self.fps))
            at += n
        return out

    @property
    def num_frames(self) -> int:
        return self.title_frames + sum(self.shot_frames)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def film_timing(fps: float, title_frames: int, clips: list[ShotClip], line_seconds: list[float | None]) -> Timing:
    """Each shot as long as its clip or its line (plus `LEAD` and `BREATH`), whichever is longer; each line
    starting `LEAD` into its shot."""
    clip_frames = [c.num_frames for c in clips]
    shot_frames = [max(n, math.ceil(round((LEAD + s + BREATH) * fps, 6))) if s is not None else n
                   for n, s in zip(clip_frames, line_seconds, strict=True)]
    at = title_frames
    lines: list[tuple[float, float] | None] = []
    for n, s in zip(shot_frames, line_seconds, strict=True):
        start = at / fps + LEAD
        lines.append((round(start, 6), round(start + s, 6)) if s is not None else None)
        at += n
    return Timing(fps, title_frames, clip_frames, shot_frames, lines)


# ---- the stage ------------------------------------------------------------------------------------

def _import_mixer() -> None:
    import pyloudnorm  # noqa: F401 -- with scipy.signal: about a second of imports

    import scipy.signal  # noqa: F401


def warm_up_sound(cfg: RunConfig) -> None:
    """When the film will have sound, start importing the mixer's libraries (pyloudnorm, scipy.signal) on a
    background thread, so the sound stage finds them loaded instead of waiting for them after the pictures."""
    if cfg.voice.strip().lower() != "none" or cfg.music.strip().lower() != "none":
        threading.Thread(target=_import_mixer, name="storyagent-sound-imports", daemon=True).start()


@dataclass
class Soundtrack:
    """What the sound stage made: the film's timing and its mix (None: a silent film)."""

    timing: Timing
    mix: Artifact | None
    notes: list[str]


def _parts(run: Run) -> Parts:
    from storyagent.models.music import music_unavailable

    cfg = run.config
    voice, note = find_voice(cfg.voice)
    notes = [note] if note else []
    music = cfg.music
    if music.strip().lower() == "auto" and (why := music_unavailable(music, cfg.soundfont)) is not None:
        notes.append(why)
        music = "none"
    return Parts(voice, music, notes)


def make_sound(run: Run, script: StoryScript, clips: list[ShotClip], title_frames: int) -> Soundtrack:
    """The sound stage: the lines, the film's timing, the score and the mix, each reused when fresh."""
    from storyagent.progress import console, make_progress

    ws, cfg = run.ws, run.config
    parts = _parts(run)
    for note in parts.notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    ws.manifest.set_stage("sound", "running")
    stems = _speak(run, script, parts.voice)[0] if parts.voice is not None else {}
    seconds = [float(stems[s.index].meta["seconds"]) if s.index in stems else None for s in script.shots]
    timing = film_timing(cfg.fps, title_frames, clips, seconds)
    recorded = {key: ws.manifest.artifact(key) for key in (MUSIC, MIX)}  # a stem made now is recorded anew
    with make_progress(disable=not run.show_progress) as progress:
        task = progress.add_task("Score and mix", total=2, status="score")
        music = make_music(run, script, timing, parts.music)
        progress.update(task, advance=1, status="mix")
        mix = make_mix(run, timing, [stems.get(s.index) for s in script.shots], music)
        progress.update(task, advance=1, status=", ".join(
            f"{what}: {'none' if a is None else 'reused' if ws.manifest.artifact(key) is recorded[key] else 'made'}"
            for what, key, a in (("score", MUSIC, music), ("mix", MIX, mix))))
    ws.manifest.set_stage("sound", "done", "; ".join(parts.notes) or None)
    return Soundtrack(timing, mix, parts.notes)


@functools.lru_cache(maxsize=8)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    # A SoundFont is ~140 MB: hashed once per process while it is unchanged.
    return hash_file(path)


def content_hash(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _content_hash(str(path), st.st_size, st.st_mtime_ns)


def make_music(run: Run, script: StoryScript, timing: Timing, spec: str) -> Artifact | None:
    """`audio/music.wav`, the score for these windows (reused when the story, the windows, the setting, the
    SoundFont or track and the seed are unchanged); None for no music."""
    from storyagent.media.audio import write_wav
    from storyagent.models.music import make_score, music_engine

    if spec.strip().lower() == "none":
        return None
    cfg, ws = run.config, run.ws
    engine = music_engine(spec, cfg.soundfont)
    if engine == "none":
        return None
    kind, _, source = engine.partition(":")
    windows = [(round(a, 6), round(b, 6)) for a, b in timing.windows]
    seed = run.seed("music", 0)  # one score per film
    h = hash_json({"story": script.model_dump(mode="json"), "windows": windows, "engine": engine,
                   "source": content_hash(source) if kind in ("file", "fluidsynth") else None, "seed": seed,
                   "sound": SOUND_VERSION})
    if ws.fresh(MUSIC, h):
        return Artifact.model_validate(ws.manifest.artifact(MUSIC))
    score = make_score(script, windows, spec, soundfont=cfg.soundfont, seed=seed)
    if score is None:
        return None
    write_wav(ws.path(stem_path(MUSIC)), score)
    return ws.record(MUSIC, Artifact(kind="music", path=stem_path(MUSIC), input_hash=h,
                                     meta={"seconds": round(score.duration, 4), "engine": engine, "seed": seed}))


def line_gain_db(stem: Artifact) -> float:
    """How much louder than the other lines a line is mixed: its style's energy ("louder", "softer"), which
    the mix would otherwise level away with every line brought to one loudness."""
    energy = float(stem.meta.get("style", {}).get("energy", 1.0))  # type: ignore[union-attr]
    return round(20 * math.log10(energy), 3) if energy > 0 else 0.0


def make_mix(run: Run, timing: Timing, lines: list[Artifact | None], music: Artifact | None) -> Artifact | None:
    """`audio/mix.wav`: the lines at their starts over the score, ducked and mastered (`media.mixing.mix`),
    as long as the film; None when there is neither. Reused while its stems and their places are unchanged."""
    from storyagent.media.audio import read_audio, write_wav
    from storyagent.media.mixing import Line, loudness, mix, true_peak

    ws = run.ws
    placed = [(a, t) for a, t in zip(lines, timing.lines, strict=True) if a is not None and t is not None]
    if not placed and music is None:
        return None
    stems = [(a.meta["file_hashes"][a.path], t[0], line_gain_db(a)) for a, t in placed]
    h = hash_json({"lines": stems, "music": music.meta["file_hashes"][music.path] if music else None,
                   "frames": timing.num_frames, "fps": timing.fps, "sound": SOUND_VERSION})
    if ws.fresh(MIX, h):
        return Artifact.model_validate(ws.manifest.artifact(MIX))
    # The stems as written (16-bit), so a resumed run mixes the very samples a first run did.
    result = mix(timing.duration, [Line(read_audio(ws.path(a.path)), t[0], line_gain_db(a)) for a, t in placed],
                 read_audio(ws.path(music.path)) if music else None)
    assert result is not None
    write_wav(ws.path(stem_path(MIX)), result.audio)
    margins = [round(v - m, 2) if math.isfinite(m) else None for v, m in result.levels()]
    return ws.record(MIX, Artifact(kind="mix", path=stem_path(MIX), input_hash=h, meta={
        "seconds": round(result.audio.duration, 4), "master_gain_db": round(result.master_gain_db, 3),
        "music_under_voice_db": margins, "lufs": round(loudness(result.audio), 2),
        "true_peak_dbtp": round(true_peak(result.audio), 2)}))

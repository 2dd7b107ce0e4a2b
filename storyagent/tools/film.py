"""Tool: the final film, a title card followed by every shot clip in order, with its sound and subtitles.

Before the film, the sound stage (`tools/sound.py`) speaks the lines, sets the film's timing and mixes
the soundtrack. A shot whose line outlasts its clip holds the clip's last picture until the line and a
breath are over. The pictures are joined by copying the clips' packets (the held pictures are encoded
alone and joined the same way); clips made otherwise are decoded and encoded again, a clip of another
size letterboxed into the film's frame (a model's own aspect kept, nothing squashed or cropped). The mix goes
beside them as AAC, and `film.srt` / `film.vtt` beside the film carry one cue per shot, timed to its
line.

The run's driver decides whether the film is stale and records it; the film itself is made by the
run's executor (`make_film`: here, or as one task on a cluster's worker in a batch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel

from storyagent.fileio import atomic_write_text
from storyagent.hashing import hash_json
from storyagent.media import (
    CannotJoin,
    decode_video,
    join_videos,
    letterbox,
    load_font,
    probe_video,
    read_audio,
    read_video,
    wrap_text,
    write_video,
)
from storyagent.schemas import Artifact, Film, ShotClip, StoryScript
from storyagent.tools.run import made_once
from storyagent.tools.sound import LEAD, Timing, make_sound

if TYPE_CHECKING:
    from storyagent.tools.run import Run

FILM = "film.mp4"
SUBTITLES = {"srt": "film.srt", "vtt": "film.vtt"}
"""Soft subtitles beside the film, by format; each is recorded under the key `subtitles_<format>`."""
TITLE_SECONDS = 1.5
FILM_RESOURCES = {"num_cpus": 1}
"""Joining clips copies their packets; a model's clips of another size are decoded and encoded again: CPU work."""


class FilmOrder(BaseModel):
    """The film's work as plain data: its title card's words and the clips in order."""

    title: str
    logline: str
    clips: list[str]
    """Each clip's path in the run folder, in the film's order."""
    holds: list[int] = []
    """How many times each clip's last picture is repeated after it (its line is still being said)."""
    audio: str | None = None
    """The soundtrack (`audio/mix.wav`) in the run folder; None: a silent film."""
    input_hash: str


def assemble_film(run: Run, script: StoryScript, clips: list[ShotClip]) -> Film:
    ws = run.ws
    sound = make_sound(run, script, clips, title_frames(run.config.fps))
    write_subtitles(run, script, sound.timing)
    mix = sound.mix
    h = hash_json({"clips": [c.input_hash for c in clips], "title": script.title, "logline": script.logline,
                   "holds": sound.timing.holds, "audio": mix.meta["file_hashes"][mix.path] if mix else None})
    if ws.fresh("film", h):
        return Film.model_validate(ws.manifest.artifact("film"))
    ws.manifest.set_stage("film", "running")
    order = FilmOrder(title=script.title, logline=script.logline, clips=[c.path for c in clips],
                      holds=sound.timing.holds, audio=mix.path if mix else None, input_hash=h)
    film = ws.record("film", run.executor.call(run, make_film, order, FILM_RESOURCES))
    ws.manifest.set_stage("film", "done")
    return film


def title_frames(fps: float) -> int:
    return round(TITLE_SECONDS * fps)


def make_film(run: Run, order: FilmOrder) -> Film:
    """Write `film.mp4` (once: `made_once`) and return its record, for the caller to record."""
    ws, cfg = run.ws, run.config
    holds = order.holds or [0] * len(order.clips)

    def make() -> Film:
        frames = title_card(order.title, order.logline, cfg.width, cfg.height, title_frames(cfg.fps))
        audio = read_audio(ws.path(order.audio)) if order.audio else None
        try:
            # The clips follow the title card as they are encoded: nothing decoded, nothing encoded twice;
            # a held picture is encoded on its own, as the title card is.
            parts: list[object] = []
            for clip, hold in zip(order.clips, holds, strict=True):
                parts.append(ws.path(clip))
                if hold:
                    parts.append([last_frame(ws.path(clip))] * hold)
            num_frames = join_videos(ws.path(FILM), frames, parts, cfg.fps, audio=audio)  # type: ignore[arg-type]
        except CannotJoin:
            # A model's clips (another size or frame rate, other encoder settings) are decoded and re-encoded.
            for clip, hold in zip(order.clips, holds, strict=True):
                shot_frames, _ = read_video(ws.path(clip), max_frames=10_000)
                # A model may animate at its own size and aspect; the film has one size, so a clip of
                # another shape is letterboxed into it (never squashed, never cropped).
                frames.extend(letterbox(f, cfg.width, cfg.height) for f in shot_frames)
                frames.extend([frames[-1]] * hold)
            write_video(ws.path(FILM), frames, cfg.fps, audio=audio)
            num_frames = len(frames)
        return Film(path=FILM, input_hash=order.input_hash, num_frames=num_frames, fps=cfg.fps,
                    meta={"audio": order.audio is not None, "seconds": round(num_frames / cfg.fps, 4),
                          "subtitles": list(SUBTITLES.values())})

    return made_once(run, "film", order.input_hash, Film, make)


def last_frame(path: Path) -> np.ndarray:
    count, _ = probe_video(path)
    return decode_video(path, {count - 1})[count - 1]


# ---- subtitles ------------------------------------------------------------------------------------

def subtitle_cues(script: StoryScript, timing: Timing) -> list[tuple[float, float, str]]:
    """One cue per shot: (start, end, text), from its line's first word to its last (no voice: the shot's
    window after the lead), always inside the shot's window."""
    cues = []
    for shot, line, (start, end) in zip(script.shots, timing.lines, timing.windows, strict=True):
        a, b = line if line is not None else (start + min(LEAD, (end - start) / 4), end)
        # "-->" ends a cue's timing line and a blank line ends the cue: neither may appear in its text.
        text = " ".join(shot.narration.replace("-->", "->").split())
        cues.append((round(a, 3), round(min(b, end), 3), text))
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def srt_text(cues: list[tuple[float, float, str]]) -> str:
    return "".join(f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, 1))


def vtt_text(cues: list[tuple[float, float, str]]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{text}\n\n" for a, b, text in cues)


def write_subtitles(run: Run, script: StoryScript, timing: Timing) -> None:
    """`film.srt` and `film.vtt` beside the film, each recorded (and rewritten only when its cues change)."""
    ws = run.ws
    cues = subtitle_cues(script, timing)
    for fmt, rel in SUBTITLES.items():
        key, h = f"subtitles_{fmt}", hash_json({"cues": cues, "format": fmt})
        if ws.fresh(key, h):
            continue
        atomic_write_text(ws.path(rel), (srt_text if fmt == "srt" else vtt_text)(cues))
        ws.record(key, Artifact(kind="subtitles", path=rel, input_hash=h, meta={"cues": len(cues)}))


def title_card(title: str, logline: str, width: int, height: int, n: int) -> list[np.ndarray]:
    img = Image.new("RGB", (width, height), (18, 20, 30))
    draw = ImageDraw.Draw(img)
    big, small = load_font(max(14, height // 11)), load_font(max(10, height // 22))
    y = height * 0.3
    for font, text, colour in ((big, title, (250, 240, 220)), (small, logline, (190, 190, 200))):
        for line in wrap_text(draw, text, font, int(width * 0.85))[:3]:
            w = draw.textlength(line, font=font)
            draw.text(((width - w) / 2, y), line, font=font, fill=colour)
            y += font.size * 1.3
        y += height * 0.05
    card = np.asarray(img)
    # Fade in from black over the first half of the card.
    ramp = np.clip(np.arange(n) / max(1, n // 2), 0, 1)
    return [(card * r).astype(np.uint8) for r in ramp]

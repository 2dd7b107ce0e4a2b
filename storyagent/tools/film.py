"""Tool: the final film, a title card followed by every shot clip in order.

The run's driver decides whether the film is stale and records it; the film itself is made by the
run's executor (`make_film`: here, or as one task on a cluster's worker in a batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel

from storyagent.hashing import hash_json
from storyagent.media import CannotJoin, join_videos, load_font, read_video, wrap_text, write_video
from storyagent.schemas import Film, ShotClip, StoryScript
from storyagent.tools.run import made_once

if TYPE_CHECKING:
    from storyagent.tools.run import Run

FILM = "film.mp4"
TITLE_SECONDS = 1.5
FILM_RESOURCES = {"num_cpus": 1}
"""Joining clips copies their packets; a model's clips of another size are decoded and encoded again: CPU work."""


class FilmOrder(BaseModel):
    """The film's work as plain data: its title card's words and the clips in order."""

    title: str
    logline: str
    clips: list[str]
    """Each clip's path in the run folder, in the film's order."""
    input_hash: str


def assemble_film(run: Run, script: StoryScript, clips: list[ShotClip]) -> Film:
    ws = run.ws
    h = hash_json({"clips": [c.input_hash for c in clips], "title": script.title, "logline": script.logline})
    if ws.fresh("film", h):
        return Film.model_validate(ws.manifest.artifact("film"))
    ws.manifest.set_stage("film", "running")
    order = FilmOrder(title=script.title, logline=script.logline, clips=[c.path for c in clips], input_hash=h)
    film = ws.record("film", run.executor.call(run, make_film, order, FILM_RESOURCES))
    ws.manifest.set_stage("film", "done")
    return film


def make_film(run: Run, order: FilmOrder) -> Film:
    """Write `film.mp4` (once: `made_once`) and return its record, for the caller to record."""
    ws, cfg = run.ws, run.config

    def make() -> Film:
        frames = title_card(order.title, order.logline, cfg.width, cfg.height, round(TITLE_SECONDS * cfg.fps))
        try:
            # The clips follow the title card as they are encoded: nothing decoded, nothing encoded twice.
            num_frames = join_videos(ws.path(FILM), frames, [ws.path(c) for c in order.clips], cfg.fps)
        except CannotJoin:
            # A model's clips (another size or frame rate, other encoder settings) are decoded and re-encoded.
            for clip in order.clips:
                shot_frames, _ = read_video(ws.path(clip), max_frames=10_000)
                # A model may animate at its own resolution; the film has one size.
                frames.extend(f if f.shape[:2] == (cfg.height, cfg.width) else
                              cv2.resize(f, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA) for f in shot_frames)
            write_video(ws.path(FILM), frames, cfg.fps)
            num_frames = len(frames)
        return Film(path=FILM, input_hash=order.input_hash, num_frames=num_frames, fps=cfg.fps)

    return made_once(run, "film", order.input_hash, Film, make)


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

"""Tool: the final film, a title card followed by every shot clip in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw

from storyagent.hashing import hash_json
from storyagent.media import CannotJoin, join_videos, load_font, read_video, wrap_text, write_video
from storyagent.schemas import Film, ShotClip, StoryScript

if TYPE_CHECKING:
    from storyagent.tools.run import Run

FILM = "film.mp4"
TITLE_SECONDS = 1.5


def assemble_film(run: Run, script: StoryScript, clips: list[ShotClip]) -> Film:
    ws, cfg = run.ws, run.config
    h = hash_json({"clips": [c.input_hash for c in clips], "title": script.title, "logline": script.logline})
    if ws.fresh("film", h):
        return Film.model_validate(ws.manifest.artifact("film"))
    ws.manifest.set_stage("film", "running")
    frames = title_card(script.title, script.logline, cfg.width, cfg.height, round(TITLE_SECONDS * cfg.fps))
    try:
        # The clips follow the title card as they are encoded: nothing decoded, nothing encoded twice.
        num_frames = join_videos(ws.path(FILM), frames, [ws.path(c.path) for c in clips], cfg.fps)
    except CannotJoin:
        # A model's clips (another size or frame rate, other encoder settings) are decoded and re-encoded.
        for clip in clips:
            shot_frames, _ = read_video(ws.path(clip.path), max_frames=10_000)
            # A model may animate at its own resolution; the film has one size.
            frames.extend(f if f.shape[:2] == (cfg.height, cfg.width) else
                          cv2.resize(f, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA) for f in shot_frames)
        write_video(ws.path(FILM), frames, cfg.fps)
        num_frames = len(frames)
    film = ws.record("film", Film(path=FILM, input_hash=h, num_frames=num_frames, fps=cfg.fps))
    ws.manifest.set_stage("film", "done")
    return film


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

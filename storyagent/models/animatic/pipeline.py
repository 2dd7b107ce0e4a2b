"""The animatic backend: the user's real subject composited into procedural scenes.

A previsualisation, honest about what it is: every pixel of the subject comes from the
reference media (so it is the same character in every shot), the background is drawn from the
shot's text, the camera moves as the shot says, and the narration is burnt in as a subtitle.
Where the subject and the subtitles go is decided by `layout.plan_shot`, and drawn exactly there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image, ImageDraw

from storyagent.media import ReferenceMedia, load_font, subject_cutout, wrap_text
from storyagent.models.animatic.backgrounds import SceneSpec, draw_background
from storyagent.models.animatic.config import AnimaticConfig
from storyagent.models.animatic.layout import Box, ShotLayout, plan_shot, subtitle_font_size
from storyagent.schemas import Shot, ShotType

CANVAS_MARGIN = 1.3  # the scene is drawn this much larger than the frame, room for the camera to move


@dataclass
class SubjectSprites:
    """The subject cut out of each reference frame, as RGBA crops (alpha = mask)."""

    sprites: list[np.ndarray]
    """One h×w×4 uint8 crop per reference frame."""

    @classmethod
    def from_reference(cls, ref: ReferenceMedia) -> SubjectSprites:
        return cls([subject_cutout(f, m) for f, m in zip(ref.frames, ref.masks)])

    @property
    def max_aspect(self) -> float:
        """Width/height of the widest sprite: the layout sizes the subject's box for it."""
        return max(s.shape[1] / max(1, s.shape[0]) for s in self.sprites)


@dataclass
class ShotRender:
    """One rendered shot."""

    frames: list[np.ndarray]
    """The clip's frames, H×W×3 uint8, subtitles burnt in when asked for."""
    storyboard: np.ndarray
    """The first frame without subtitle: the shot's storyboard picture."""
    storyboard_mask: np.ndarray
    """Where the subject is in the storyboard picture (bool H×W)."""
    layouts: list[ShotLayout] | None = None
    """The layout of every rendered frame (subject box, subtitle band, camera)."""
    masks: list[np.ndarray] | None = None
    """Where the subject is in every frame (bool H×W)."""


class AnimaticPipeline:
    """Renders one shot: `AnimaticPipeline(config)(shot, sprites, seed) -> ShotRender`."""

    def __init__(self, config: AnimaticConfig | None = None) -> None:
        self.config = config or AnimaticConfig()

    def clip_length(self, shot: Shot) -> int:
        return max(2, round(shot.duration * self.config.fps))

    def layout(self, shot: Shot, sprites: SubjectSprites, seed: int = 0,
               num_frames: int | None = None) -> list[ShotLayout]:
        """The per-frame layout the render uses. A storyboard (`num_frames=1`) is laid out as the
        clip's first frame, so the storyboard's subject mask matches the clip."""
        cfg = self.config
        n = self.clip_length(shot) if num_frames in (None, 1) else num_frames
        return plan_shot(shot, n, cfg.width, cfg.height, sprites.max_aspect, fps=cfg.fps, seed=seed)

    def __call__(self, shot: Shot, sprites: SubjectSprites, seed: int = 0, num_frames: int | None = None,
                 motion_seed: int | None = None) -> ShotRender:
        """Render `shot`; `num_frames=1` renders only the storyboard picture (the clip's first frame).

        `seed` draws the scene and lays the shot out; `motion_seed` (a clip's new take) retimes the
        subject's motion along the same path, so the first frame stays the storyboard picture."""
        cfg = self.config
        W, H = cfg.width, cfg.height
        layouts = self.layout(shot, sprites, seed, num_frames)[: 1 if num_frames == 1 else None]
        if motion_seed is not None:
            layouts = retime(layouts, motion_seed)
        scene = SceneSpec.from_text(shot.background)

        # The scene canvas, larger than the frame so the camera can move over it.
        cw, ch = _even(W * CANVAS_MARGIN), _even(H * CANVAS_MARGIN)
        background = draw_background(shot.background, cw, ch, seed)
        to_rest = np.array([[1.0, 0.0, -(cw - W) / 2], [0.0, 1.0, -(ch - H) / 2], [0.0, 0.0, 1.0]], np.float32)
        tint = np.array(scene.tint if scene.place != "space" else (0.9, 0.9, 1.0), np.float32)
        tinted = [_tint(s, tint) for s in sprites.sprites]
        subtitle = _subtitle_layer(shot.narration, W, H, layouts[0].subtitle_box) if cfg.subtitles else None
        shadow = ShotType(shot.shot_type) != ShotType.close_up
        frames: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        storyboard: np.ndarray | None = None
        for t, lay in enumerate(layouts):
            camera = (np.vstack([lay.camera, [0.0, 0.0, 1.0]]) @ to_rest)[:2]
            frame = cv2.warpAffine(background, camera, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            sprite = tinted[int(t / cfg.fps * cfg.sprite_fps) % len(tinted)]
            alpha = _paste_in_box(frame, sprite[:, ::-1] if lay.flipped else sprite, lay.subject_box, shadow)
            if storyboard is None:
                storyboard = frame.copy()
            masks.append(alpha > 0.5)
            frames.append(_over(frame, subtitle) if subtitle is not None else frame)
        assert storyboard is not None
        return ShotRender(frames=frames, storyboard=storyboard, storyboard_mask=masks[0], layouts=layouts, masks=masks)


def retime(layouts: list[ShotLayout], motion_seed: int) -> list[ShotLayout]:
    """The subject's path at another tempo: the first and last frames stay, the frames between follow
    the path earlier or later (eased by a seeded sine), the camera as it was."""
    n = len(layouts)
    if n < 3:
        return layouts
    rng = np.random.default_rng(motion_seed)
    amount = rng.uniform(0.35, 0.7) * rng.choice((-1.0, 1.0))  # |amount| < 1 keeps time running forwards
    out = [layouts[0]]
    for t in range(1, n):
        u = t / (n - 1)
        w = (u + amount * math.sin(2 * math.pi * u) / (2 * math.pi)) * (n - 1)
        i = min(int(w), n - 2)
        f = w - i
        a, b = layouts[i], layouts[i + 1]
        box = tuple((1 - f) * p + f * q for p, q in zip(a.subject_box, b.subject_box))
        out.append(replace(layouts[t], subject_box=box, flipped=(a if f < 0.5 else b).flipped))
    return out


def _even(x: float) -> int:
    return int(math.ceil(x / 2) * 2)


def _tint(sprite: np.ndarray, tint: np.ndarray) -> np.ndarray:
    rgb = np.clip(sprite[..., :3].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return np.dstack([rgb, sprite[..., 3]])


def _paste_in_box(frame: np.ndarray, sprite: np.ndarray, box: Box, shadow: bool) -> np.ndarray:
    """Scale `sprite` to the box's height, centre it in the box and alpha-composite it; returns its alpha (H×W).

    The pasted pixels stay inside the box (rounded inwards); what falls outside the frame is clipped.
    """
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = box
    sh, sw = sprite.shape[:2]
    th = max(1, math.floor(y1 - y0))
    tw = max(1, min(math.floor(x1 - x0), round(sw * th / sh)))
    px, py = math.ceil((x0 + x1 - tw) / 2 - 1e-6), math.ceil(y0 - 1e-6)
    scaled = cv2.resize(np.ascontiguousarray(sprite), (tw, th),
                        interpolation=cv2.INTER_AREA if th < sh else cv2.INTER_LINEAR)
    if shadow and py + th < H - 2:
        # A soft contact shadow grounds the subject; skipped when its feet are off the frame.
        _shadow(frame, px + tw / 2, py + th - 2, max(4.0, tw / 3))
    alpha_out = np.zeros((H, W), np.float32)
    cx0, cy0, cx1, cy1 = max(0, px), max(0, py), min(W, px + tw), min(H, py + th)
    if cx1 <= cx0 or cy1 <= cy0:
        return alpha_out
    crop = scaled[cy0 - py:cy1 - py, cx0 - px:cx1 - px]
    a = crop[..., 3:4].astype(np.float32) / 255.0
    region = frame[cy0:cy1, cx0:cx1].astype(np.float32)
    frame[cy0:cy1, cx0:cx1] = (region * (1 - a) + crop[..., :3].astype(np.float32) * a).astype(np.uint8)
    alpha_out[cy0:cy1, cx0:cx1] = a[..., 0]
    return alpha_out


def _shadow(canvas: np.ndarray, cx: float, cy: float, rx: float) -> None:
    ry = max(2.0, rx / 5)
    x0, y0 = int(max(0, cx - 1.5 * rx)), int(max(0, cy - 3 * ry))
    x1, y1 = int(min(canvas.shape[1], cx + 1.5 * rx)), int(min(canvas.shape[0], cy + 3 * ry))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    shade = 1.0 - 0.35 * np.exp(-d * 1.5)[..., None]
    canvas[y0:y1, x0:x1] = (canvas[y0:y1, x0:x1].astype(np.float32) * shade).astype(np.uint8)


def _subtitle_layer(text: str, W: int, H: int, box: Box) -> np.ndarray:
    """An RGBA overlay with the narration wrapped in at most two lines at the bottom of `box`, outlined."""
    size = subtitle_font_size(H)
    font = load_font(size)
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, _, x1, y1 = box
    lines = wrap_text(draw, text, font, int((x1 - x0) * 0.9))
    if len(lines) > 2:
        lines = lines[:2]
        lines[1] = lines[1][: max(1, len(lines[1]) - 1)] + "…"
    line_h = int(size * 1.3)
    y = y1 - 10 - line_h * len(lines)
    for line in lines:
        w = draw.textlength(line, font=font)
        draw.text((x0 + (x1 - x0 - w) / 2, y), line, font=font, fill=(255, 255, 255, 255),
                  stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0, 255))
        y += line_h
    return np.asarray(layer)


def _over(frame: np.ndarray, layer: np.ndarray) -> np.ndarray:
    a = layer[..., 3:4].astype(np.float32) / 255.0
    return (frame.astype(np.float32) * (1 - a) + layer[..., :3].astype(np.float32) * a).astype(np.uint8)

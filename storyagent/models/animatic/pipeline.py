"""The animatic backend: the user's real subject composited into procedural scenes.

A previsualisation, honest about what it is: every pixel of the subject comes from the
reference media (so it is the same character in every shot), the background is drawn from the
shot's text, the camera moves as the shot says, and the narration is burnt in as a subtitle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from storyagent.media import ReferenceMedia, load_font, subject_cutout, wrap_text
from storyagent.models.animatic.backgrounds import SceneSpec, draw_background, stable_seed
from storyagent.models.animatic.config import AnimaticConfig
from storyagent.schemas import CameraMotion, Shot, ShotType

# Subject height as a fraction of the frame height, per shot type.
SUBJECT_HEIGHT = {ShotType.wide: 0.42, ShotType.medium: 0.68, ShotType.close_up: 1.1}
CANVAS_MARGIN = 1.3  # the scene is drawn this much larger than the frame, room for the camera to move
CAMERA_TRAVEL = 0.1  # pans and tilts travel this fraction of the frame size
ZOOM_RANGE = 1.25


@dataclass
class SubjectSprites:
    """The subject cut out of each reference frame, as RGBA crops (alpha = mask)."""

    sprites: list[np.ndarray]
    """One h×w×4 uint8 crop per reference frame."""

    @classmethod
    def from_reference(cls, ref: ReferenceMedia) -> SubjectSprites:
        return cls([subject_cutout(f, m) for f, m in zip(ref.frames, ref.masks)])


@dataclass
class ShotRender:
    """One rendered shot."""

    frames: list[np.ndarray]
    """The clip's frames, H×W×3 uint8, subtitles burnt in when asked for."""
    storyboard: np.ndarray
    """The first frame without subtitle: the shot's storyboard picture."""
    storyboard_mask: np.ndarray
    """Where the subject is in the storyboard picture (bool H×W)."""


class AnimaticPipeline:
    """Renders one shot: `AnimaticPipeline(config)(shot, sprites, seed) -> ShotRender`."""

    def __init__(self, config: AnimaticConfig | None = None) -> None:
        self.config = config or AnimaticConfig()

    def __call__(self, shot: Shot, sprites: SubjectSprites, seed: int = 0, num_frames: int | None = None) -> ShotRender:
        """Render `shot`; `num_frames=1` renders only the storyboard picture."""
        cfg = self.config
        W, H = cfg.width, cfg.height
        n = num_frames or max(2, round(shot.duration * cfg.fps))
        scene = SceneSpec.from_text(shot.background)

        # 1. The scene canvas, larger than the frame so the camera can move over it.
        cw, ch = _even(W * CANVAS_MARGIN), _even(H * CANVAS_MARGIN)
        background = draw_background(shot.background, cw, ch, seed)
        ox, oy = (cw - W) / 2, (ch - H) / 2  # where the resting camera's frame sits on the canvas

        # 2. The subject's size and resting place, in canvas pixels, from shot type and region.
        target_h = SUBJECT_HEIGHT[ShotType(shot.shot_type)] * H
        cx = ox + shot.subject_region.center[0] * W
        if ShotType(shot.shot_type) == ShotType.close_up:
            top = oy + 0.06 * H  # a close-up frames the head; the body runs off the bottom
            base_y = top + target_h
        else:
            base_y = oy + min(0.97, shot.subject_region.y + shot.subject_region.h) * H
        motion = _subject_motion(shot.subject_action, n, cfg.fps, stable_seed(shot.index, seed))
        tint = np.array(scene.tint if scene.place != "space" else (0.9, 0.9, 1.0), np.float32)
        scaled = [_scale_sprite(s, target_h, tint) for s in sprites.sprites]

        # 3. Camera path: one affine canvas→frame transform per frame.
        cameras = _camera_path(CameraMotion(shot.camera_motion), n, W, H, ox, oy,
                               focus=(cx - ox, base_y - oy - target_h / 2))

        subtitle = _subtitle_layer(shot.narration, W, H) if cfg.subtitles else None
        frames: list[np.ndarray] = []
        first, first_mask = None, None
        for t in range(n):
            # 4. Composite the subject at this frame's place, then film it with the camera.
            sprite = scaled[int(t / cfg.fps * cfg.sprite_fps) % len(scaled)]
            dx, dy, flip = motion[t]
            if flip:
                sprite = sprite[:, ::-1]
            canvas = background.copy()
            alpha = np.zeros((ch, cw), np.float32)
            _paste(canvas, alpha, sprite, x=cx + dx * W - sprite.shape[1] / 2, y=base_y + dy * H - sprite.shape[0])
            frame = cv2.warpAffine(canvas, cameras[t], (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            if t == 0:
                first = frame.copy()
                first_mask = cv2.warpAffine(alpha, cameras[t], (W, H), flags=cv2.INTER_LINEAR) > 0.5
            if subtitle is not None:
                frame = _over(frame, subtitle)
            frames.append(frame)
        assert first is not None and first_mask is not None
        return ShotRender(frames=frames, storyboard=first, storyboard_mask=first_mask)


def _even(x: float) -> int:
    return int(math.ceil(x / 2) * 2)


def _scale_sprite(sprite: np.ndarray, target_h: float, tint: np.ndarray) -> np.ndarray:
    h, w = sprite.shape[:2]
    s = target_h / h
    out = cv2.resize(sprite, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    rgb = np.clip(out[..., :3].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return np.dstack([rgb, out[..., 3]])


def _paste(canvas: np.ndarray, alpha_acc: np.ndarray, sprite: np.ndarray, x: float, y: float) -> None:
    """Alpha-composite `sprite` onto `canvas` with its top-left corner at (x, y), clipped."""
    ch, cw = canvas.shape[:2]
    sh, sw = sprite.shape[:2]
    x0, y0 = round(x), round(y)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(cw, x0 + sw), min(ch, y0 + sh)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    crop = sprite[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    a = crop[..., 3:4].astype(np.float32) / 255.0
    # A soft contact shadow grounds the subject; skipped when its feet are off the canvas.
    if y0 + sh < ch - 2:
        _shadow(canvas, x0 + sw / 2, y0 + sh - 2, max(4.0, sw / 3))
    region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = (region * (1 - a) + crop[..., :3].astype(np.float32) * a).astype(np.uint8)
    alpha_acc[cy0:cy1, cx0:cx1] = np.maximum(alpha_acc[cy0:cy1, cx0:cx1], a[..., 0])


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


def _subject_motion(action: str, n: int, fps: float, seed: int) -> list[tuple[float, float, bool]]:
    """Per-frame (dx, dy, flipped) offsets as fractions of the frame: a gentle, action-aware motion."""
    words = action.lower()
    rng = np.random.default_rng(seed)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    travel = 0.18 if any(k in words for k in ("walk", "run", "hurr", "set", "arriv", "explor", "search", "home")) else 0.03
    hop = 0.08 if any(k in words for k in ("jump", "hop", "play")) else 0.015
    out = []
    for t in range(n):
        u = t / max(n - 1, 1)
        dx = direction * travel * (u - 0.5)
        phase = 2 * math.pi * t / fps
        dy = -abs(math.sin(phase * 1.2)) * hop if hop > 0.05 else -hop * (0.5 + 0.5 * math.sin(phase * 2))
        out.append((dx, dy, direction < 0 and travel > 0.05))
    return out


def _camera_path(motion: CameraMotion, n: int, W: int, H: int, ox: float, oy: float,
                 focus: tuple[float, float]) -> list[np.ndarray]:
    """Affine maps canvas → frame for each frame; eased so moves start and end softly."""
    mats = []
    for t in range(n):
        u = t / max(n - 1, 1)
        e = 0.5 - 0.5 * math.cos(math.pi * u)
        px = py = 0.0
        zoom = 1.0
        if motion == CameraMotion.pan_left:
            px = CAMERA_TRAVEL * W * (0.5 - e)
        elif motion == CameraMotion.pan_right:
            px = CAMERA_TRAVEL * W * (e - 0.5)
        elif motion == CameraMotion.tilt_up:
            py = CAMERA_TRAVEL * H * (0.5 - e)
        elif motion == CameraMotion.tilt_down:
            py = CAMERA_TRAVEL * H * (e - 0.5)
        elif motion == CameraMotion.zoom_in:
            zoom = 1.0 + (ZOOM_RANGE - 1.0) * e
        elif motion == CameraMotion.zoom_out:
            zoom = ZOOM_RANGE - (ZOOM_RANGE - 1.0) * e
        # Zoom about the subject (clamped so the frame stays on the canvas), then shift for pan/tilt.
        fx, fy = focus
        m = np.array([[zoom, 0.0, 0.0], [0.0, zoom, 0.0]], np.float32)
        m[0, 2] = -(ox + px) * zoom + fx * (1 - zoom)
        m[1, 2] = -(oy + py) * zoom + fy * (1 - zoom)
        mats.append(m)
    return mats


def _subtitle_layer(text: str, W: int, H: int) -> np.ndarray:
    """An RGBA overlay with the narration wrapped in at most two lines, outlined for legibility."""
    size = max(12, H // 18)
    font = load_font(size)
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    lines = wrap_text(draw, text, font, int(W * 0.9))
    if len(lines) > 2:
        lines = lines[:2]
        lines[1] = lines[1][: max(1, len(lines[1]) - 1)] + "…"
    line_h = int(size * 1.3)
    y = H - 10 - line_h * len(lines)
    for line in lines:
        w = draw.textlength(line, font=font)
        draw.text(((W - w) / 2, y), line, font=font, fill=(255, 255, 255, 255),
                  stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0, 255))
        y += line_h
    return np.asarray(layer)


def _over(frame: np.ndarray, layer: np.ndarray) -> np.ndarray:
    a = layer[..., 3:4].astype(np.float32) / 255.0
    return (frame.astype(np.float32) * (1 - a) + layer[..., :3].astype(np.float32) * a).astype(np.uint8)

"""Where things go on screen in an animatic shot: the subject's box and the subtitle band, per frame.

A pure function of the shot, so a test of `shot_layout` is a test of the picture: the renderer
pastes the subject exactly into `subject_box` and draws the narration exactly inside
`subtitle_box`. The plan keeps the subject inside the frame over the whole clip (a close-up may
run off the bottom edge only) and keeps the bottom subtitle band off its face (the box's top third).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from storyagent.schemas import CameraMotion, Shot, ShotType

Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in frame pixels, x1/y1 exclusive."""
Motion = list[tuple[float, float, bool]]
"""Per frame: the subject's (dx, dy) as fractions of the frame, and whether it faces left."""
Moves = list[tuple[float, float, float]]
"""Per frame: the camera's pan x, pan y (pixels) and zoom."""

# Subject height as a fraction of the frame height, per shot type (at zoom 1, before fitting).
SUBJECT_HEIGHT = {ShotType.wide: 0.42, ShotType.medium: 0.68, ShotType.close_up: 1.1}
CLOSE_UP_TOP = 0.06  # a close-up frames the head near the top; the body runs off the bottom
CAMERA_TRAVEL = 0.1  # pans and tilts travel this fraction of the frame size
ZOOM_RANGE = 1.25
SAFE_MARGIN = 0.02  # the subject keeps this fraction of the frame size from every edge it must not cross
FACE_POINT = 1 / 6  # zooms centre on the middle of the face: the top third's centre line
SHRINK_STEP = 0.85
BAND_GAP = 0.5  # pixels between the face and the subtitle band, so rounding never makes them touch


@dataclass(frozen=True)
class ShotLayout:
    """One frame's layout."""

    subject_box: Box
    """Where the subject sprite is pasted (its widest reference frame fills the box's width)."""
    subtitle_box: Box
    """The band at the bottom of the frame the narration is drawn in (the same for every frame)."""
    camera: np.ndarray
    """2×3 affine from the resting camera's frame coordinates to this frame (pans, tilts, zooms)."""
    flipped: bool
    """The sprite is mirrored (the subject walks to the left)."""

    @property
    def face_box(self) -> Box:
        """The subject box's top third: what the subtitles must never cover."""
        x0, y0, x1, y1 = self.subject_box
        return x0, y0, x1, y0 + (y1 - y0) / 3


def subtitle_font_size(height: int) -> int:
    return max(12, height // 18)


def subtitle_band_height(height: int) -> int:
    """Room for two outlined lines of narration and a margin."""
    line_h = int(subtitle_font_size(height) * 1.3)
    return 2 * line_h + 16


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def subject_motion(action: str, n: int, fps: float, seed: int) -> Motion:
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


def camera_moves(motion: CameraMotion, n: int, width: int, height: int) -> Moves:
    """Per-frame (pan x, pan y, zoom), eased so moves start and end softly; pans in pixels."""
    out = []
    for t in range(n):
        e = 0.5 - 0.5 * math.cos(math.pi * t / max(n - 1, 1))
        px = py = 0.0
        zoom = 1.0
        if motion == CameraMotion.pan_left:
            px = CAMERA_TRAVEL * width * (0.5 - e)
        elif motion == CameraMotion.pan_right:
            px = CAMERA_TRAVEL * width * (e - 0.5)
        elif motion == CameraMotion.tilt_up:
            py = CAMERA_TRAVEL * height * (0.5 - e)
        elif motion == CameraMotion.tilt_down:
            py = CAMERA_TRAVEL * height * (e - 0.5)
        elif motion == CameraMotion.zoom_in:
            zoom = 1.0 + (ZOOM_RANGE - 1.0) * e
        elif motion == CameraMotion.zoom_out:
            zoom = ZOOM_RANGE - (ZOOM_RANGE - 1.0) * e
        out.append((px, py, zoom))
    return out


def _camera_matrix(px: float, py: float, zoom: float, focus: tuple[float, float]) -> np.ndarray:
    """Resting frame -> this frame: shift by the pan, then zoom about `focus` (the subject's face)."""
    fx, fy = focus
    return np.array([[zoom, 0.0, fx - zoom * (px + fx)], [0.0, zoom, fy - zoom * (py + fy)]], np.float32)


def _apply(m: np.ndarray, box: Box) -> Box:
    x0, y0, x1, y1 = box
    return (m[0, 0] * x0 + m[0, 2], m[1, 1] * y0 + m[1, 2], m[0, 0] * x1 + m[0, 2], m[1, 1] * y1 + m[1, 2])


@dataclass
class _Pose:
    """The subject's resting box in the resting camera's frame (before motion and camera)."""

    cx: float
    top: float
    h: float
    aspect: float

    def frames(self, motion: Motion, moves: Moves, W: int, H: int) -> tuple[list[Box], list[np.ndarray]]:
        w = self.h * self.aspect
        focus = (self.cx, self.top + self.h * FACE_POINT)
        boxes, mats = [], []
        for (dx, dy, _), (px, py, zoom) in zip(motion, moves):
            m = _camera_matrix(px, py, zoom, focus)
            x0, y0 = self.cx - w / 2 + dx * W, self.top + dy * H
            boxes.append(_apply(m, (x0, y0, x0 + w, y0 + self.h)))
            mats.append(m)
        return boxes, mats


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _fit(pose: _Pose, motion: Motion, moves: Moves, W: int, H: int, close_up: bool) -> None:
    """Shrink, then shift, the resting pose until every frame's box is inside the safe area.

    Moving the resting place moves every frame's box by the same amount (zooms centre on the
    subject), so one shift per axis suffices; sizes shrink until the union fits.
    """
    mx, my = SAFE_MARGIN * W, SAFE_MARGIN * H
    for _ in range(30):
        u = _union(pose.frames(motion, moves, W, H)[0])
        ratio = min((W - 2 * mx) / (u[2] - u[0]), 1.0 if close_up else (H - 2 * my) / (u[3] - u[1]))
        if ratio >= 1.0:
            break
        _scale(pose, max(0.5, ratio * 0.99), close_up)
    u = _union(pose.frames(motion, moves, W, H)[0])
    pose.cx += max(0.0, mx - u[0]) - max(0.0, u[2] - (W - mx))
    pose.top += max(0.0, my - u[1]) - (0.0 if close_up else max(0.0, u[3] - (H - my)))


def _scale(pose: _Pose, factor: float, close_up: bool) -> None:
    """Make the subject smaller about its head (close-up) or its feet (standing on the ground)."""
    if not close_up:
        pose.top += pose.h * (1 - factor)
    pose.h *= factor


def plan_shot(shot: Shot, num_frames: int, width: int, height: int, sprite_aspect: float, *,
              fps: float = 8.0, seed: int = 0) -> list[ShotLayout]:
    """Every frame's layout for `shot` rendered as `num_frames` frames of `width`×`height`.

    `sprite_aspect` is the width/height of the widest reference sprite. The subtitles are a band
    at the bottom; a standing subject's feet rest above it where there is room, the subject is
    lifted if its face would ever be under it, and made smaller where the frame is too short
    for that (small frames, big camera moves).
    """
    W, H = width, height
    n = max(1, num_frames)
    kind = ShotType(shot.shot_type)
    close_up = kind == ShotType.close_up
    band = subtitle_band_height(H)
    motion = subject_motion(shot.subject_action, n, fps, stable_seed(shot.index, seed))
    moves = camera_moves(CameraMotion(shot.camera_motion), n, W, H)
    region = shot.subject_region
    h = SUBJECT_HEIGHT[kind] * H
    if close_up:
        top = CLOSE_UP_TOP * H
    else:
        # Feet on the region's bottom edge, but above the subtitle band when there is room.
        top = min(region.y + region.h, 1.0 - band / H) * H - h
    pose = _Pose(cx=region.center[0] * W, top=top, h=h, aspect=max(0.05, sprite_aspect))
    my = SAFE_MARGIN * H
    for _ in range(40):
        _fit(pose, motion, moves, W, H, close_up)
        boxes = pose.frames(motion, moves, W, H)[0]
        face_bottom = max(b[1] + (b[3] - b[1]) / 3 for b in boxes)
        # Lift the subject until its face clears the band, as far as the frame's top allows; else shrink it.
        lift = max(0.0, face_bottom - (H - band) + BAND_GAP)
        if lift <= _union(boxes)[1] - my + 1e-3:  # float32 cameras: "at the margin" may read a hair past it
            pose.top -= lift
            break
        _scale(pose, SHRINK_STEP, close_up)
    else:  # pragma: no cover - the motion's extent is smaller than the room the band leaves
        raise RuntimeError(f"no layout keeps the subtitles off the subject in shot {shot.index}")
    boxes, mats = pose.frames(motion, moves, W, H)
    sub: Box = (0.0, float(H - band), float(W), float(H))
    return [ShotLayout(subject_box=b, subtitle_box=sub, camera=m, flipped=mo[2])
            for b, m, mo in zip(boxes, mats, motion)]


def shot_layout(shot: Shot, frame_index: int, num_frames: int, width: int, height: int, sprite_aspect: float, *,
                fps: float = 8.0, seed: int = 0) -> ShotLayout:
    """The layout of one frame: `plan_shot(...)[frame_index]` (the subtitle band is chosen per shot)."""
    if not 0 <= frame_index < num_frames:
        raise ValueError(f"frame_index {frame_index} is outside 0..{num_frames - 1}")
    return plan_shot(shot, num_frames, width, height, sprite_aspect, fps=fps, seed=seed)[frame_index]

"""Where things go on screen in an animatic shot: the subject's box, its pose and the subtitle band, per frame.

A pure function of the shot, so a test of `shot_layout` is a test of the picture: the renderer
scales the subject exactly into `subject_box`, turns it by `angle` about `pivot`, cuts it at
`water_line`, and draws the narration exactly inside `subtitle_box`. The subject acts the shot's
action (`motion.act`: a hop, a fall, swimming ...). The plan keeps the turned subject inside the
frame over the whole clip (a close-up may run off the bottom edge only) and keeps the bottom
subtitle band off its face (`face_box`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

from storyagent.models.animatic.motion import Acting, act
from storyagent.schemas import CameraMotion, Shot, ShotType

Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in frame pixels, x1/y1 exclusive."""
Moves = list[tuple[float, float, float]]
"""Per frame: the camera's pan x, pan y (pixels) and zoom."""

# Subject height as a fraction of the frame height, per shot type (at zoom 1, before fitting).
SUBJECT_HEIGHT = {ShotType.wide: 0.42, ShotType.medium: 0.68, ShotType.close_up: 1.1}
CLOSE_UP_TOP = 0.06  # a close-up frames the head near the top; the body runs off the bottom
CAMERA_TRAVEL = 0.1  # pans and tilts travel this fraction of the frame size
ZOOM_RANGE = 1.25
SAFE_MARGIN = 0.02  # the subject keeps this fraction of the frame size from every edge it must not cross
FACE_DEPTH = 0.6
"""How far down its box the subject's face reaches. Far more than the top third: Pip's chin is at 57%
of its cut-out (the ears sit on top), a head-and-shoulders photo's near 55%. Keeping only the top
third clear let close-ups (the subject 1.1 frames tall, zoomed about its face) put the subtitles
over the mouth and chin."""
CLOSE_UP_FOLLOW = (0.3, 0.25)
"""A close-up's camera follows its subject: the motion's travel across and up/down the frame is this
much of a wide shot's (else a run or a hop would shrink the close-up into a medium shot)."""
SHRINK_FLOOR = 0.5  # the most one fitting step shrinks the subject by
BAND_GAP = 0.5  # pixels between the face and the subtitle band, so rounding never makes them touch


@dataclass(frozen=True)
class ShotLayout:
    """One frame's layout."""

    subject_box: Box
    """Where the subject sprite is scaled into before it is turned (its widest reference frame fills the
    box's width at rest; squash and stretch are already in the box's size)."""
    subtitle_box: Box
    """The band at the bottom of the frame the narration is drawn in (the same for every frame)."""
    camera: np.ndarray
    """2×3 affine from the resting camera's frame coordinates to this frame (pans, tilts, zooms)."""
    flipped: bool
    """The sprite is mirrored (it goes to the left, or has turned round)."""
    angle: float = 0.0
    """Rotation of the sprite about `pivot`, degrees counter-clockwise on screen (OpenCV's sense)."""
    pivot: tuple[float, float] | None = None
    """The point it turns about, frame pixels; None: the middle of the box's bottom edge (its feet)."""
    scale_x: float = 1.0
    """Squash and stretch: the box's width over the resting box's width."""
    scale_y: float = 1.0
    """The box's height over the resting box's height."""
    water_line: float | None = None
    """The water's surface, y in frame pixels: the subject is hidden below it, under a drawn water band."""
    ground: float | None = None
    """Where its contact shadow lies, y in frame pixels (below the feet when it is in the air); None: no
    shadow (close-ups, swimming, climbing)."""

    @property
    def turn_point(self) -> tuple[float, float]:
        if self.pivot is not None:
            return self.pivot
        x0, _, x1, y1 = self.subject_box
        return (x0 + x1) / 2, y1

    @property
    def rotation(self) -> np.ndarray:
        """2×3 affine turning frame points by `angle` about `pivot` (`cv2.getRotationMatrix2D`'s matrix)."""
        px, py = self.turn_point
        return _rotation_matrix(self.angle, px, py)

    def turned(self, box: Box) -> Box:
        """The bounding box of `box` once turned with the subject."""
        px, py = self.turn_point
        return tuple(float(v[0]) for v in _turned_bounds(*(np.array([c]) for c in box), np.array([self.angle]),
                                                          np.array([px]), np.array([py])))  # type: ignore[return-value]

    @property
    def extent(self) -> Box:
        """Where the subject can be seen at most: its box, turned."""
        return self.turned(self.subject_box)

    @property
    def face_box(self) -> Box:
        """The box's top `FACE_DEPTH`, turned with it: what the subtitles must never cover."""
        x0, y0, x1, y1 = self.subject_box
        return self.turned((x0, y0, x1, y0 + (y1 - y0) * FACE_DEPTH))


def subtitle_font_size(height: int) -> int:
    return max(12, height // 18)


def subtitle_band_height(height: int) -> int:
    """Room for two outlined lines of narration and a margin."""
    line_h = int(subtitle_font_size(height) * 1.3)
    return 2 * line_h + 16


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


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


def _rotation_matrix(angle: float, px: float, py: float) -> np.ndarray:
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, (1 - c) * px - s * py], [-s, c, s * px + (1 - c) * py]], np.float64)


def _turned_bounds(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, angle: np.ndarray,
                   px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame (arrays of length n), the bounding box of the box (x0, y0, x1, y1) turned by `angle`
    degrees counter-clockwise about (px, py)."""
    a = np.radians(angle)
    c, s = np.cos(a), np.sin(a)
    xs, ys = np.stack([x0, x1, x1, x0]) - px, np.stack([y0, y0, y1, y1]) - py  # 4×n corners
    tx, ty = c * xs + s * ys + px, -s * xs + c * ys + py
    return tx.min(0), ty.min(0), tx.max(0), ty.max(0)


def _camera_matrix(px: float, py: float, zoom: float, focus: tuple[float, float]) -> np.ndarray:
    """Resting frame -> this frame: shift by the pan, then zoom about `focus` (the subject's face)."""
    fx, fy = focus
    return np.array([[zoom, 0.0, fx - zoom * (px + fx)], [0.0, zoom, fy - zoom * (py + fy)]], np.float32)


@dataclass
class _Frames:
    """Every frame's geometry (arrays over frames) in the frame's pixels, cameras applied."""

    box: np.ndarray
    """n×4 subject boxes before turning."""
    pivot: np.ndarray
    """n×2 points they turn about."""
    extent: np.ndarray
    """n×4 turned boxes."""
    face: np.ndarray
    """n×4 turned face boxes."""
    ground: np.ndarray
    """n contact-shadow heights."""
    water: np.ndarray | None
    """n water lines, or None."""
    cameras: list[np.ndarray]

    @property
    def union(self) -> Box:
        e = self.extent
        return float(e[:, 0].min()), float(e[:, 1].min()), float(e[:, 2].max()), float(e[:, 3].max())


@dataclass
class _Pose:
    """The subject's resting box in the resting camera's frame (before motion and camera)."""

    cx: float
    top: float
    h: float
    aspect: float

    def frames(self, acting: Acting, moves: Moves, W: int, H: int) -> _Frames:
        h, w = self.h, self.h * self.aspect
        cx = self.cx + acting.dx * W
        feet = self.top + h + acting.dy * h
        bw, bh = w * acting.scale_x, h * acting.scale_y
        x0, x1, y0 = cx - bw / 2, cx + bw / 2, feet - bh
        px, py = cx, y0 + acting.pivot * bh
        ex = _turned_bounds(x0, y0, x1, feet, acting.angle, px, py)
        # Whatever the pose, its lowest point rests on the feet's line (a fallen or sleeping body lies
        # on the ground rather than through it).
        shift = feet - ex[3]
        y0, y1, py = y0 + shift, feet + shift, py + shift
        ex = (ex[0], ex[1] + shift, ex[2], ex[3] + shift)
        face = _turned_bounds(x0, y0, x1, y0 + FACE_DEPTH * (y1 - y0), acting.angle, px, py)
        ground = feet + acting.lift * h
        water = None if acting.water is None else np.full(len(cx), self.top + acting.water * h)

        # The cameras: pan, then zoom about the resting face's middle; each maps x -> z·x + ox, y -> z·y + oy.
        focus = (self.cx, self.top + h * FACE_DEPTH / 2)
        cameras = [_camera_matrix(mx, my, z, focus) for mx, my, z in moves]
        z = np.array([m[0, 0] for m in cameras], np.float64)
        ox = np.array([m[0, 2] for m in cameras], np.float64)
        oy = np.array([m[1, 2] for m in cameras], np.float64)

        def box(b) -> np.ndarray:
            return np.stack([z * b[0] + ox, z * b[1] + oy, z * b[2] + ox, z * b[3] + oy], axis=1)

        return _Frames(box=box((x0, y0, x1, y1)), pivot=np.stack([z * px + ox, z * py + oy], axis=1),
                       extent=box(ex), face=box(face), ground=z * ground + oy,
                       water=None if water is None else z * water + oy, cameras=cameras)


def _fit(pose: _Pose, acting: Acting, moves: Moves, W: int, H: int, close_up: bool) -> None:
    """Shrink, then shift, the resting pose until every frame's turned box is inside the safe area.

    Moving the resting place moves every frame's box by the same amount (zooms centre on the
    subject), so one shift per axis suffices; sizes shrink until the union fits.
    """
    mx, my = SAFE_MARGIN * W, SAFE_MARGIN * H
    for _ in range(30):
        u = pose.frames(acting, moves, W, H).union
        ratio = min((W - 2 * mx) / (u[2] - u[0]), 1.0 if close_up else (H - 2 * my) / (u[3] - u[1]))
        if ratio >= 1.0:
            break
        _scale(pose, max(SHRINK_FLOOR, ratio * 0.99), close_up)
    u = pose.frames(acting, moves, W, H).union
    pose.cx += max(0.0, mx - u[0]) - max(0.0, u[2] - (W - mx))
    pose.top += max(0.0, my - u[1]) - (0.0 if close_up else max(0.0, u[3] - (H - my)))


def _scale(pose: _Pose, factor: float, close_up: bool) -> None:
    """Make the subject smaller about its head (close-up) or its feet (standing on the ground)."""
    if not close_up:
        pose.top += pose.h * (1 - factor)
    pose.h *= factor


def plan_shot(shot: Shot, num_frames: int, width: int, height: int, sprite_aspect: float, *,
              fps: float = 8.0, seed: int = 0, motion: str | None = None) -> list[ShotLayout]:
    """Every frame's layout for `shot` rendered as `num_frames` frames of `width`×`height`.

    `sprite_aspect` is the width/height of the widest reference sprite. The subject acts the shot's
    action (`motion` names a motion of `motion.MOTIONS` instead). The subtitles are a band at the
    bottom; a standing subject's feet rest above it where there is room, the subject is lifted if
    its face would ever be under it, and made smaller where the frame is too short for that (small
    frames, big camera moves, big motions).
    """
    W, H = width, height
    n = max(1, num_frames)
    kind = ShotType(shot.shot_type)
    close_up = kind == ShotType.close_up
    band = subtitle_band_height(H)
    acting = act(shot.subject_action, n, fps, stable_seed(shot.index, seed), motion=motion)
    if close_up:
        acting = acting.followed(*CLOSE_UP_FOLLOW)
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
    for _ in range(60):
        _fit(pose, acting, moves, W, H, close_up)
        frames = pose.frames(acting, moves, W, H)
        face_bottom = float(frames.face[:, 3].max())
        # Lift the subject until its face clears the band, as far as the frame's top allows; else lift
        # it to the top and shrink it by what is still missing.
        lift = max(0.0, face_bottom - (H - band) + BAND_GAP)
        room = frames.union[1] - my
        if lift <= room + 1e-3:  # float32 cameras: "at the margin" may read a hair past it
            pose.top -= lift
            break
        pose.top -= max(0.0, room)
        reach = face_bottom - frames.union[1]  # how far below the subject's top its face reaches
        _scale(pose, min(0.98, max(SHRINK_FLOOR, 1 - (lift - max(0.0, room)) / max(reach, 1e-6))), close_up)
    else:  # pragma: no cover - the motion's extent is smaller than the room the band leaves
        raise RuntimeError(f"no layout keeps the subtitles off the subject in shot {shot.index}")
    frames = pose.frames(acting, moves, W, H)
    sub: Box = (0.0, float(H - band), float(W), float(H))
    shadow = acting.shadow and not close_up
    return [ShotLayout(subject_box=tuple(map(float, frames.box[t])), subtitle_box=sub, camera=frames.cameras[t],
                       flipped=bool(acting.flipped[t]), angle=float(acting.angle[t]),
                       pivot=(float(frames.pivot[t, 0]), float(frames.pivot[t, 1])),
                       scale_x=float(acting.scale_x[t]), scale_y=float(acting.scale_y[t]),
                       water_line=None if frames.water is None else float(frames.water[t]),
                       ground=float(frames.ground[t]) if shadow else None)
            for t in range(n)]


def between(a: ShotLayout, b: ShotLayout, f: float) -> ShotLayout:
    """The pose a fraction `f` of the way from `a` to `b` (a retimed frame); a's camera and subtitles."""

    def mix(p: float | None, q: float | None) -> float | None:
        return None if p is None or q is None else (1 - f) * p + f * q

    nearest = a if f < 0.5 else b
    return replace(a, subject_box=tuple((1 - f) * p + f * q for p, q in zip(a.subject_box, b.subject_box)),
                   pivot=(mix(a.turn_point[0], b.turn_point[0]), mix(a.turn_point[1], b.turn_point[1])),
                   angle=mix(a.angle, b.angle), scale_x=mix(a.scale_x, b.scale_x), scale_y=mix(a.scale_y, b.scale_y),
                   flipped=nearest.flipped,
                   water_line=mix(a.water_line, b.water_line) if a.water_line is not None else nearest.water_line,
                   ground=mix(a.ground, b.ground) if a.ground is not None else nearest.ground)


def shot_layout(shot: Shot, frame_index: int, num_frames: int, width: int, height: int, sprite_aspect: float, *,
                fps: float = 8.0, seed: int = 0, motion: str | None = None) -> ShotLayout:
    """The layout of one frame: `plan_shot(...)[frame_index]` (the subtitle band is chosen per shot)."""
    if not 0 <= frame_index < num_frames:
        raise ValueError(f"frame_index {frame_index} is outside 0..{num_frames - 1}")
    return plan_shot(shot, num_frames, width, height, sprite_aspect, fps=fps, seed=seed, motion=motion)[frame_index]

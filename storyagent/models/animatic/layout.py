"""Where things go on screen in an animatic shot: the subject's box, its pose and the subtitle band, per frame.

A pure function of the shot, so a test of `shot_layout` is a test of the picture: the renderer
scales the subject exactly into `subject_box`, turns it by `angle` about `pivot`, cuts it at
`water_line`, and draws the narration exactly inside `subtitle_box`. The subject acts the shot's
action (`motion.act`: a hop, a fall, swimming ...). The plan keeps the turned subject inside the
frame over the whole clip (a close-up may run off the bottom edge only) and keeps the bottom
subtitle band off its face (`face_box`). `plan_cast` lays out each character of a shot that shows several
the same way, under one camera, and keeps each of them in sight.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from storyagent.models.animatic.motion import Acting, act
from storyagent.schemas import CameraMotion, Region, Shot, ShotCharacter, ShotType, front_to_back

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

# A shot of several characters (`plan_cast`).
CAST_TRAVEL = 0.3
"""The camera follows a cast: each character's moves across the frame are this much of a lone subject's
(as a close-up's are, `CLOSE_UP_FOLLOW`), so two characters walking do not cross each other."""
CAST_OVERLAP = 0.35
"""The most of a character's box (its on-screen part, in any frame) a nearer character's box may cover.
The story's own check (`schemas.HIDDEN_FRACTION`) allows regions that overlap more, and the renderer's
boxes follow the sprites and the motion, not the regions: it moves such characters apart rather than
lose one behind another."""
CAST_MIN_SIZE = 0.5
"""The smallest a character of a cast is drawn, as a fraction of the shot type's size (its region's
height against the tallest region of the shot decides)."""
CAST_ROUNDS = 40
"""How many times characters are moved apart (and everyone fitted again) before the plan stands."""
CAST_SHRINK_FLOOR = 0.7
"""The most one moving-apart step shrinks two characters by."""
CAST_STALL = 4
"""After this many rounds, characters still too close are made smaller as well as moved apart (a third
character stood in the way)."""
CAST_SQUEEZE = 0.93
"""How much smaller each such round makes them."""


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

    @property
    def face_centre(self) -> tuple[float, float]:
        """The middle of its resting face: what the camera zooms about when it films this subject alone."""
        return self.cx, self.top + self.h * FACE_DEPTH / 2

    def frames(self, acting: Acting, moves: Moves, W: int, H: int, focus: tuple[float, float] | None = None) -> _Frames:
        """Every frame's geometry; the camera zooms about `focus` (resting frame pixels; None: this pose's face)."""
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
        focus = (self.cx, self.top + h * FACE_DEPTH / 2) if focus is None else focus
        cameras = [_camera_matrix(mx, my, z, focus) for mx, my, z in moves]
        z = np.array([m[0, 0] for m in cameras], np.float64)
        ox = np.array([m[0, 2] for m in cameras], np.float64)
        oy = np.array([m[1, 2] for m in cameras], np.float64)

        def box(b) -> np.ndarray:
            return np.stack([z * b[0] + ox, z * b[1] + oy, z * b[2] + ox, z * b[3] + oy], axis=1)

        return _Frames(box=box((x0, y0, x1, y1)), pivot=np.stack([z * px + ox, z * py + oy], axis=1),
                       extent=box(ex), face=box(face), ground=z * ground + oy,
                       water=None if water is None else z * water + oy, cameras=cameras)


def _fit(pose: _Pose, acting: Acting, moves: Moves, W: int, H: int, close_up: bool,
         focus: tuple[float, float] | None = None) -> None:
    """Shrink, then shift, the resting pose until every frame's turned box is inside the safe area.

    Moving the resting place moves every frame's box by the same amount (zooms centre on the
    subject), so one shift per axis suffices; sizes shrink until the union fits. A camera shared by a
    cast zooms about another point (`focus`): there a shift moves a frame's box by its zoom (1 to
    `ZOOM_RANGE`) times as much, and the union's size depends on where the pose is, so both steps repeat,
    each shift a fraction short of what is missing, until it is inside.
    """
    mx, my = SAFE_MARGIN * W, SAFE_MARGIN * H
    if focus is not None:
        zoom = max(m[2] for m in moves)
        for _ in range(60):
            u = pose.frames(acting, moves, W, H, focus).union
            ratio = min((W - 2 * mx) / (u[2] - u[0]), 1.0 if close_up else (H - 2 * my) / (u[3] - u[1]))
            if ratio < 1.0:
                _scale(pose, max(SHRINK_FLOOR, ratio * 0.99), close_up)
                continue
            dx = max(0.0, mx - u[0]) - max(0.0, u[2] - (W - mx))
            dy = max(0.0, my - u[1]) - (0.0 if close_up else max(0.0, u[3] - (H - my)))
            if abs(dx) < 1e-3 and abs(dy) < 1e-3:
                return
            pose.cx += dx / zoom
            pose.top += dy / zoom
        return
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


@dataclass
class _Actor:
    """One character of a shot being laid out: its motion and its resting pose (changed as it is fitted)."""

    acting: Acting
    pose: _Pose

    def frames(self, moves: Moves, W: int, H: int, focus: tuple[float, float] | None = None) -> _Frames:
        return self.pose.frames(self.acting, moves, W, H, focus)


def _actor(shot: Shot, action: str, region: Region, aspect: float, n: int, W: int, H: int, *, fps: float, seed: int,
           motion: str | None, size: float = 1.0, travel: float = 1.0) -> _Actor:
    """A character (its widest sprite `aspect` wide for its height) acting `action` from its resting place in
    `region`, `size` times the shot type's height, its moves across the frame `travel` of their size (a
    camera following it)."""
    kind = ShotType(shot.shot_type)
    close_up = kind == ShotType.close_up
    band = subtitle_band_height(H)
    acting = act(action, n, fps, seed, motion=motion)
    if close_up:
        acting = acting.followed(*CLOSE_UP_FOLLOW)
    elif travel != 1.0:
        acting = acting.followed(travel, 1.0)
    h = SUBJECT_HEIGHT[kind] * H * size
    if close_up:
        top = CLOSE_UP_TOP * H
    else:
        # Feet on the region's bottom edge, but above the subtitle band when there is room.
        top = min(region.y + region.h, 1.0 - band / H) * H - h
    return _Actor(acting, _Pose(cx=region.center[0] * W, top=top, h=h, aspect=max(0.05, aspect)))


def _settle(actor: _Actor, moves: Moves, W: int, H: int, close_up: bool, index: int,
            focus: tuple[float, float] | None = None) -> None:
    """Fit the pose inside the frame and lift it (shrinking it where the frame is too short) until its
    face clears the subtitle band in every frame."""
    pose, acting = actor.pose, actor.acting
    band = subtitle_band_height(H)
    my = SAFE_MARGIN * H
    # A shift of the resting pose moves a frame's box by that frame's zoom (1 with the subject's own focus).
    zooms = np.array([1.0]) if focus is None else np.array([m[2] for m in moves])
    low, high = float(zooms.min()), float(zooms.max())
    for _ in range(60):
        _fit(pose, acting, moves, W, H, close_up, focus)
        frames = pose.frames(acting, moves, W, H, focus)
        face_bottom = float(frames.face[:, 3].max())
        # Lift the subject until its face clears the band, as far as the frame's top allows; else lift
        # it to the top and shrink it by what is still missing.
        lift = max(0.0, face_bottom - (H - band) + BAND_GAP)
        room = frames.union[1] - my
        if focus is not None and lift == 0.0:
            return
        if lift / low <= room / high + 1e-3:  # float32 cameras: "at the margin" may read a hair past it
            pose.top -= lift / low
            if focus is None:
                return
            continue  # a shared camera's zoom moved it more or less than that: look again
        pose.top -= max(0.0, room / high)
        reach = face_bottom - frames.union[1]  # how far below the subject's top its face reaches
        _scale(pose, min(0.98, max(SHRINK_FLOOR, 1 - (lift - max(0.0, room)) / max(reach, 1e-6))), close_up)
    raise RuntimeError(f"no layout keeps the subtitles off the subject in shot {index}")  # pragma: no cover


def _layouts(actor: _Actor, moves: Moves, W: int, H: int, close_up: bool,
             focus: tuple[float, float] | None = None) -> list[ShotLayout]:
    frames = actor.frames(moves, W, H, focus)
    acting = actor.acting
    sub: Box = (0.0, float(H - subtitle_band_height(H)), float(W), float(H))
    shadow = acting.shadow and not close_up
    return [ShotLayout(subject_box=tuple(map(float, frames.box[t])), subtitle_box=sub, camera=frames.cameras[t],
                       flipped=bool(acting.flipped[t]), angle=float(acting.angle[t]),
                       pivot=(float(frames.pivot[t, 0]), float(frames.pivot[t, 1])),
                       scale_x=float(acting.scale_x[t]), scale_y=float(acting.scale_y[t]),
                       water_line=None if frames.water is None else float(frames.water[t]),
                       ground=float(frames.ground[t]) if shadow else None)
            for t in range(len(frames.cameras))]


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
    close_up = ShotType(shot.shot_type) == ShotType.close_up
    actor = _actor(shot, shot.subject_action, shot.subject_region, sprite_aspect, n, W, H, fps=fps,
                   seed=stable_seed(shot.index, seed), motion=motion)
    moves = camera_moves(CameraMotion(shot.camera_motion), n, W, H)
    _settle(actor, moves, W, H, close_up, shot.index)
    return _layouts(actor, moves, W, H, close_up)


def plan_cast(shot: Shot, characters: Sequence[ShotCharacter], num_frames: int, width: int, height: int,
              sprite_aspects: Sequence[float], *, fps: float = 8.0, seed: int = 0,
              motion: str | None = None) -> list[list[ShotLayout]]:
    """Every frame's layout of each of `characters` (with the widest reference sprite of each in
    `sprite_aspects`), in their order; one camera and one subtitle band for all.

    One character is laid out as `plan_shot` lays out the subject, acting its own action in its own
    region (a shot of the lead alone is exactly today's shot). Several characters: each is laid out the
    same way (the shot type's size, fitted inside the frame, its face clear of the subtitles), with
    these differences, which keep every one of them in sight:

    - its size follows its region's height against the tallest region of the shot (a character given a
      smaller region stands farther off), never below `CAST_MIN_SIZE` of the shot type's;
    - the camera zooms about the middle of the cast's faces, and follows them: each one's moves across
      the frame are `CAST_TRAVEL` of a lone subject's (two characters walking do not cross the frame);
    - no character's box is ever more than `CAST_OVERLAP` behind a nearer one's (nearer: the lower
      region, `schemas.front_to_back`): where it would be, the two are moved apart, and made smaller
      where the frame is too narrow for that.
    """
    W, H = width, height
    n = max(1, num_frames)
    if len(characters) != len(sprite_aspects):
        raise ValueError(f"{len(characters)} characters but {len(sprite_aspects)} sprite aspects")
    if len(characters) == 1:
        c = characters[0]
        alone = shot.model_copy(update={"subject_action": c.action, "subject_region": c.region})
        return [plan_shot(alone, n, W, H, sprite_aspects[0], fps=fps, seed=seed, motion=motion)]
    close_up = ShotType(shot.shot_type) == ShotType.close_up
    tallest = max(c.region.h for c in characters)
    # Each character's direction of travel is its own draw (seeded by its name too).
    actors = [_actor(shot, c.action, c.region, aspect, n, W, H, fps=fps, seed=stable_seed(shot.index, seed, c.name),
                     motion=motion, size=max(CAST_MIN_SIZE, c.region.h / tallest), travel=CAST_TRAVEL)
              for c, aspect in zip(characters, sprite_aspects)]
    moves = camera_moves(CameraMotion(shot.camera_motion), n, W, H)
    faces = np.array([a.pose.face_centre for a in actors])
    focus = (float(faces[:, 0].mean()), float(faces[:, 1].mean()))
    nearest_first = [characters.index(c) for c in front_to_back(list(characters))]
    for rounds in range(CAST_ROUNDS):
        for actor in actors:
            _settle(actor, moves, W, H, close_up, shot.index, focus)
        if not _separate(actors, nearest_first, moves, W, H, close_up, focus, squeeze=rounds >= CAST_STALL):
            break
    else:
        for actor in actors:
            _settle(actor, moves, W, H, close_up, shot.index, focus)
    return [_layouts(a, moves, W, H, close_up, focus) for a in actors]


def _covered(back: np.ndarray, front: np.ndarray, W: int, H: int) -> tuple[np.ndarray, ...]:
    """Per frame, how much of the on-screen part of the `back` box (n×4) the `front` box covers (0..1),
    with the overlap's width and height and that part's area."""
    x0, y0 = np.clip(back[:, 0], 0, W), np.clip(back[:, 1], 0, H)
    x1, y1 = np.clip(back[:, 2], 0, W), np.clip(back[:, 3], 0, H)
    over_x = np.clip(np.minimum(x1, front[:, 2]) - np.maximum(x0, front[:, 0]), 0, None)
    over_y = np.clip(np.minimum(y1, front[:, 3]) - np.maximum(y0, front[:, 1]), 0, None)
    area = (x1 - x0) * (y1 - y0)
    return np.where(area > 0, over_x * over_y / np.maximum(area, 1e-9), 1.0), over_x, over_y, area


def _separate(actors: list[_Actor], nearest_first: list[int], moves: Moves, W: int, H: int, close_up: bool,
              focus: tuple[float, float], squeeze: bool = False) -> bool:
    """Move apart (or shrink, where the frame has no room left) every pair of characters in which the
    farther one's box is more than `CAST_OVERLAP` behind the nearer one's in some frame; whether any was.

    The room a pair has is measured to the frame's edges; a third character in it moves the pair back
    (or the pairs take turns pushing each other), so after `CAST_STALL` rounds (`squeeze`) the pairs
    still too close are also made smaller, until everyone fits side by side."""
    frames = [a.frames(moves, W, H, focus) for a in actors]
    mx = SAFE_MARGIN * W
    moved = False
    for i, back in enumerate(nearest_first):
        for front in nearest_first[:i]:
            fb, ff = frames[back].extent, frames[front].extent
            covered, over_x, over_y, area = _covered(fb, ff, W, H)
            if covered.max() <= CAST_OVERLAP:
                continue
            moved = True
            # How far apart the boxes must move (in x) for the worst frame's covered share to be the most
            # allowed: the share falls with the overlap in x, at the rate the overlap in y sets.
            t = int(covered.argmax())
            push = max(1.0, over_x[t] - CAST_OVERLAP * area[t] / max(over_y[t], 1e-6) + 1.0)
            pair = sorted((back, front), key=lambda k: (actors[k].pose.cx, k))
            left, right = (actors[k] for k in pair)
            room_left = frames[pair[0]].union[0] - mx
            room_right = (W - mx) - frames[pair[1]].union[2]
            if room_left + room_right >= push:
                # Into the room there is, half each where both sides have it.
                go_left = min(room_left, max(push / 2, push - room_right))
                left.pose.cx -= go_left
                right.pose.cx += push - go_left
            else:
                # No room: both use what there is and are made smaller by what is missing.
                left.pose.cx -= max(0.0, room_left)
                right.pose.cx += max(0.0, room_right)
                span = frames[pair[1]].union[2] - frames[pair[0]].union[0]
                factor = max(CAST_SHRINK_FLOOR, 1 - (push - max(0.0, room_left) - max(0.0, room_right)) / max(span, 1e-6))
                for actor in (left, right):
                    _scale(actor.pose, min(0.98, factor), close_up)
                continue
            if squeeze:
                for actor in (left, right):
                    _scale(actor.pose, CAST_SQUEEZE, close_up)
    return moved


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

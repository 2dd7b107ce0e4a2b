"""The animatic backend: the user's real characters composited into procedural scenes.

A previsualisation, honest about what it is: every pixel of a character comes from its own reference
media (so it is the same character in every shot), the background is drawn from the shot's text, each
character acts its own action (`motion`: it hops, falls, swims, sleeps ...), the camera moves as the shot
says, and the narration is burnt in as a subtitle. Where the characters and the subtitles go, and how each
is turned, squashed and cut at a water line, is decided by `layout.plan_shot` (one character) or
`layout.plan_cast` (several), and drawn exactly there, the farthest character first.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, ImageDraw

from storyagent.media import ReferenceMedia, load_font, subject_cutout, wrap_text
from storyagent.models.animatic.backgrounds import SceneSpec, draw_background
from storyagent.models.animatic.config import AnimaticConfig
from storyagent.models.animatic.layout import Box, ShotLayout, between, plan_cast, plan_shot, subtitle_font_size
from storyagent.schemas import Shot, ShotCharacter, front_to_back

CANVAS_MARGIN = 1.3  # the scene is drawn this much larger than the frame, room for the camera to move
CACHE_BYTES = 64 * 2**20
"""What a pipeline keeps of the scene canvases and subtitle overlays it drew (a storyboard picture and
its clip draw the same ones): about 70 canvases at 512×320."""

T = TypeVar("T")


@dataclass
class SubjectSprites:
    """The subject cut out of each reference frame, as RGBA crops (alpha = mask)."""

    sprites: list[np.ndarray]
    """One h×w×4 uint8 crop per reference frame."""
    _tinted: dict[tuple[float, ...], list[np.ndarray]] = field(default_factory=dict, init=False, repr=False,
                                                               compare=False)

    @classmethod
    def from_reference(cls, ref: ReferenceMedia) -> SubjectSprites:
        return cls([subject_cutout(f, m) for f, m in zip(ref.frames, ref.masks)])

    @property
    def max_aspect(self) -> float:
        """Width/height of the widest sprite: the layout sizes the subject's box for it."""
        return max(s.shape[1] / max(1, s.shape[0]) for s in self.sprites)

    def tinted(self, tint: tuple[float, float, float]) -> list[np.ndarray]:
        """The sprites lit by a scene's `tint` (RGB factors); kept, as every shot of a place shares it."""
        key = tuple(tint)
        if key not in self._tinted:
            self._tinted[key] = [_tint(s, np.array(key, np.float32)) for s in self.sprites]
        return self._tinted[key]


@dataclass
class ShotRender:
    """One rendered shot."""

    frames: list[np.ndarray]
    """The clip's frames, H×W×3 uint8, subtitles burnt in when asked for."""
    storyboard: np.ndarray
    """The first frame without subtitle: the shot's storyboard picture."""
    storyboard_mask: np.ndarray
    """Where the subject is in the storyboard picture (bool H×W); with several characters, where any of them is."""
    layouts: list[ShotLayout] | None = None
    """The layout of every rendered frame (subject box, subtitle band, camera); with several characters,
    the shot's first character's (`character_layouts` has each one's)."""
    masks: list[np.ndarray] | None = None
    """Where the subject is seen in every frame (bool H×W), as turned and cut at the water; with several
    characters, where any of them is."""
    storyboard_masks: dict[str, np.ndarray] = field(default_factory=dict)
    """Each character's visible pixels in the storyboard picture, by name (bool H×W): what a nearer
    character or the water in front of it covers is not in it, so no two characters' masks overlap."""
    character_masks: list[dict[str, np.ndarray]] = field(default_factory=list)
    """`storyboard_masks` for every frame of the clip."""
    character_layouts: dict[str, list[ShotLayout]] = field(default_factory=dict)
    """Each character's layout in every rendered frame, by name."""


Cast = Mapping[str, SubjectSprites]
"""A film's characters' sprites by name, in the cast's order (the lead first)."""
LONE_NAME = "subject"
"""The name a lone subject's masks go under when the pipeline is given its sprites alone and the shot
names no character."""


class AnimaticPipeline:
    """Renders one shot: `AnimaticPipeline(config)(shot, sprites, seed) -> ShotRender`, `sprites` being the
    subject's (a shot of one character) or the cast's by name (`Cast`: every character the shot shows)."""

    def __init__(self, config: AnimaticConfig | None = None) -> None:
        self.config = config or AnimaticConfig()
        self._cache = _Cache(CACHE_BYTES)

    def background(self, text: str, width: int, height: int, seed: int) -> np.ndarray:
        """`draw_background(text, width, height, seed)`, drawn once: a storyboard picture and its clip
        share it (read-only)."""
        return self._cache.get(("background", text, width, height, seed),
                               lambda: draw_background(text, width, height, seed))

    def clip_length(self, shot: Shot) -> int:
        return max(2, round(shot.duration * self.config.fps))

    def _frames(self, shot: Shot, num_frames: int | None) -> int:
        # A storyboard (`num_frames=1`) is laid out as the clip's first frame, so its masks match the clip's.
        return self.clip_length(shot) if num_frames in (None, 1) else num_frames

    def layout(self, shot: Shot, sprites: SubjectSprites, seed: int = 0,
               num_frames: int | None = None) -> list[ShotLayout]:
        """The per-frame layout the render uses. A storyboard (`num_frames=1`) is laid out as the
        clip's first frame, so the storyboard's subject mask matches the clip."""
        cfg = self.config
        return plan_shot(shot, self._frames(shot, num_frames), cfg.width, cfg.height, sprites.max_aspect, fps=cfg.fps,
                         seed=seed, motion=None if cfg.acting else "glide")

    def characters(self, shot: Shot, sprites: SubjectSprites | Cast) -> list[tuple[str, ShotCharacter, SubjectSprites]]:
        """Who `shot` shows, in the story's order: (name as the cast spells it, the shot's character, its sprites).

        With the cast's sprites the first is the lead (a shot with no `characters` shows the lead alone);
        with one subject's sprites the shot shows at most one character."""
        if isinstance(sprites, SubjectSprites):
            if len(shot.characters) > 1:
                raise ValueError(f"shot {shot.index} shows {len(shot.characters)} characters; pass each one's "
                                 "sprites by name")
            (one,) = shot.cast(LONE_NAME)
            return [(one.name, one, sprites)]
        if not sprites:
            raise ValueError("no character's sprites were given")
        by_key = {name.casefold(): name for name in sprites}
        out = []
        for c in shot.cast(next(iter(sprites))):
            name = by_key.get(c.name.casefold())
            if name is None:
                raise ValueError(f"shot {shot.index} shows {c.name!r}, who has no sprites (the cast: "
                                 f"{', '.join(sprites)})")
            out.append((name, c, sprites[name]))
        return out

    def cast_layout(self, shot: Shot, sprites: SubjectSprites | Cast, seed: int = 0,
                    num_frames: int | None = None) -> dict[str, list[ShotLayout]]:
        """Each character's per-frame layout (`layout.plan_cast`), by name, in the story's order; a shot of
        one character is laid out exactly as `layout` lays out the subject."""
        cfg = self.config
        people = self.characters(shot, sprites)
        plans = plan_cast(shot, [c for _, c, _ in people], self._frames(shot, num_frames), cfg.width, cfg.height,
                          [s.max_aspect for _, _, s in people], fps=cfg.fps, seed=seed,
                          motion=None if cfg.acting else "glide")
        return {name: plan for (name, _, _), plan in zip(people, plans)}

    def __call__(self, shot: Shot, sprites: SubjectSprites | Cast, seed: int = 0, num_frames: int | None = None,
                 motion_seed: int | None = None) -> ShotRender:
        """Render `shot`; `num_frames=1` renders only the storyboard picture (the clip's first frame).

        `seed` draws the scene and lays the shot out; `motion_seed` (a clip's new take) retimes the
        subject's motion along the same path, so the first frame stays the storyboard picture. Several
        characters are drawn farthest first (`schemas.front_to_back`), each from its own sprites acting its
        own action in its own region; each one's mask holds only its pixels still seen at the end."""
        cfg = self.config
        W, H = cfg.width, cfg.height
        people = self.characters(shot, sprites)
        plans = self.cast_layout(shot, sprites, seed, num_frames)
        for name in plans:
            plans[name] = plans[name][: 1 if num_frames == 1 else None]
            if motion_seed is not None:
                plans[name] = retime(plans[name], motion_seed)
        names = list(plans)
        layouts = plans[names[0]]
        scene = SceneSpec.from_text(shot.background)

        # The scene canvas, larger than the frame so the camera can move over it.
        cw, ch = _even(W * CANVAS_MARGIN), _even(H * CANVAS_MARGIN)
        background = self.background(shot.background, cw, ch, seed)
        to_rest = np.array([[1.0, 0.0, -(cw - W) / 2], [0.0, 1.0, -(ch - H) / 2], [0.0, 0.0, 1.0]], np.float32)
        tint = tuple(scene.tint) if scene.place != "space" else (0.9, 0.9, 1.0)
        tinted = [s.tinted(tint) for _, _, s in people]
        subtitle = None
        if cfg.subtitles:
            box = layouts[0].subtitle_box
            subtitle = self._cache.get(("subtitle", shot.narration, W, H, box),
                                       lambda: _Overlay.of(_subtitle_layer(shot.narration, W, H, box)))
        scaled: dict[tuple[int, int, bool, int, int], _Overlay] = {}  # each sprite scaled once per size

        def scale(who: int, index: int, flipped: bool, width: int, height: int) -> _Overlay:
            key = (who, index, flipped, width, height)
            if key not in scaled:
                sprite = tinted[who][index][:, ::-1] if flipped else tinted[who][index]
                scaled[key] = _Overlay.of(_scale_sprite(sprite, width, height))
            return scaled[key]

        # Farthest first, so nearer characters cover farther ones.
        order = [c for _, c, _ in people]
        back_to_front = [order.index(c) for c in reversed(front_to_back(order))]
        several = len(people) > 1
        frames: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        character_masks: list[dict[str, np.ndarray]] = []
        storyboard: np.ndarray | None = None
        view, view_camera = None, b""  # a still camera films the same view every frame: warped once
        for t, lay in enumerate(layouts):
            camera = (np.vstack([lay.camera, [0.0, 0.0, 1.0]]) @ to_rest)[:2]
            if view is None or camera.tobytes() != view_camera:
                view = cv2.warpAffine(background, camera, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                view_camera = camera.tobytes()
            frame = view.copy()
            # Who is seen at each pixel (-1: nobody), for a shot of several characters.
            owner = np.full((H, W), -1, np.int8) if several else None
            mask = np.zeros((H, W), bool)
            for who in back_to_front:
                mask = self._draw(frame, plans[names[who]][t], t, tinted[who], tint, scale, who, owner)
            if several:
                assert owner is not None
                mask = owner >= 0
                character_masks.append({names[k]: owner == k for k in range(len(names))})
            else:
                character_masks.append({names[0]: mask})
            masks.append(mask)
            if storyboard is None:
                storyboard = frame.copy()
            if subtitle is not None:
                subtitle.over(frame)
            frames.append(frame)
        assert storyboard is not None
        return ShotRender(frames=frames, storyboard=storyboard, storyboard_mask=masks[0], layouts=layouts, masks=masks,
                          storyboard_masks=character_masks[0], character_masks=character_masks,
                          character_layouts=plans)

    def _draw(self, frame: np.ndarray, lay: ShotLayout, t: int, tinted: list[np.ndarray],
              tint: tuple[float, ...], scale: Callable[..., _Overlay], who: int, owner: np.ndarray | None) -> np.ndarray:
        """Composite one character at frame `t` (as `lay` places it, with its water and shadow) onto `frame`;
        its pixels seen now (bool H×W). `owner` (several characters) is marked with `who` where it is seen,
        and with -1 where its water covers whoever was there."""
        cfg = self.config
        H, W = frame.shape[:2]
        index = int(t / cfg.fps * cfg.sprite_fps) % len(tinted)
        width, height, left, top = _placement(tinted[index].shape[:2], lay.subject_box, lay.scale_x / lay.scale_y)
        sprite = scale(who, index, lay.flipped, width, height)
        if lay.angle:
            sprite, left, top = sprite.turned(lay.rotation, left, top, W, H)
        if lay.water_line is not None:
            surface = round(lay.water_line)
            sprite = sprite.above(surface - top)
            water = self._cache.get(("water", W, H, surface, tint),
                                    lambda at=surface: _Overlay.of(_water_layer(W, H, at, tint)))
            wet = None if owner is None else np.zeros((H, W), bool)
            water.over(frame, mask=wet)
            if owner is not None:
                owner[wet] = -1
        if lay.ground is not None:
            _ground_shadow(frame, sprite, left, top, lay.ground)
        mask = np.zeros((H, W), bool)
        sprite.over(frame, top, left, mask)
        if owner is not None:
            owner[mask] = who
        return mask


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
        pose = between(layouts[i], layouts[i + 1], w - i)
        out.append(replace(pose, camera=layouts[t].camera, subtitle_box=layouts[t].subtitle_box))
    return out


def _even(x: float) -> int:
    return int(math.ceil(x / 2) * 2)


def _tint(sprite: np.ndarray, tint: np.ndarray) -> np.ndarray:
    rgb = np.clip(sprite[..., :3].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return np.dstack([rgb, sprite[..., 3]])


def _scale_sprite(sprite: np.ndarray, width: int, height: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if height < sprite.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(sprite), (width, height), interpolation=interpolation)


def _placement(sprite_hw: tuple[int, int], box: Box, stretch: float = 1.0) -> tuple[int, int, int, int]:
    """(width, height, left, top) of a sprite of size `sprite_hw` scaled to the box's height, `stretch`
    times wider than its own proportions (squash and stretch), and centred in the box: it stays inside
    the box (rounded inwards)."""
    x0, y0, x1, y1 = box
    sh, sw = sprite_hw
    th = max(1, math.floor(y1 - y0))
    tw = max(1, min(math.floor(x1 - x0), round(sw * th / sh * stretch)))
    return tw, th, math.ceil((x0 + x1 - tw) / 2 - 1e-6), math.ceil(y0 - 1e-6)


def _ground_shadow(frame: np.ndarray, sprite: _Overlay, left: int, top: int, ground: float) -> None:
    """A soft contact shadow on the ground under the sprite placed at (`left`, `top`), smaller the higher
    the subject is above the ground; skipped when the ground is off the frame."""
    if ground >= frame.shape[0] - 2 or not sprite.opaque.any():
        return
    rows, cols = np.flatnonzero(sprite.opaque.any(axis=1)), np.flatnonzero(sprite.opaque.any(axis=0))
    x0, x1 = left + sprite.left + cols[0], left + sprite.left + cols[-1] + 1
    y0, y1 = top + sprite.top + rows[0], top + sprite.top + rows[-1] + 1
    above = max(0.0, ground - y1)
    _shadow(frame, (x0 + x1) / 2, ground - 2, max(4.0, (x1 - x0) / 3) * max(0.4, 1 - above / max(1, y1 - y0)))


def _water_layer(W: int, H: int, surface: int, tint: tuple[float, float, float]) -> np.ndarray:
    """An RGBA overlay of water from row `surface` down: a bright surface line, then translucent water with
    a few lighter ripples, lit by the scene's `tint`."""
    layer = np.zeros((H, W, 4), np.uint8)
    top = max(0, surface)
    if top >= H:
        return layer
    light = np.array(tint, np.float32)
    layer[top:, :, :3] = np.clip(np.array([45, 115, 170], np.float32) * light, 0, 255).astype(np.uint8)
    layer[top:, :, 3] = 190
    rng = np.random.default_rng(surface)  # the same ripples for the same surface
    for _ in range(max(1, W // 40)):
        y = int(rng.integers(top + 3, max(top + 4, H)))
        x = int(rng.integers(0, W))
        cv2.line(layer, (x, y), (x + int(rng.integers(8, 24)), y), (*np.clip(np.array([150, 200, 230]) * light, 0, 255).tolist(), 200), 1)
    layer[top:top + 2, :, :3] = np.clip(np.array([200, 230, 245], np.float32) * light, 0, 255).astype(np.uint8)
    layer[top:top + 2, :, 3] = 230
    return layer


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


@dataclass(frozen=True)
class _Overlay:
    """An RGBA picture ready to be composited, `frame·(1 - a) + rgb·a`: kept only over the box of its
    non-transparent pixels (elsewhere compositing leaves the frame exactly as it was)."""

    size: tuple[int, int]
    """The picture's height and width."""
    top: int
    left: int
    """Where the box of its non-transparent pixels starts in it."""
    inverse: np.ndarray
    """1 - a, float32 h×w×1."""
    premultiplied: np.ndarray
    """rgb·a, float32 h×w×3."""
    opaque: np.ndarray
    """a > 0.5, bool h×w."""

    @classmethod
    def of(cls, rgba: np.ndarray) -> _Overlay:
        alpha = rgba[..., 3]
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        top, bottom = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        left, right = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 0)
        crop = rgba[top:bottom, left:right]
        a = crop[..., 3:4].astype(np.float32) / 255.0
        return cls(alpha.shape, top, left, 1 - a, crop[..., :3].astype(np.float32) * a, crop[..., 3] > 127)

    def turned(self, rotation: np.ndarray, left: int, top: int, W: int, H: int) -> tuple[_Overlay, int, int]:
        """The picture placed at (`left`, `top`) and then turned by `rotation` (2×3, frame coordinates), as a
        new picture and the (left, top) it goes at; only the part inside the W×H frame is kept."""
        h, w = self.opaque.shape
        if h == 0 or w == 0:
            return self, left, top
        # Pixel (i, j) of the crop has its centre at (left + self.left + j + .5, top + self.top + i + .5) in the
        # frame; turned, that centre lands on the destination pixel whose centre is there.
        lin = rotation[:, :2]
        origin = np.array([left + self.left + 0.5, top + self.top + 0.5])
        shift = lin @ origin + rotation[:, 2] - 0.5
        corners = lin @ np.array([[-0.5, w - 0.5, w - 0.5, -0.5], [-0.5, -0.5, h - 0.5, h - 0.5]]) + shift[:, None]
        x0, y0 = max(0, math.floor(corners[0].min()) - 1), max(0, math.floor(corners[1].min()) - 1)
        x1, y1 = min(W, math.ceil(corners[0].max()) + 2), min(H, math.ceil(corners[1].max()) + 2)
        if x1 <= x0 or y1 <= y0:
            return _Overlay((0, 0), 0, 0, np.ones((0, 0, 1), np.float32), np.zeros((0, 0, 3), np.float32),
                            np.zeros((0, 0), bool)), 0, 0
        matrix = np.hstack([lin, (shift - [x0, y0])[:, None]]).astype(np.float32)
        # Premultiplied colour and alpha turn together, so edges blend to the frame, never to black.
        source = np.dstack([self.premultiplied, 1 - self.inverse])  # h×w×4
        out = cv2.warpAffine(source, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.clip(out[..., 3:4], 0.0, 1.0)
        return _Overlay((y1 - y0, x1 - x0), 0, 0, 1 - alpha, out[..., :3], alpha[..., 0] > 0.5), x0, y0

    def above(self, row: int) -> _Overlay:
        """The picture without its rows from `row` down (its own coordinates): what shows above water."""
        keep = max(0, min(self.opaque.shape[0], row - self.top))
        return replace(self, inverse=self.inverse[:keep], premultiplied=self.premultiplied[:keep],
                       opaque=self.opaque[:keep])

    @property
    def nbytes(self) -> int:
        return self.inverse.nbytes + self.premultiplied.nbytes + self.opaque.nbytes

    def over(self, frame: np.ndarray, y: int = 0, x: int = 0, mask: np.ndarray | None = None) -> None:
        """Composite the picture onto `frame` in place with its top-left corner at (`y`, `x`), clipped to
        the frame; `mask` (bool, the frame's size) is set where it is opaque."""
        H, W = frame.shape[:2]
        h, w = self.opaque.shape
        y0, x0 = y + self.top, x + self.left
        t, l, b, r = max(0, -y0), max(0, -x0), min(h, H - y0), min(w, W - x0)
        if b <= t or r <= l:
            return
        rows, cols = slice(y0 + t, y0 + b), slice(x0 + l, x0 + r)
        region = frame[rows, cols]
        region[...] = (region.astype(np.float32) * self.inverse[t:b, l:r] + self.premultiplied[t:b, l:r]).astype(np.uint8)
        if mask is not None:
            mask[rows, cols] = self.opaque[t:b, l:r]


class _Cache:
    """A small least-recently-used cache of arrays (or `_Overlay`s), bounded by their bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]  # type: ignore[return-value]
        value = make()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        size = int(value.nbytes)  # type: ignore[attr-defined]
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, size)
                self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return value

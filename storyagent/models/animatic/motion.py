"""How the cut-out acts a shot's action: a table from verbs to motions, and each motion frame by frame.

`motion_of("tries to swim")` names the motion ("swim"); `act(action, n, fps, seed)` gives its frames as an
`Acting` (offsets, lift, rotation, squash and stretch, mirroring, water line), relative to the subject's
resting place. `layout.plan_shot` turns that into boxes in the frame and keeps them inside it.

Which verb is the action when a line holds several: words that only lead to another verb ("tries to",
"learns to", "takes a deep breath and") are not in the table, so they never count; of the table's verbs,
the motion highest in `PRECEDENCE` wins. That order puts what changes the body or its medium most first
(falling, water, sleep, air, climbing, hopping) before travelling (run, walk) and gestures (turn, wave): in
"runs and jumps" the jump is what is seen, in "falls and gets up" the fall. A verb after a negation ("does
not swim", "can't fly") or straight after "the" (a noun: "watches the waves") does not count. A line with
none of the table's verbs glides, as every shot did before motions existed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

MOTIONS = ("hop", "fall", "swim", "walk", "run", "sleep", "turn", "wave", "fly", "climb", "glide")
PRECEDENCE = ("fall", "swim", "sleep", "fly", "climb", "hop", "run", "walk", "turn", "wave")
"""When an action names several motions, the first of these wins (see the module's docstring)."""

VERB_MOTION: dict[str, str] = {
    **dict.fromkeys(("hop", "jump", "leap", "bounce", "skip", "pounce", "vault"), "hop"),
    **dict.fromkeys(("fall", "trip", "slip", "tumble", "stumble", "topple", "collapse"), "fall"),
    **dict.fromkeys(("swim", "paddle", "dive", "float", "splash", "wade"), "swim"),
    **dict.fromkeys(("walk", "stroll", "march", "wander", "stride", "tiptoe", "roam", "hike", "trudge", "amble",
                     "creep", "sneak", "explore", "arrive"), "walk"),
    **dict.fromkeys(("run", "race", "hurry", "chase", "dash", "sprint", "rush", "scamper", "gallop", "jog", "flee",
                     "scurry"), "run"),
    **dict.fromkeys(("sleep", "nap", "rest", "doze", "snooze", "slumber"), "sleep"),
    **dict.fromkeys(("turn", "spin", "twirl", "pivot"), "turn"),
    **dict.fromkeys(("wave", "greet", "cheer", "celebrate", "clap"), "wave"),
    **dict.fromkeys(("fly", "soar", "flutter", "hover"), "fly"),
    **dict.fromkeys(("climb", "clamber", "scramble", "scale"), "climb"),
}
PHRASE_MOTION: dict[tuple[str, ...], str] = {
    ("fall", "asleep"): "sleep", ("curl", "up"): "sleep", ("lie", "down"): "sleep", ("settle", "down"): "sleep",
    ("look", "around"): "turn", ("look", "round"): "turn", ("look", "back"): "turn",
    ("float", "up"): "fly", ("float", "away"): "fly", ("float", "in", "air"): "fly", ("float", "through", "air"): "fly",
    ("float", "in", "sky"): "fly", ("take", "off"): "fly", ("drift", "up"): "fly",
    ("set", "off"): "walk", ("set", "out"): "walk", ("head", "home"): "walk", ("head", "off"): "walk",
    ("head", "out"): "walk",
}
"""Verbs whose meaning a following word changes ("falls asleep" sleeps, "floats in the air" flies); the
first word in any form, the rest as written, articles skipped."""
IRREGULAR: dict[str, tuple[str, ...]] = {
    "fall": ("fell", "fallen"), "swim": ("swam", "swum"), "run": ("ran",), "sleep": ("slept",),
    "fly": ("flew", "flown"), "spin": ("spun",), "dive": ("dove",), "leap": ("leapt",), "lie": ("lay", "lain"),
    "creep": ("crept",), "sneak": ("snuck",), "stride": ("strode",), "flee": ("fled",), "take": ("took", "taken"),
}
ARTICLES = frozenset({"a", "an", "the", "its", "his", "her", "their", "some"})
NEGATIONS = frozenset({"not", "never", "cannot", "without", "no"})

HOP_PERIOD = 0.9  # seconds per hop
HOP_HEIGHT = 0.35  # subject heights at the top of a hop
SQUASH = 0.2  # how much shorter the subject is at take-off and landing
STRETCH = 0.12  # how much taller it is in the air
WALK_SPEED, WALK_MAX = 0.1, 0.3  # frame widths per second, and at most over a clip
RUN_SPEED, RUN_MAX = 0.22, 0.5
RUN_LEAN = 10.0  # degrees forward
FALL_DROP = 0.15  # subject heights the fallen body lies below the feet it stood on
SWIM_WATER = 0.66  # the water line, as a fraction of the subject's height from its top (below the face)
SLEEP_BREATH = 3.0  # seconds per breath


@dataclass(frozen=True)
class Acting:
    """A motion of the cut-out over a clip: one value per frame (arrays of length n), relative to its
    resting place. Horizontal offsets are fractions of the frame width (the subject walks across the
    frame whatever its size); vertical ones are fractions of the subject's height (a hop is as high as
    the subject is tall)."""

    name: str
    """The motion: one of `MOTIONS`."""
    dx: np.ndarray
    """Horizontal offset, frame widths (+ = right)."""
    dy: np.ndarray
    """Vertical offset of the feet, subject heights (+ = down)."""
    lift: np.ndarray
    """How far the feet are above the ground, subject heights (the shadow stays on the ground)."""
    angle: np.ndarray
    """Rotation about the pivot, degrees counter-clockwise on screen (OpenCV's sense)."""
    scale_x: np.ndarray
    """Width factor (squash and stretch, breathing, the turn's edge-on moment)."""
    scale_y: np.ndarray
    """Height factor, about the feet."""
    flipped: np.ndarray
    """The sprite is mirrored (bool)."""
    pivot: float = 1.0
    """Where the sprite turns: a fraction of its height from the top (1 = the feet), at its centre line."""
    water: float | None = None
    """The water line as a fraction of the resting subject's height from its top; None: no water."""
    shadow: bool = True
    """A contact shadow on the ground under the subject."""

    def followed(self, travel: float, height: float) -> Acting:
        """The motion as a camera that follows the subject films it: its moves across the frame kept to
        `travel` of their size, up and down to `height` (a close-up tracks its subject)."""
        return replace(self, dx=self.dx * travel, dy=self.dy * height, lift=self.lift * height)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))


def _forms(verb: str) -> set[str]:
    """Every form of `verb` a shot's action may use: base, -s, -ed, -ing, doubled consonants, irregulars.
    Forms that English does not have (walkked) are harmless: no action contains them."""
    forms = {verb, verb + "s", verb + "es", verb + "ed", verb + "ing", verb + "d"}
    if verb.endswith("e"):
        forms.add(verb[:-1] + "ing")
    if verb.endswith("ie"):
        forms.add(verb[:-2] + "ying")
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied"}
    if re.search(r"[^aeiou][aeiou][^aeiouwxy]$", verb):  # hop -> hopping, swim -> swimming
        forms |= {verb + verb[-1] + "ed", verb + verb[-1] + "ing"}
    return forms | set(IRREGULAR.get(verb, ()))


_BASE: dict[str, str] = {}
for _verb in sorted({*VERB_MOTION, *(p[0] for p in PHRASE_MOTION)}):
    for _form in _forms(_verb):
        _BASE.setdefault(_form, _verb)


def base_verb(word: str) -> str | None:
    """The table's verb `word` is a form of ("swimming" -> "swim", "fell" -> "fall"), else None."""
    return _BASE.get(word.lower())


def motion_of(action: str) -> str:
    """The motion that acts `action` (see the module's docstring for which verb wins); "glide" if none."""
    words = _tokens(action)
    found: set[str] = set()
    for i, word in enumerate(words):
        base = base_verb(word)
        if base is None or (i and words[i - 1] == "the"):
            continue
        if any(w in NEGATIONS or w.endswith("n't") for w in words[max(0, i - 3):i]):
            continue
        rest = [w for w in words[i + 1:i + 4] if w not in ARTICLES]
        phrase = next((m for p, m in PHRASE_MOTION.items() if p[0] == base and tuple(rest[:len(p) - 1]) == p[1:]), None)
        motion = phrase or VERB_MOTION.get(base)
        if motion:
            found.add(motion)
    return next((m for m in PRECEDENCE if m in found), "glide")


def act(action: str, n: int, fps: float, seed: int, motion: str | None = None) -> Acting:
    """The frames of `action` acted over `n` frames at `fps`; `seed` picks the direction it goes
    (right or left). `motion` names the motion instead of reading it from the action."""
    name = motion or motion_of(action)
    if name not in MOTIONS:
        raise ValueError(f"unknown motion {name!r}; use one of {', '.join(MOTIONS)}")
    rng = np.random.default_rng(seed)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    t = np.arange(n, dtype=np.float64)
    s = t / fps  # seconds
    u = t / max(n - 1, 1)  # 0 .. 1 over the clip
    duration = n / fps
    zero, one = np.zeros(n), np.ones(n)
    base = {"dx": zero, "dy": zero, "lift": zero, "angle": zero, "scale_x": one, "scale_y": one,
            "flipped": np.zeros(n, bool)}
    goes_left = np.full(n, direction < 0)

    if name == "hop":
        hops = max(1, round(duration / HOP_PERIOD))
        p = (s * hops / duration) % 1.0
        count = np.floor(s * hops / duration)
        crouch, land = p < 0.15, p >= 0.85
        q = np.clip((p - 0.15) / 0.7, 0.0, 1.0)  # 0 .. 1 through the air
        air = ~(crouch | land)
        ground = np.where(crouch, np.sin(math.pi * p / 0.15), np.where(land, np.sin(math.pi * (p - 0.85) / 0.15), 0.0))
        # Squashed on the ground before and after, stretched in the air (most near take-off and landing).
        sy = np.where(air, 1 + STRETCH * (0.5 + 0.5 * np.abs(2 * q - 1)), 1 - SQUASH * ground)
        sx = np.where(air, 1 - 0.6 * (sy - 1), 1 + 0.75 * SQUASH * ground)
        lift = np.where(air, HOP_HEIGHT * 4 * q * (1 - q), 0.0)
        travel = min(0.08 * hops, 0.3)
        progress = (count + np.where(crouch, 0.0, np.where(land, 1.0, q))) / hops
        return Acting(name, **{**base, "dx": direction * travel * (progress - 0.5), "dy": -lift, "lift": lift,
                                "scale_x": sx, "scale_y": sy, "flipped": goes_left})
    if name == "fall":
        # Stands, tips forward faster and faster about its feet, lands lying and bounces once.
        v = np.clip((u - 0.15) / 0.45, 0.0, 1.0)
        bounce = np.where((u > 0.6) & (u < 0.8), 0.05 * np.sin(math.pi * (u - 0.6) / 0.2), 0.0)
        # Forward is the way it faces: top to the right is clockwise, a negative angle.
        # It lands a little in front of where it stood: lower in the frame, as a body dropping to the ground.
        return Acting(name, **{**base, "dx": direction * 0.04 * v, "dy": FALL_DROP * v ** 2 - bounce, "lift": bounce,
                                "angle": -direction * 88.0 * v ** 2, "flipped": goes_left})
    if name == "swim":
        bob = 0.03 * np.sin(2 * math.pi * s / 1.4)
        return Acting(name, **{**base, "dx": direction * 0.1 * (u - 0.5), "dy": bob,
                                "angle": 3.0 * np.sin(2 * math.pi * s / 1.4),
                                "flipped": goes_left}, water=SWIM_WATER, shadow=False)
    if name in ("walk", "run"):
        speed, most, step, bounce = (WALK_SPEED, WALK_MAX, 0.5, 0.03) if name == "walk" else (RUN_SPEED, RUN_MAX, 0.3, 0.05)
        travel = min(speed * duration, most)
        lift = bounce * np.abs(np.sin(math.pi * s / step))
        lean = -direction * RUN_LEAN * one if name == "run" else zero
        return Acting(name, **{**base, "dx": direction * travel * (u - 0.5), "dy": -lift, "lift": lift, "angle": lean,
                                "flipped": goes_left})
    if name == "sleep":
        # Lying on its side from the first frame, breathing: the body (now horizontal) swells and settles.
        breath = 1 + 0.04 * np.sin(2 * math.pi * s / SLEEP_BREATH)
        return Acting(name, **{**base, "angle": direction * 90.0 * one, "scale_x": breath}, pivot=0.5)
    if name == "turn":
        # A card turning over: narrower towards the middle of the clip, mirrored from there on.
        edge = np.clip(np.abs(u - 0.5) / 0.2, 0.15, 1.0)
        return Acting(name, **{**base, "scale_x": edge, "flipped": u >= 0.5})
    if name == "wave":
        return Acting(name, **{**base, "angle": 7.0 * np.sin(2 * math.pi * s / 0.9)})
    if name == "fly":
        rise = 0.5 * (0.5 - 0.5 * np.cos(math.pi * u)) + 0.03 * np.sin(2 * math.pi * s / 1.1)
        return Acting(name, **{**base, "dx": direction * 0.12 * (u - 0.5), "dy": -rise, "lift": rise,
                                "angle": -direction * 6.0 * one, "flipped": goes_left})
    if name == "climb":
        sway = np.sin(2 * math.pi * s / 0.8)
        return Acting(name, **{**base, "dx": 0.01 * sway, "dy": -0.4 * u, "angle": 3.0 * sway}, shadow=False)
    # glide: a small drift and a gentle breathing bob, the motion of a shot whose action names no motion.
    return Acting(name, **{**base, "dx": direction * 0.03 * (u - 0.5),
                            "dy": -0.022 * (0.5 + 0.5 * np.sin(4 * math.pi * s))})

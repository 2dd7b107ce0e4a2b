"""How a line is said (`VoiceStyle`) and how a reviewer's words change it ("say it slower", "happier").

The words are read with a small vocabulary, not a model: a redo note is a few words, and the same
note must give the same style on every machine (the narration stem's hash includes the style).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

RATE_RANGE = (0.5, 2.0)
PITCH_RANGE = (-12.0, 12.0)
ENERGY_RANGE = (0.25, 2.0)


@dataclass(frozen=True)
class Effect:
    """What one request does at its plain strength ("slower"); "a bit" halves it, "much" doubles it."""

    rate: float = 1.0
    """Factor on the speaking rate."""
    pitch: float = 0.0
    """Semitones added to the pitch."""
    energy: float = 1.0
    """Factor on the loudness/liveliness."""


EFFECTS: dict[str, Effect] = {
    "slower": Effect(rate=0.85),
    "faster": Effect(rate=1.15),
    "happier": Effect(rate=1.04, pitch=1.5, energy=1.15),
    "sadder": Effect(rate=0.94, pitch=-1.5, energy=0.85),
    "louder": Effect(energy=1.25),
    "softer": Effect(energy=0.8),
    "calmer": Effect(rate=0.92, pitch=-0.5, energy=0.88),
    "higher": Effect(pitch=2.0),
    "lower": Effect(pitch=-2.0),
}
OPPOSITE = {"slower": "faster", "faster": "slower", "happier": "sadder", "sadder": "happier",
            "louder": "softer", "softer": "louder", "higher": "lower", "lower": "higher", "calmer": "happier"}

# Phrases that ask for an effect by themselves. Plain adjectives that also describe pictures or actions
# ("fast", "quiet", "high") count only after a degree word ("too fast", "more quiet"): WEAK below.
STRONG: dict[str, tuple[str, ...]] = {
    "slower": ("slower", "slowly", "slow down", "slow it down", "take your time", "take its time",
               "take it slow", "don't rush", "do not rush", "dont rush", "less rushed", "unhurried", "leisurely"),
    "faster": ("faster", "quicker", "quickly", "speed up", "speed it up", "hurry", "hurry up",
               "pick up the pace", "brisker", "pacier", "it drags", "drags"),
    "happier": ("happier", "cheerful", "cheerfully", "cheerier", "cheery", "joy", "joyful", "joyous", "upbeat",
                "excited", "excitedly", "livelier", "playful", "delighted", "with a smile"),
    "sadder": ("sadder", "sadly", "melancholy", "melancholic", "gloomy", "gloomier", "somber", "sombre",
               "mournful", "sorrowful", "downbeat", "wistful", "tearful"),
    "louder": ("louder", "loudly", "speak up", "more volume", "volume up", "turn it up", "project more"),
    "softer": ("softer", "softly", "quieter", "quietly", "whisper", "whispered", "whispering", "gentler", "gently",
               "hushed", "lower the volume", "lower your voice", "less volume", "volume down", "turn it down"),
    "calmer": ("calmer", "calmly", "relaxed", "soothing", "serene", "peaceful", "more relaxed"),
    "higher": ("higher", "higher pitch", "higher pitched", "high pitched", "raise the pitch", "pitch up"),
    "lower": ("lower", "lower pitch", "lower pitched", "deeper", "deep voice", "lower the pitch", "pitch down"),
}
WEAK: dict[str, tuple[str, ...]] = {
    "slower": ("slow",), "faster": ("fast", "quick", "rushed"), "happier": ("happy", "cheer"),
    "sadder": ("sad",), "louder": ("loud",), "softer": ("soft", "quiet"), "calmer": ("calm",),
    "higher": ("high",), "lower": ("low", "deep"),
}
# Before a phrase: what the degree word does to it. "too fast" and "less cheerful" ask for the opposite.
INVERT = ("too", "less", "not so", "not as", "not that", "no more")
HALF = ("a bit", "a little", "a tad", "a touch", "slightly", "somewhat", "bit", "little")
DOUBLE = ("much", "a lot", "way", "far", "very", "really", "lot", "even", "a great deal")
# Words that make a plain adjective a request about the voice ("sound happy"); "so" and "be" are left out,
# as "the fox should be happy" is about the picture.
SAME = ("more", "sound", "sounds", "say it", "read it", "speak", "talk")

_PHRASES = sorted(((p, name, name in STRONG and p in STRONG[name]) for table in (STRONG, WEAK)
                   for name, phrases in table.items() for p in phrases), key=lambda t: -len(t[0].split()))


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


@dataclass(frozen=True)
class VoiceStyle:
    """How a line is said. Engines map it onto what they can change; what one cannot, it ignores."""

    rate: float = 1.0
    """Speaking speed: 1 is the voice's normal speed, 0.8 slower, 1.25 faster."""
    pitch: float = 0.0
    """Pitch shift in semitones: +2 higher, -2 lower."""
    energy: float = 1.0
    """Loudness/liveliness factor: 1 normal, 0.8 softer, 1.25 louder."""

    def __post_init__(self) -> None:
        for name, value, low in (("rate", self.rate, 0.0), ("energy", self.energy, 0.0)):
            if not math.isfinite(value) or value <= low:
                raise ValueError(f"A voice style's {name} must be a number above 0, got {value!r}.")
        if not math.isfinite(self.pitch):
            raise ValueError(f"A voice style's pitch must be a number of semitones, got {self.pitch!r}.")

    @classmethod
    def from_words(cls, words: str, base: VoiceStyle | None = None) -> VoiceStyle:
        """`base` (default: the plain style) changed by what `words` ask: slower, faster, happier, sadder,
        louder, softer, calmer, higher, lower, each as a reviewer might put it ("a bit slower please",
        "too fast", "less cheerful", "much louder"). Words about anything else change nothing."""
        style = base or cls()
        asked = requests(words)
        if not asked:
            return style
        rate, pitch, energy = style.rate, style.pitch, style.energy
        for name, strength in asked:
            effect = EFFECTS[name]
            rate *= effect.rate ** strength
            pitch += effect.pitch * strength
            energy *= effect.energy ** strength
        # Rounded so that the same words give the same style, and the same narration hash, everywhere.
        return replace(style, rate=round(_clamp(rate, RATE_RANGE), 4), pitch=round(_clamp(pitch, PITCH_RANGE), 3),
                       energy=round(_clamp(energy, ENERGY_RANGE), 4))

    def describe(self) -> str:
        """Short and stable, for hashes and logs: "rate 0.85, pitch +0, energy 1"."""
        return f"rate {self.rate:g}, pitch {self.pitch:+g}, energy {self.energy:g}"


def requests(words: str) -> list[tuple[str, float]]:
    """What `words` ask of the voice, in order: (effect name, strength), strength 0.5 for "a bit", 2 for
    "much"; a request made by a degree word that inverts it ("too fast") names the opposite effect."""
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)?", words.lower().replace("’", "'"))
    found: list[tuple[str, float]] = []
    i = 0
    while i < len(tokens):
        match = next(((p, name, strong) for p, name, strong in _PHRASES
                      if tokens[i:i + len(p.split())] == p.split()), None)
        if match is None:
            i += 1
            continue
        phrase, name, strong = match
        before = tokens[max(0, i - 3):i]
        inverted = any(_ends_with(before, w) for w in INVERT)
        degree = 2.0 if any(_ends_with(before, w) or _ends_with(before[:-1], w) for w in DOUBLE) else (
            0.5 if any(_ends_with(before, w) or _ends_with(before[:-1], w) for w in HALF) else 1.0)
        if strong or inverted or degree != 1.0 or any(_ends_with(before, w) for w in SAME):
            found.append((OPPOSITE[name] if inverted else name, degree))
        i += len(phrase.split())
    return found


def _ends_with(tokens: list[str], phrase: str) -> bool:
    words = phrase.split()
    return len(tokens) >= len(words) and tokens[len(tokens) - len(words):] == words

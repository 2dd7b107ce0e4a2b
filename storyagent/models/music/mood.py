"""What a shot should sound like, read from its words: the mood (from what is said and done), the
place and the time of day (from the background).

`ShotFeel.from_shot(shot)` -> mood "trouble", place "forest", time "night"; the composer turns that
into a mode, a tempo, a loudness and instruments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storyagent.models.animatic.scene_words import normalise_words, place_in, time_in
from storyagent.schemas import Shot

# Each mood with the words that call it up. "trouble" covers sad, worried and frightened: the
# storybook minor key; "tense" is suspense that has not yet turned into trouble.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "trouble": (
        "trouble", "sad", "sadly", "sadness", "worried", "worry", "worries", "afraid", "scared", "fear", "frightened",
        "lost", "alone", "lonely", "cry", "cries", "cried", "crying", "tears", "weep", "froze", "frozen with fear",
        "trembling", "trembles", "shivers", "shivering", "giving up", "give up", "gave up", "hid", "hides", "hiding",
        "moan", "gloomy", "broken", "broke", "missing", "angry", "upset", "stuck", "trapped", "fell", "falls",
        "sigh", "sighs", "sighed", "oh no", "danger", "dangerous", "storm", "forgotten", "forgot", "failed", "fails",
        "would not", "could not", "cannot", "nobody", "miss", "misses", "hurt", "sorry", "disappointed", "gone",
    ),
    "tense": (
        "creak", "something moved", "held very still", "still", "sneak", "sneaks", "tiptoe", "tiptoes", "suddenly",
        "searches", "search", "searching", "peeks", "peek", "listens", "whisper", "whispers", "shadow", "shadows",
        "strange", "mystery", "noise", "surprise", "puff of smoke", "looks up", "stops",
    ),
    "joy": (
        "happy", "happily", "happier", "joy", "joyful", "smile", "smiles", "smiled", "grin", "grins", "grinned",
        "laugh", "laughs", "laughed", "proud", "wonderful", "celebrate", "celebrates", "cheer", "cheers", "dance",
        "dances", "danced", "delighted", "hooray", "love", "loved", "friends", "friend", "shared", "shares", "golden",
        "hug", "hugs", "waves", "play", "plays", "played", "fun", "glad", "won", "wins", "it worked", "at last",
        "brave", "thanks", "thanked", "perfect", "treasure", "beautiful",
    ),
    "calm": (
        "rest", "rests", "rested", "sleep", "sleeps", "slept", "sleepy", "sits", "sits down", "quiet", "quietly",
        "gentle", "gently", "peaceful", "soft", "softly", "calm", "curled up", "dream", "dreams", "yawn", "yawns",
        "deep breath", "waited", "waits", "slowly", "carefully", "home",
    ),
    "lively": (
        "run", "runs", "ran", "races", "raced", "jumps", "jumped", "hurry", "hurries", "chase", "chases", "fast",
        "adventure", "explore", "explores", "fly", "flies", "flew", "leaps", "leapt", "rush", "rushes", "ready",
        "eager", "excited", "off", "sets out", "set out", "zoom", "spin", "spins", "climb", "climbs", "swim", "swims",
    ),
}

# Which mood wins when a line has several words of equal weight: trouble colours a line most.
MOOD_ORDER = ("trouble", "joy", "tense", "lively", "calm")


@dataclass(frozen=True)
class ShotFeel:
    """What a shot's music expresses."""

    mood: str
    """One of "trouble", "tense", "joy", "lively", "calm", or "neutral" when no mood word is used."""
    place: str
    """A key of the animatic's PLACE_WORDS ("meadow" when the shot names no place)."""
    time: str
    """A time of day: "dawn", "morning", "noon", "afternoon", "dusk" or "night"."""

    @classmethod
    def from_shot(cls, shot: Shot) -> ShotFeel:
        words = f"{shot.narration} {shot.subject_action}"
        scene = f"{shot.background} {shot.description}"
        return cls(mood=mood_in(words), place=place_in(scene) or "meadow", time=time_in(scene) or "noon")

    @property
    def minor(self) -> bool:
        return self.mood in ("trouble", "tense")

    @property
    def dark(self) -> bool:
        """Night (or dusk): the music is softer and lower."""
        return self.time in ("night", "dusk")


# "not afraid any more", "no longer sad", "never lonely again": a trouble word denied is calm, a
# happy one denied ("not fun") is trouble; other moods denied count for nothing.
DENIED = {"trouble": "calm", "joy": "trouble"}
NEGATION = r"(?:not|no longer|never|n't|no more|nothing to)\s+(?:\w+\s+)?"


def mood_counts(text: str) -> dict[str, int]:
    """How many words of each mood the text uses (whole words and phrases), a denied word counted
    as DENIED says."""
    joined = normalise_words(text).replace("n't", " n't")
    counts = dict.fromkeys(MOOD_WORDS, 0)
    for mood, words in MOOD_WORDS.items():
        for w in words:
            for m in re.finditer(rf"\b{re.escape(w)}\b", joined):
                if not re.search(rf"{NEGATION}$", joined[:m.start()]):
                    counts[mood] += 1
                elif mood in DENIED:
                    counts[DENIED[mood]] += 1
    return counts


def mood_in(text: str) -> str:
    """The mood the text's words lean to most; "neutral" when it names none."""
    counts = mood_counts(text)
    best = max(MOOD_ORDER, key=lambda m: (counts[m], -MOOD_ORDER.index(m)))
    return best if counts[best] else "neutral"

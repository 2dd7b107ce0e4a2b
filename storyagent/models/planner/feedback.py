"""Reading a reviewer's words about one shot: "make it night", "move it to the beach", "pan left",
"close-up", "Bolt is in the kitchen kneading dough". Each understood request becomes a field of
`Revision`; words it does not know are ignored, and a `Revision` with no field set means the
feedback was not understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from storyagent.models.animatic.scene_words import PLACE_WORDS, TIME_WORDS, WEAK_TIME_WORDS, WEATHER_WORDS, time_in, weather_in
from storyagent.models.planner.verbs import NOT_ACTIONS, VERBS, base_of, third

CAMERA_PATTERNS: list[tuple[str, str]] = [
    (r"\bpan(?:ning|s)?\s+(?:to\s+the\s+)?left\b", "pan left"), (r"\bpan(?:ning|s)?\s+(?:to\s+the\s+)?right\b", "pan right"),
    (r"\bzoom(?:ing|s)?\s+(?:in|closer)\b|\bpush(?:es)?\s+in\b", "zoom in"),
    (r"\bzoom(?:ing|s)?\s+(?:out|back)\b|\bpull(?:s)?\s+(?:back|out)\b", "zoom out"),
    (r"\btilt(?:ing|s)?\s+up\b", "tilt up"), (r"\btilt(?:ing|s)?\s+down\b", "tilt down"),
    (r"\bstatic\b|\b(?:still|steady|locked|fixed)\s+camera\b|\bcamera\s+still\b|\bno\s+camera\s+(?:move|motion)|"
     r"\bdon'?t\s+move\s+the\s+camera\b|\bhold\s+(?:the\s+)?(?:camera|shot)\b", "static"),
    (r"\bpan(?:ning)?\b", "pan right"), (r"\bzoom(?:ing)?\b", "zoom in"),
]
SHOT_PATTERNS: list[tuple[str, str]] = [
    (r"\bclose[\s-]?up\b|\bcloser\b|\btighter\b", "close-up"),
    (r"\bwide(?:r)?\b|\bestablishing\b|\blong\s+shot\b|\bfull\s+shot\b|\bfurther\s+away\b|\bfarther\b", "wide"),
    (r"\bmedium\b|\bmid[\s-]?shot\b", "medium"),
]
REGION_PATTERN = re.compile(r"\b(?:to|on|at|in)\s+the\s+(left|right|middle|center|centre)\b(?!\s+of)")
CLEAR_WEATHER = re.compile(r"\b(?:no|without|stop\s+the|less)\s+(?:rain|storm|fog|snow|mist)\b|\bclear\s+up\b|\bdry\b")
BRIGHTER, DARKER = re.compile(r"\bbright(?:er)?\b|\blight(?:er)?\b|\bdaytime\b|\bdaylight\b"), re.compile(r"\bdark(?:er)?\b")
# Place words that are adjectives, or read better as a fuller phrase.
PLACE_PHRASE_FOR: dict[str, str] = {
    "haunted": "the haunted house", "spooky": "the haunted house", "underwater": "the coral reef under the sea",
    "under the sea": "the coral reef under the sea", "undersea": "the coral reef under the sea", "snowy": "the snowy hills",
    "icy": "the icy hills", "frozen": "the frozen pond", "winter": "the winter snow", "arctic": "the arctic ice",
    "polar": "the polar ice", "home": "a cosy room at home", "indoors": "a cosy room at home", "space": "outer space",
    "inside": "a cosy room at home", "ski": "the ski slope", "trees": "the trees of the forest", "flowers": "a flowery meadow",
    "flower": "a flowery meadow", "grass": "a grassy meadow", "waves": "the waves by the sea",
}
# Verbs that carry a request ("make it night", "move it") rather than describe an action.
REQUEST_VERBS = frozenset({"make", "have", "let", "want", "try", "become", "get", "go", "take", "keep", "see", "give",
                           "look", "bring", "put", "set"})
ACTION_STOPS = frozenset({"and", "then", "while", "at", "in", "on", "but", "so", "as", "make", "please", "instead",
                          "now", "with", "during", "under", "near", "inside"})
CONTROL = re.compile(r"\b(?:make|have|let|should|could|must|will|can|to)\s+(?:\w+\s+)?$")


@dataclass(frozen=True)
class Revision:
    """What a reviewer asked for one shot; None where they asked nothing."""

    time: str | None = None
    """A key of TIME_WORDS."""
    weather: str | None = None
    """A key of WEATHER_WORDS, or "fair" to clear the weather."""
    place: str | None = None
    """A key of PLACE_WORDS."""
    place_phrase: str | None = None
    """How the background names the new place ("the kitchen")."""
    camera: str | None = None
    shot_type: str | None = None
    region: str | None = None
    """'left', 'center' or 'right'."""
    action: str | None = None
    """What the subject does now, third person ("kneads dough")."""

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _place(text: str) -> tuple[str, str] | None:
    """(place key, phrase) of the first place word in `text`."""
    best: tuple[int, int, str, str] | None = None
    for key, words in PLACE_WORDS.items():
        for word in words:
            m = re.search(rf"\b{re.escape(word)}\b", text)
            if m and (best is None or (m.start(), -len(word)) < best[:2]):
                best = (m.start(), -len(word), key, word)
    if best is None:
        return None
    _, _, key, word = best
    return key, PLACE_PHRASE_FOR.get(word, f"the {word}")


def _action(text: str) -> str | None:
    """The subject's new action: an -ing phrase ('kneading dough'), a conjugated verb ('jumps'), or
    a verb after 'make him'/'should' ('should dance'); third person, up to four more words."""
    skip = {w for table in (TIME_WORDS, WEATHER_WORDS, WEAK_TIME_WORDS) for ws in table.values() for w in ws}
    tokens = [(m.group(), m.start()) for m in re.finditer(r"[a-z']+", text)]
    for i, (tok, pos) in enumerate(tokens):
        if tok in skip or tok in NOT_ACTIONS or tok in ("pan", "zoom", "tilt", "panning", "zooming", "tilting"):
            continue
        base = base_of(tok)
        if base in REQUEST_VERBS:
            continue
        ing = tok.endswith("ing") and len(tok) >= 5
        if base is None and not ing:
            continue
        if base is not None and tok == base and not CONTROL.search(text[:pos]):
            continue
        rest: list[str] = []
        for nxt, _ in tokens[i + 1:i + 5]:
            if nxt in ACTION_STOPS or nxt in skip:
                break
            rest.append(nxt)
        head = third(base) if base is not None and base in VERBS else f"is {tok}"
        return " ".join([head, *rest])
    return None


def _pick(patterns: list[tuple[str, str]], text: str) -> str | None:
    for pattern, value in patterns:
        if re.search(pattern, text):
            return value
    return None


def parse_feedback(feedback: str) -> Revision:
    """The changes `feedback` asks for (an empty Revision when it asks for none the planner knows)."""
    text = re.sub(r"^\s*redo\s+[\d,\s]+:\s*", "", feedback.lower()).replace("_", " ")
    camera = _pick(CAMERA_PATTERNS, text)
    # Camera words are not places or actions: 'zoom in on the house' keeps the house out of the way.
    moves = "|".join(f"(?:{p})" for p, _ in CAMERA_PATTERNS[:6])
    rest = re.sub(rf"(?:{moves})(?:\s+(?:on|at|to|towards|onto)\s+(?:the\s+|a\s+|an\s+)?[\w']+)?", " ", text)
    time = time_in(rest, weak=False)
    if time is None:
        time = "night" if DARKER.search(rest) else ("noon" if BRIGHTER.search(rest) or re.search(r"\bday\b", rest) else None)
    weather = "fair" if CLEAR_WEATHER.search(rest) else weather_in(rest)
    place = _place(rest)
    # "make it snow" asks for snow falling here, not for a move to the snowy hills.
    if place and place[0] == "snow" and re.search(r"\bsnow(?:y|ing)?\b", rest) and not re.search(r"\b(?:to|into)\s+the\b", rest):
        place, weather = None, weather or "snowfall"
    region = REGION_PATTERN.search(rest)
    return Revision(time=time, weather=weather, place=place[0] if place else None, place_phrase=place[1] if place else None,
                    camera=camera, shot_type=_pick(SHOT_PATTERNS, rest),
                    region={"middle": "center", "centre": "center"}.get(region.group(1), region.group(1)) if region else None,
                    action=_action(rest))


def understood(feedback: str) -> bool:
    """Whether the offline planner can act on `feedback` (else `revise_shot` leaves the shot as it was)."""
    return not parse_feedback(feedback).empty


# ---- words that name a character of a cast ----------------------------------------------------

REDO_PREFIX = re.compile(r"^\s*(?:redo|redraw|again)\s+(?:shots?\s+)?\[?[\d,\s\-and]+\]?\s*(?::|-|—)?\s*", re.IGNORECASE)
# Words that stand where a name would ("Make it night", "Everyone waves") but name nobody.
COMMON_WORDS = frozenset({
    "it", "its", "a", "an", "the", "please", "more", "less", "then", "now", "and", "but", "so", "he", "she", "they",
    "him", "her", "them", "both", "everyone", "everybody", "nobody", "someone", "somebody", "all", "each", "this", "that",
    "these", "those", "there", "here", "no", "not", "very", "too", "instead", "also", "just", "shot", "shots", "scene",
    "camera", "picture", "frame", "i", "we", "you", "his", "their", "our", "my", "your", "let's", "maybe", "could",
    "would", "should", "can", "will", "must", "one", "two", "three", "other", "others", "another", "character",
    "characters", "friend", "friends", "nothing", "something", "everything", "again", "still", "only", "first", "last",
    "left", "right", "center", "centre", "middle", "close", "closer", "wide", "wider", "medium", "night", "day",
    "morning", "evening", "sunset", "sunrise", "darker", "brighter", "lighter", "slower", "faster", "louder", "softer",
    "quieter", "happier", "sadder", "bigger", "smaller", "yes", "ok", "okay", "good", "bad", "fine", "great", "nice",
    "better", "worse", "story", "line", "voice", "music", "sound", "narrator", "narration", "title"})
# After a name: a verb ("Mo waves", "Mo is ..."), a place in the frame ("Crong on the left") or a possessive.
_AFTER_NAME = re.compile(r"^(?:'s\b|\s+(?:is|was|should|must|can|could|will|would|does|to|on|in|at|stands?|moves?|goes)\b|"
                         r"\s+[a-z]+(?:s|ed|ing)\b)")
_BEFORE_NAME = re.compile(r"\b(?:move|make|have|let|put|get|want|give|show|bring|place|with|and|than)\s+$", re.IGNORECASE)


@dataclass(frozen=True)
class CastFeedback:
    """A reviewer's words about one shot of a cast's film."""

    who: str | None
    """The character of the cast the words name first (by name, or by class word: "the owl"); None if none."""
    unknown: str | None
    """A name the words use for someone not in the cast ("Crongo on the left"); None if none."""
    revision: Revision
    """What the words ask, read with the characters' names taken out ("Mo waves": an action, not a move to the sea)."""


def _known_word(word: str) -> bool:
    from storyagent.models.planner.reading import DETERMINERS, MODALS, STOPS

    low = word.lower()
    scene = {w for table in (PLACE_WORDS, TIME_WORDS, WEATHER_WORDS, WEAK_TIME_WORDS) for ws in table.values() for w in ws}
    return (low in COMMON_WORDS or low in REQUEST_VERBS or low in STOPS or low in DETERMINERS or low in MODALS
            or low in scene or base_of(low) is not None or any(re.search(p, low) for p, _ in CAMERA_PATTERNS + SHOT_PATTERNS))


def parse_cast_feedback(feedback: str, cast: list[tuple[str, str]]) -> CastFeedback:
    """Who of `cast` ((name, class word) pairs) the words name, a name they use for no one of it, and what they ask."""
    text = REDO_PREFIX.sub("", feedback)
    found: list[tuple[int, str]] = []
    words = [c.strip().lower() for _, c in cast]
    for name, cls in cast:
        patterns = [re.escape(name)]
        if cls and cls.lower() != "character" and words.count(cls.strip().lower()) == 1:
            patterns.append(rf"(?:the|a|an)\s+{re.escape(cls.strip())}")
        for m in re.finditer(rf"(?<!\w)(?:{'|'.join(patterns)})(?:'s)?(?!\w)", text, flags=re.IGNORECASE):
            found.append((m.start(), name))
    who = min(found)[1] if found else None
    for name, cls in cast:
        text = re.sub(rf"(?<!\w)(?:(?:the|a|an)\s+{re.escape(cls.strip())}|{re.escape(name)})(?:'s)?(?!\w)"
                      if cls and cls.lower() != "character" and words.count(cls.strip().lower()) == 1
                      else rf"(?<!\w){re.escape(name)}(?:'s)?(?!\w)", " ", text, flags=re.IGNORECASE)
    unknown = None
    for m in re.finditer(r"(?<![\w'])[A-Z][a-z]+(?:[A-Z][a-z]+)?(?![\w'])", text):
        if _known_word(m.group()):
            continue
        if _AFTER_NAME.match(text[m.end():]) or _BEFORE_NAME.search(text[:m.start()]):
            unknown = m.group()
            break
    rev = parse_feedback(text)
    if rev.region is not None:
        # "on the left" is where a character stands, not something it does (it "leaves").
        rev = replace(rev, action=parse_feedback(REGION_PATTERN.sub(" ", text.lower())).action)
    if rev.place is not None and rev.action is not None:
        # "waves", "park": a verb said of a character is not a place; a place named apart from it still counts.
        head = rev.action.split()[0]
        place = _place(re.sub(rf"\b{re.escape(head)}\b", " ", text.lower()))
        rev = replace(rev, place=place[0] if place else None, place_phrase=place[1] if place else None)
    return CastFeedback(who=who, unknown=unknown, revision=rev)


def not_in_cast(name: str, cast: list[str]) -> str:
    """The one sentence a reviewer gets for a name that is no one of the cast."""
    return (f"{name} is not in the cast ({', '.join(cast)}): name one of them, or leave the name out, and say it "
            "again.")

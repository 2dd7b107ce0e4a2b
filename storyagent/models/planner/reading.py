"""How the offline planner reads a prompt: its kind of story, setting, subject, verb and object.

"a robot learns to bake bread" -> baking story in the kitchen, subject "robot", verb "bake",
object "the bread". A few rules of thumb, no parser: a verb counts when it is conjugated
("guards", "exploring") or follows "to"; a noun right after an article never counts as a verb
("a treasure hunt").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storyagent.models.animatic.scene_words import place_in, time_in, weather_in
from storyagent.models.planner.arc import SETTING_NAME
from storyagent.models.planner.genres import GENRES
from storyagent.models.planner.verbs import base_of, gerund, past, third

DETERMINERS = frozenset({"a", "an", "the", "some", "his", "her", "their", "my", "our", "its", "your", "this", "that"})
# Words that end a verb's object.
STOPS = frozenset({"in", "at", "on", "by", "with", "for", "to", "from", "under", "near", "during", "into", "through",
                   "across", "and", "but", "while", "of", "underwater", "today", "tonight", "again", "together",
                   "alone", "because", "before", "after", "until", "when", "all", "every", "around", "over", "who"})
# "far from home" or "the way home" is where the character wants to be, not where the story is set.
HOME_GOAL = re.compile(r"\b(way|from|back|get|gets|go|goes|going|come|comes|coming|walk|walks|head|heads|find|finds)\s+home\b")
# Where an activity happens, when the prompt names no place ("learns to swim" -> the lake).
VERB_PLACE = {"swim": "lake", "fish": "lake", "paddle": "lake", "sail": "sea", "surf": "sea", "dive": "underwater",
              "ski": "snow", "skate": "snow", "climb": "mountain", "hike": "mountain", "camp": "forest", "bake": "kitchen",
              "cook": "kitchen", "shop": "market", "harvest": "farm", "milk": "farm", "study": "school"}
FEAR_OF = re.compile(r"\b(?:afraid|scared|frightened|terrified)\s+of\s+((?:the\s+)?[a-z]+)")


@dataclass(frozen=True)
class Reading:
    """What a prompt says, in the pieces the story templates are filled with."""

    genre: str
    """A key of GENRES."""
    place: str
    """Where the story happens: the place the prompt names, else its genre's usual setting."""
    named_place: bool
    """Whether the prompt itself names the place."""
    subject: str | None
    """What the character is, when the prompt says ("robot" in "a robot learns ...")."""
    verb: str
    """Base form of what the character sets out to do."""
    thing: str
    """What the story is about ("the bread")."""
    time: str | None
    """A time of day the prompt names explicitly."""
    weather: str | None
    """The weather the prompt names."""
    has_object: bool = True
    """Whether `verb` takes `thing` as its object ("bake the bread"; "shop" alone)."""

    def slots(self) -> dict[str, str]:
        """The verb and object slots of the story templates."""
        obj = f" {self.thing}" if self.has_object else ""
        return {"do": self.verb + obj, "doing": _verb_form(self.verb, gerund) + obj,
                "did": _verb_form(self.verb, past) + obj, "does": _verb_form(self.verb, third) + obj,
                "thing": self.thing, "Thing": _title(self.thing), "setting": SETTING_NAME[self.place]}


def _verb_form(verb: str, form) -> str:
    """A form of the first word of a verb phrase ('help with' -> 'helping with')."""
    head, _, rest = verb.partition(" ")
    return (form(head) + " " + rest).strip()


def _title(phrase: str) -> str:
    words = [w for w in phrase.split() if w not in DETERMINERS]
    return " ".join(w[:1].upper() + w[1:] for w in words) or "Day"


def _genre(tokens: list[str]) -> str:
    """The genre whose words the prompt uses most (the earlier genre on a tie); 'adventure' if none."""
    scores = {name: sum(t in g.keys for t in tokens) for name, g in GENRES.items()}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] > 0 else "adventure"


def _main_verb(tokens: list[str]) -> tuple[int, str] | None:
    """(index, base) of the action verb; 'learns to bake' gives bake, not learn."""
    for i, tok in enumerate(tokens):
        base = base_of(tok)
        if base is None or (i and tokens[i - 1] in DETERMINERS):
            continue
        conjugated = tok != base and tok != past(base)
        if not (conjugated or (i and tokens[i - 1] == "to") or (i == 0 and tok == base)):
            continue
        j = i + 1
        if j + 1 < len(tokens) and tokens[j] == "how" and tokens[j + 1] == "to":
            j += 1
        if j + 1 < len(tokens) and tokens[j] == "to" and base_of(tokens[j + 1]) == tokens[j + 1]:
            return j + 1, tokens[j + 1]
        return i, base
    return None


def _object(tokens: list[str], start: int) -> str | None:
    """The noun phrase after the verb, as 'the X' ('a castle' -> 'the castle'), at most three words."""
    words: list[str] = []
    for tok in tokens[start:]:
        if tok in STOPS or (tok in DETERMINERS and words):
            break
        if tok in DETERMINERS:
            continue
        words.append(tok)
        if len(words) == 3:
            break
    return "the " + " ".join(words) if words else None


def _subject(tokens: list[str]) -> str | None:
    """The character the prompt starts with: 'a (little) robot' right before its verb or 'afraid'."""
    if not tokens or tokens[0] not in DETERMINERS:
        return None
    for i, tok in enumerate(tokens[1:4], start=1):
        base = base_of(tok)
        if tok in {"afraid", "scared", "frightened", "who", "that"} or (base is not None and tok not in (base, past(base))):
            return " ".join(tokens[1:i]) if i > 1 else None
        if tok in STOPS or tok in DETERMINERS:
            return None
    return None


def read_prompt(prompt: str) -> Reading:
    """The story pieces in `prompt` (any language; words it does not know leave the defaults)."""
    text = re.sub(r"\s+", " ", prompt.lower()).strip()
    tokens = re.findall(r"[a-z']+", text)
    subject = _subject(tokens)
    # The character is not the plot: "a dragon who wants to fly" is about flying, not a dragon to face.
    plot = [t for t in tokens if t not in (subject or "").split()]
    genre_name = _genre(plot)
    genre = GENRES[genre_name]
    named = place_in(HOME_GOAL.sub(" ", text))
    found = _main_verb(tokens)
    place = named or VERB_PLACE.get(found[1] if found else "", genre.place)
    verb, thing, has_object = genre.verb, None, True
    if found is not None:
        verb = found[1]
        thing = _object(tokens, found[0] + 1)
        has_object = thing is not None
    fear = FEAR_OF.search(text)
    if thing is None and fear:
        thing = fear.group(1) if fear.group(1).startswith("the ") else "the " + fear.group(1)
    if thing is None:
        noun = next((t for t in plot if t in genre.things), None)
        thing = f"the {noun}" if noun else genre.thing.format(setting=SETTING_NAME[place])
    return Reading(genre=genre_name, place=place, named_place=named is not None, subject=subject,
                   verb=verb, thing=thing, time=time_in(text, weak=False), weather=weather_in(text),
                   has_object=has_object or found is None)

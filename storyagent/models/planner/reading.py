"""How the offline planner reads a prompt: its kind of story, its action, its place, subject and object.

"a robot learns to bake bread" -> learning to bake, subject "robot", object "the bread", in the
kitchen (where baking happens, the prompt naming no place). "an astronaut lost in a jungle" -> no
action, the place noun "jungle", drawn as the jungle. A few rules of thumb, no parser:
- a verb counts when it is conjugated ("climbs", "swam", "exploring"), follows "to" or a modal
  ("can fly"), or opens the prompt; never right after an article or a preposition ("a treasure
  hunt", "among the plants");
- "learns to X", "wants to X", "dreams of X-ing" make X the action and the story a learning arc;
  "loves to X", "decides to X" make X the action; "goes X-ing", "takes a nap" make the X the action;
- a place word counts anywhere when it is a place ("forest", "kitchen", "snowy"), and only after a
  preposition or as the action's object when it is a thing found at a place ("sofa", "tree").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storyagent.models.animatic.scene_words import PLACE_WORDS, TIME_WORDS, WEAK_TIME_WORDS, WEATHER_WORDS, time_in, weather_in
from storyagent.models.planner.arc import SETTING_NAME
from storyagent.models.planner.genres import GENRES
from storyagent.models.planner.verbs import base_of, forms, gerund, participle, past, third

DETERMINERS = frozenset({"a", "an", "the", "some", "his", "her", "their", "my", "our", "its", "your", "this", "that",
                         "these", "those"})
# Words that end a verb's object.
STOPS = frozenset({"in", "at", "on", "by", "with", "for", "to", "from", "under", "near", "during", "into", "through",
                   "across", "and", "but", "while", "of", "underwater", "today", "tonight", "again", "together",
                   "alone", "because", "before", "after", "until", "when", "all", "every", "around", "over", "who",
                   "along", "onto", "towards", "toward", "beside", "behind", "inside", "outside", "among", "past",
                   "up", "down", "off", "out", "away", "then", "so", "or", "like", "without", "as", "is", "are"})
# Prepositions before a place ("in the jungle"), and the one a place phrase uses for each.
LOCATIVE = {"in": "in", "inside": "in", "into": "in", "within": "in", "at": "at", "to": "at", "on": "on", "onto": "on",
            "upon": "on", "by": "by", "beside": "beside", "near": "near", "towards": "near", "toward": "near",
            "under": "under", "below": "below", "beneath": "under", "across": "across", "along": "along",
            "through": "through", "around": "around", "over": "over", "above": "over", "among": "among",
            "behind": "behind", "from": "near", "past": "past", "up": "up", "down": "down", "outside": "outside"}
# A word right after one of these is a noun, not a verb ("among the plants", "a walk").
NOT_BEFORE_VERB = DETERMINERS | (frozenset(LOCATIVE) - {"to", "up", "down"}) | {"of", "with", "for", "about"}
# "far from home" or "the way home" is where the character wants to be, not where the story is set.
HOME_GOAL = re.compile(r"\b(way|from|back|get|gets|go|goes|going|come|comes|coming|walk|walks|head|heads|find|finds|"
                       r"run|runs|fly|flies|swim|swims|hurry|hurries|race|races)\s+home\b")
# A subject these words start is plural, so its verb is bare ("two mice build a boat").
COUNTED = frozenset({"two", "three", "four", "five", "six", "seven", "many", "several", "some", "all"})
# Verbs that take another verb: "learns to swim", "loves dancing", "dreams of flying".
CONTROL = frozenset({"learn", "want", "try", "hope", "dream", "wish", "practise", "practice", "attempt", "love", "like",
                     "decide", "need", "plan", "start", "begin", "refuse", "forget", "pretend", "imagine", "long"})
# The control verbs that make a learning story: trying, failing, help, success.
LEARNING = frozenset({"learn", "want", "try", "hope", "dream", "wish", "practise", "practice", "attempt", "long", "need"})
# Verbs that say little alone and take the action after them: "goes swimming", "takes a nap", "has a swim".
LIGHT = frozenset({"go", "take", "have", "come", "get"})
MODALS = frozenset({"can", "could", "will", "would", "must", "should", "may", "might", "cannot", "can't", "won't",
                    "let's", "shall", "to"})
# Verbs that say what the character is or has, not what it does: "wants to be a pilot".
NOT_ACTIONS = frozenset({"be", "become", "feel", "seem", "stay", "keep", "know", "see", "say", "think", "understand"})
# Words kept with the verb: "falls off", "wakes up", "falls asleep", "jumps high".
PARTICLES = frozenset({"up", "down", "off", "out", "away", "asleep", "back", "high", "fast", "around", "about", "over",
                       "home"})
# Past participles that describe a state, not an action: "an astronaut lost in a jungle".
STATES = frozenset({"lost", "stuck", "trapped", "frozen", "scared", "tired", "broken", "left", "stranded", "hidden",
                    "locked", "born", "called", "named", "made", "lonely", "alone"})
# What happens to a character rather than what it sets out to do: the story follows the event.
EVENTS = frozenset({"fall", "drop", "tumble", "slip", "sink", "melt", "break", "spill", "crash", "shrink", "hatch",
                    "bloom", "blossom", "freeze", "trip", "stumble", "lose", "wake", "sneeze"})
# Place words that are things found at a place: they set the scene only after a preposition ("on the
# sofa") or as the action's object ("climbs a tree"), never as a character ("a tree that sings").
PLACE_CUES = frozenset({"stove", "oven", "bed", "sofa", "throne", "tree", "trees", "flower", "flowers", "grass", "waves",
                        "rocket", "submarine", "tractor", "haystack", "cactus", "blackboard", "front door", "porch",
                        "doorstep", "coral", "boat", "ship", "ski", "camp", "stable", "dune", "dunes", "bath",
                        "bathtub", "vines", "rainbow", "air", "cloud", "clouds", "stall", "stalls", "square", "lane",
                        "road", "station", "tower", "bed", "home", "stage", "pool", "field", "yard", "mine", "tunnel",
                        "planet", "spaceship", "moat", "drawbridge", "throne", "bridge", "skyscraper", "skyscrapers",
                        "fireplace"})
# Where an activity happens, when the prompt names no place ("learns to swim" -> the lake); with an
# object some happen elsewhere ("flies a kite" -> a meadow, "flies" alone -> the sky).
VERB_PLACE = {"swim": "lake", "fish": "lake", "paddle": "lake", "row": "lake", "wade": "lake", "splash": "lake",
              "float": "lake", "sail": "sea", "surf": "sea", "dive": "underwater", "snorkel": "underwater",
              "ski": "snow", "skate": "snow", "sled": "snow", "snowboard": "snow", "climb": "mountain", "hike": "mountain",
              "trek": "mountain", "camp": "forest", "bake": "kitchen", "cook": "kitchen", "fry": "kitchen",
              "brew": "kitchen", "shop": "market", "harvest": "farm", "milk": "farm", "herd": "farm", "shear": "farm",
              "study": "school", "spell": "school", "count": "school", "fly": "sky", "soar": "sky", "glide": "sky",
              "hover": "sky", "swoop": "sky", "flutter": "sky", "sleep": "room", "nap": "room", "read": "room",
              "knit": "room", "sew": "room", "write": "room", "plant": "meadow", "dig": "meadow", "garden": "meadow",
              "water": "meadow", "drive": "city", "explore": "forest", "hunt": "forest", "gallop": "meadow",
              "ride": "meadow", "kick": "meadow", "race": "meadow", "sprint": "meadow", "jog": "meadow"}
OBJECT_PLACE = {"fly": "meadow", "float": "lake", "drive": "city"}
# Prepositions after which an unknown noun is taken for a place ("in the gazebo"; not "to the owl", "on a wheel").
UNKNOWN_PLACE_PREPOSITIONS = frozenset({"in", "inside", "into", "at", "across", "through", "along", "around", "among",
                                        "within"})
# Nouns ending in -ly, not adverbs ("chases a butterfly").
LY_NOUNS = frozenset({"butterfly", "dragonfly", "firefly", "jelly", "belly", "lily", "family", "holly", "bully", "ally",
                      "fly", "rally", "folly", "gully", "trolly", "puppy", "jolly"})
# Nouns after a preposition that are not places ("in the end", "in a hurry", "in the match").
NOT_PLACES = frozenset({"way", "end", "middle", "hurry", "time", "moment", "world", "mood", "game", "match", "team",
                        "story", "book", "dream", "dreams", "competition", "contest", "show", "class", "lesson", "family",
                        "group", "crowd", "picture", "photo", "film", "movie", "song", "sun", "wind", "light", "shade",
                        "shadow", "shadows", "distance", "summer", "spring", "autumn", "year", "week", "future", "past",
                        "life", "spotlight", "open", "dark", "cold", "heat", "race", "first", "last", "best", "same",
                        "back", "front", "top", "bottom", "side", "left", "right", "corner", "center", "centre", "edge",
                        "hope", "search", "hands", "arms", "lap", "pocket", "box", "bag", "basket", "head", "air",
                        "party", "picnic", "festival", "concert", "parade", "wedding", "birthday", "feast", "celebration",
                        "holiday", "holidays", "adventure", "journey", "trip", "quest", "mission", "rain", "snow", "fog",
                        "storm", "sunshine", "morning", "evening", "night", "afternoon", "spotlight", "news", "mirror"})
FEAR_OF = re.compile(r"\b(?:afraid|scared|frightened|terrified)\s+of\s+((?:the\s+)?[a-z]+)")
_NOT_ADJECTIVES = {w for table in (TIME_WORDS, WEAK_TIME_WORDS, WEATHER_WORDS) for ws in table.values() for w in ws}
# Multi-word place names first, so "swimming pool" is read before "pool".
_PLACE_ENTRIES = sorted(((tuple(word.split()), key) for key, words in PLACE_WORDS.items() for word in words),
                        key=lambda entry: -len(entry[0]))
# Words that are only ever adjectives of a place ("a haunted house", "a snowy hill").
_PLACE_ADJECTIVES = frozenset({"haunted", "spooky", "snowy", "icy", "frozen", "underwater", "undersea", "polar", "arctic",
                               "winter"})


@dataclass(frozen=True)
class Reading:
    """What a prompt says, in the pieces the story templates are filled with."""

    genre: str
    """A key of GENRES."""
    place: str
    """Where the story happens: the place the prompt names, else where its action happens, else its genre's setting."""
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
    action: str | None = None
    """Base form of the action the prompt itself names ("swim"); None when it names none."""
    particle: str = ""
    """A word kept with the action: "off" in "falls off the table", "asleep" in "falls asleep"."""
    arc: str | None = None
    """How the story follows the action: "learn" (trying, failing, help, success), "do" (the action carried
    through the five beats) or "happen" (an event: before, the event, stuck, help, laughing about it)."""
    place_noun: str | None = None
    """The prompt's own words for its place, with their adjectives ("snowy mountain", "jungle")."""
    place_head: str | None = None
    """The head noun of `place_noun` ("mountain"): every shot's background holds it."""
    place_prep: str = "in"
    """The preposition the prompt puts before its place ("across" the river)."""
    place_article: bool = True
    """Whether the prompt says "the/a jungle" (False for "in space", "at school")."""
    genre_named: bool = False
    """Whether words of the prompt (other than its action) call the genre up."""

    def slots(self) -> dict[str, str]:
        """The verb and object slots of the story templates ({do} "climb the mountain", {Does} "Climbs the Mountain")."""
        obj = f" {self.thing}" if self.has_object else ""
        verb = f"{self.verb} {self.particle}".strip()
        out = {"do": verb + obj, "doing": _verb_form(verb, gerund) + obj, "did": _verb_form(verb, past) + obj,
               "does": _verb_form(verb, third) + obj, "done": _verb_form(verb, participle) + obj,
               "thing": self.thing, "Thing": _title(self.thing), "setting": SETTING_NAME[self.place]}
        for key in ("do", "doing", "did", "does"):
            out[key[:1].upper() + key[1:]] = _title(out[key], keep_articles=True)
        return out


def _verb_form(verb: str, form) -> str:
    """A form of the first word of a verb phrase ('help with' -> 'helping with')."""
    head, _, rest = verb.partition(" ")
    return (form(head) + " " + rest).strip()


def _title(phrase: str, keep_articles: bool = False) -> str:
    words = [w for w in phrase.split() if keep_articles or w not in DETERMINERS]
    small = {"the", "a", "an", "of", "to", "in", "on", "at", "by", "and"}
    return " ".join(w if (keep_articles and i and w in small) else w[:1].upper() + w[1:]
                    for i, w in enumerate(words)) or "Day"


def _genre(tokens: list[str]) -> str:
    """The genre whose words the prompt uses most (the earlier genre on a tie); 'adventure' if none."""
    scores = {name: sum(t in g.keys for t in tokens) for name, g in GENRES.items()}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] > 0 else "adventure"


@dataclass(frozen=True)
class _Verb:
    index: int
    """Where the action's verb stands in the tokens."""
    base: str
    arc: str
    control: int | None = None
    """Where the verb that carries it stands ("learns" in "learns to swim"), if any."""


def _is_word(tok: str) -> bool:
    return tok not in DETERMINERS and tok not in STOPS and tok not in MODALS and len(tok) > 1


def _after_control(tokens: list[str], j: int) -> tuple[int, str] | None:
    """The verb a control or light verb at j-1 hands on to: 'to (how to) X', 'X-ing', 'of X-ing', 'for a X'."""
    if j + 1 < len(tokens) and tokens[j] == "how" and tokens[j + 1] == "to":
        j += 1
    if j < len(tokens) and tokens[j] in ("of", "about", "for", "on") and j + 1 < len(tokens):
        j += 1
    if j < len(tokens) and tokens[j] in DETERMINERS:
        j += 1
    if j >= len(tokens):
        return None
    if tokens[j] == "to" and j + 1 < len(tokens) and _is_word(tokens[j + 1]):
        word = tokens[j + 1]
        # After "to" comes a verb, known or not ("learns to yodel"); a known verb in another form is read back.
        return j + 1, base_of(word) if base_of(word) == word else word
    base = base_of(tokens[j])
    if base is not None and tokens[j] in (gerund(base), base):
        return j, base
    return None


def _main_verb(tokens: list[str]) -> _Verb | None:
    """The action the prompt names: 'learns to bake' gives bake (a learning arc), 'a goat climbs' climb."""
    for i, tok in enumerate(tokens):
        base = base_of(tok)
        prev = tokens[i - 1] if i else ""
        if base is None or prev in NOT_BEFORE_VERB or tok in STATES:
            continue
        if tok == base:
            # A bare verb after "to", a modal or a plural or paired subject: "two friends race", "a fox and a hare race".
            plural = prev.endswith("s") and not prev.endswith(("'s", "ss", "us", "is")) and base_of(prev) is None and prev not in STOPS
            counted = bool(tokens) and tokens[0] in COUNTED  # "two mice build", "three friends race"
            counts = (i == 0 or counted or prev in MODALS or prev in ("and", "who", "that", "then", "always", "never", "often")
                      or plural or ("and" in tokens[:i] and prev not in STOPS))
        else:
            counts = True
        if not counts:
            continue
        if base in CONTROL or base in LIGHT:
            handed = _after_control(tokens, i + 1)
            if handed is not None and handed[1] not in LIGHT and handed[1] not in CONTROL and handed[1] not in NOT_ACTIONS:
                arc = "learn" if base in LEARNING else ("happen" if handed[1] in EVENTS else "do")
                return _Verb(handed[0], handed[1], arc, control=i)
            # "wants a friend", "goes to the moon": no action of their own; read on.
            continue
        return _Verb(i, base, "happen" if base in EVENTS else "do")
    return None


def _adverb(word: str) -> bool:
    return word.endswith("ly") and word not in LY_NOUNS


def _object(tokens: list[str], start: int) -> str | None:
    """The noun phrase after the verb, as 'the X' ('a castle' -> 'the castle'), at most three words."""
    words: list[str] = []
    for tok in tokens[start:]:
        if tok in STOPS or (tok in DETERMINERS and words) or _adverb(tok) or tok in MODALS:
            break
        if words and base_of(tok) is not None and tok != base_of(tok):
            break  # the next verb: "catches fish and sings"
        if tok in _NOT_ADJECTIVES and not words:
            break  # "sleeps all night", "runs at dawn"
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
        if tok in {"afraid", "scared", "frightened", "who", "that", "lost", "stuck", "alone"} or (
                base is not None and tok not in (base, past(base)) and tokens[i - 1] not in DETERMINERS):
            return " ".join(tokens[1:i]) if i > 1 else None
        if tok in STOPS or tok in DETERMINERS:
            return None
    return None


@dataclass(frozen=True)
class _Place:
    key: str
    """The drawn scene: a key of PLACE_WORDS."""
    noun: str
    """The prompt's words for it, adjectives included ("snowy mountain")."""
    head: str
    """Its head noun ("mountain")."""
    prep: str
    article: bool


def _mentions(tokens: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, key) of every place word in the tokens, the longest name at each position."""
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        for words, key in _PLACE_ENTRIES:
            if tuple(tokens[i:i + len(words)]) == words:
                out.append((i, i + len(words), key))
                i += len(words)
                break
        else:
            i += 1
    return out


def _place(tokens: list[str], verb: _Verb | None, obj_start: int | None) -> _Place | None:
    """The place the prompt names: the first true place word, else the first thing-at-a-place word that
    follows a preposition or is the action's object."""
    skip = {verb.index} if verb else set()
    found: list[tuple[bool, int, int, str, str]] = []
    for start, end, key in _mentions(tokens):
        if start in skip:
            continue
        word = " ".join(tokens[start:end])
        before = [t for t in tokens[max(0, start - 3):start] if t not in DETERMINERS and t not in _NOT_ADJECTIVES]
        if word == "home" and start and HOME_GOAL.search(f"{tokens[start - 1]} home"):
            continue
        prep = next((t for t in reversed(tokens[max(0, start - 3):start]) if t in LOCATIVE), None)
        cue = word in PLACE_CUES
        if cue and prep is None and start != obj_start and not (before and before[-1] in LOCATIVE):
            continue
        found.append((cue, start, end, key, word))
    if not found:
        return None
    cue, start, end, key, word = min(found, key=lambda f: (f[0], f[1]))
    # The noun phrase: a second place word right after ("haunted house", "coral reef"), and up to two
    # describing words before it ("cold river", "tall pine forest"), never a time or weather word.
    following = [m for m in _mentions(tokens[end:end + 2]) if m[0] == 0]
    if following and tokens[end] not in _PLACE_ADJECTIVES and (
            word in _PLACE_ADJECTIVES or following[0][2] == key or tokens[end] not in PLACE_CUES):
        end += following[0][1]
    first = start
    while first > 0 and start - first < 2:
        tok = tokens[first - 1]
        if (tok in DETERMINERS or tok in LOCATIVE or tok in STOPS or tok in _NOT_ADJECTIVES or base_of(tok) is not None
                or first - 1 in skip or tok in MODALS or tok.endswith("'s")):
            break
        first -= 1
    article = first > 0 and tokens[first - 1] in DETERMINERS
    prep_word = next((t for t in reversed(tokens[max(0, first - 2):first]) if t in LOCATIVE), None)
    noun_words = tokens[first:end]
    inside = _mentions(noun_words)
    if noun_words[0] in LOCATIVE:
        # A place name that is itself a phrase ("under the sea"): named by its last word, said whole.
        return _Place(key=key, noun=" ".join(noun_words), head=noun_words[-1], prep="", article=True)
    # Drawn as its first place word ("snowy mountain": snow); named by its last ("mountain").
    return _Place(key=inside[0][2], noun=" ".join(noun_words), head=noun_words[inside[-1][1] - 1],
                  prep=LOCATIVE.get(prep_word or "", "by" if cue else "in"), article=article or not prep_word)


def _unknown_place(tokens: list[str], verb: _Verb | None, usual: str) -> _Place | None:
    """A place no table knows, after "in/at/on the" ("in the gazebo"): its word is kept; it is drawn as the
    scene whose place word ends it ("ballroom": a room, "boathouse": a house), else where the action or
    the genre usually happens."""
    for i in range(len(tokens) - 2):
        if tokens[i] not in UNKNOWN_PLACE_PREPOSITIONS or tokens[i + 1] not in DETERMINERS:
            continue
        j = i + 2
        # Up to one describing word: "in the old gazebo".
        if j + 1 < len(tokens) and tokens[j + 1] not in STOPS and tokens[j + 1] not in DETERMINERS and base_of(tokens[j + 1]) is None:
            j += 1
        noun = tokens[j]
        if (verb is not None and j == verb.index) or noun in NOT_PLACES or noun in _NOT_ADJECTIVES or len(noun) < 3 \
                or base_of(noun) is not None or noun in STOPS or noun.endswith("'s") or not noun.isalpha():
            continue
        ending = next((key for words, key in _PLACE_ENTRIES if len(words) == 1 and len(words[0]) >= 4
                       and noun.endswith(words[0])), None)
        return _Place(key=ending or usual, noun=" ".join(tokens[i + 2:j + 1]), head=noun,
                      prep=LOCATIVE.get(tokens[i], "in"), article=True)
    return None


def read_prompt(prompt: str) -> Reading:
    """The story pieces in `prompt` (any language; words it does not know leave the defaults)."""
    text = re.sub(r"\s+", " ", prompt.lower()).strip()
    tokens = re.findall(r"[a-z']+", text)
    subject = _subject(tokens)
    found = _main_verb(tokens)
    # The character is not the plot ("a dragon who wants to fly" is about flying, not a dragon to face),
    # and the action is not a genre: "learns to swim" is a swimming story, not a race.
    taken = set((subject or "").split())
    if found is not None:
        taken |= set(forms(found.base)) | ({tokens[found.control]} if found.control is not None else set())
    plot = [t for t in tokens if t not in taken]
    genre_name = _genre(plot)
    genre = GENRES[genre_name]

    particle, thing, has_object = "", None, True
    obj_start = None
    if found is not None:
        after = found.index + 1
        nxt = tokens[after] if after < len(tokens) else ""
        # "falls off the table", "jumps out of the box", "wakes up": kept with the verb; "runs up the hill":
        # a preposition before the place.
        if nxt in PARTICLES and (nxt in ("off", "out", "asleep", "away", "back", "high", "fast", "home")
                                 or after + 1 >= len(tokens) or tokens[after + 1] not in DETERMINERS):
            particle, after = nxt, after + 1
            if nxt == "out" and after < len(tokens) and tokens[after] == "of":
                particle, after = "out of", after + 1
        obj_start = after + (1 if after < len(tokens) and tokens[after] in DETERMINERS else 0)
        thing = _object(tokens, after)
        has_object = thing is not None
    named = _place(tokens, found, obj_start)
    if found is not None and found.base in VERB_PLACE:
        usual = OBJECT_PLACE.get(found.base, genre.place) if has_object and found.base in OBJECT_PLACE else VERB_PLACE[found.base]
    else:
        usual = genre.place
    if named is None:
        named = _unknown_place(tokens, found, usual)
    place = named.key if named is not None else usual

    fear = FEAR_OF.search(text)
    if thing is None and fear:
        thing = fear.group(1) if fear.group(1).startswith("the ") else "the " + fear.group(1)
    if thing is None:
        noun = next((t for t in plot if t in genre.things), None)
        thing = f"the {noun}" if noun else genre.thing.format(setting=SETTING_NAME[place])
    arc = found.arc if found else None
    if arc == "happen" and particle == "asleep":
        arc = "do"  # falling asleep is something done, not something that befalls
    return Reading(genre=genre_name, place=place, named_place=named is not None, subject=subject,
                   verb=found.base if found else genre.verb, thing=thing, time=time_in(text, weak=False),
                   weather=weather_in(text), has_object=has_object or found is None,
                   action=found.base if found else None, particle=particle, arc=arc,
                   place_noun=named.noun if named else None, place_head=named.head if named else None,
                   place_prep=named.prep if named else "in", place_article=named.article if named else True,
                   genre_named=genre_name != "adventure" or any(t in GENRES["adventure"].keys for t in plot))

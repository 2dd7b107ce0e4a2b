"""The offline planner's vocabulary: where shots happen, at what time, in what weather, and framing by beat.

Every place phrase starts with its preposition ("in the warm kitchen") so narration can say
where; a shot's background is the phrase without it ("the warm kitchen at dusk"), and the
animatic's scene reader maps it back to the place (a test holds every phrase to that).
"""

from __future__ import annotations

import random
import re

from storyagent.models.animatic.backgrounds import PLACE_WORDS
from storyagent.models.animatic.scene_words import place_in, time_in

PLACE_PHRASES: dict[str, list[str]] = {
    "kitchen": ["in the warm kitchen", "at the kitchen table", "by the kitchen window", "at the kitchen counter"],
    "bakery": ["in the little bakery", "behind the bakery counter", "beside the bakery's glowing oven", "among the shelves of the bakery"],
    "school": ["in the bright classroom", "at a desk in the classroom", "by the blackboard of the classroom", "in the school hall"],
    "haunted": ["in front of the haunted house", "on the haunted house's creaky porch", "by the gate of the haunted house",
                "among the gravestones of the haunted house"],
    "house": ["in front of the little house", "on the porch of the house", "by the gate of the little house", "on the doorstep of the house"],
    "room": ["in a cosy room at home", "in the bedroom by the window", "in the living room at home", "up in the attic room"],
    "castle": ["in front of the castle", "on the castle walls", "by the castle gate", "below the tall castle tower"],
    "city": ["on a busy city street", "at a street corner in the city", "on a wide city avenue", "among the tall city buildings"],
    "town": ["on a quiet lane in the old town", "in the town square", "at the town station", "outside a cafe in town"],
    "market": ["at the busy market", "by a fruit stall at the market", "among the stalls of the market", "at the edge of the market square"],
    "underwater": ["among the coral of the reef", "over the sandy seabed", "beside a tall coral reef", "among swaying kelp on the reef"],
    "sea": ["on a sandy beach by the sea", "at the edge of the waves on the shore", "among the rock pools on the beach", "on the harbour wall by the sea"],
    "lake": ["on the lakeside path", "on a wooden jetty over the lake", "by the reeds of the lake", "on the bank of the river"],
    "forest": ["in a tall pine forest", "in a mossy clearing in the forest", "on a winding path through the woods", "by an old tree in the forest"],
    "mountain": ["on a rocky mountain path", "on the mountain top", "in a valley between the mountains", "on a grassy hill below the mountains"],
    "snow": ["on a snowy slope", "by a frozen pond in the snow", "in a snowy pine wood", "beside a snowy mountain hut"],
    "desert": ["among golden desert dunes", "in a cactus garden in the desert", "in a canyon in the desert", "by an oasis in the desert"],
    "farm": ["in the farmyard", "by the red barn on the farm", "at the fence of the farm", "beside a haystack on the farm"],
    "cave": ["at the mouth of the cave", "deep inside the cave", "by glittering crystals in the cave", "in a tunnel of the cave"],
    "space": ["on the grey surface of the moon", "at the rim of a crater on the moon", "on a rocky planet in space", "at a landing pad on the moon"],
    "jungle": ["deep in the green jungle", "under giant leaves in the jungle", "among hanging vines in the jungle",
               "on a muddy trail through the rainforest"],
    "sky": ["high up in the sky", "among the clouds in the sky", "above the clouds", "in the open sky over the hills"],
    "meadow": ["in a flowery meadow", "in a green park", "in a vegetable garden", "on the grassy fields"],
}
# Where shots happen when the prompt names the place itself: per drawn scene, the place nouns whose own
# phrases these are, and phrases with a {noun} slot that keep the prompt's noun ("on the bank of the pond").
# Words before the slot are never place words of another scene, so the noun decides what is drawn.
NOUN_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kitchen": (("kitchen", "pantry"),
                ("in the warm {noun}", "at the table in the {noun}", "by the window of the {noun}", "at the counter of the {noun}")),
    "bakery": (("bakery", "bakehouse", "patisserie", "restaurant", "diner"),
               ("in the little {noun}", "behind the counter of the {noun}", "among the shelves of the {noun}",
                "by the glowing ovens of the {noun}")),
    "school": (("school", "classroom", "schoolroom", "schoolyard", "gym", "gymnasium"),
               ("in the bright {noun}", "at a desk in the {noun}", "at the front of the {noun}", "in the hall of the {noun}")),
    "haunted": (("house", "mansion", "graveyard", "cemetery", "crypt", "castle"),
                ("in front of the {noun}", "on the creaky steps of the {noun}", "by the iron gate of the {noun}",
                 "among the gravestones near the {noun}")),
    "house": (("house", "cottage", "cabin", "hut", "treehouse"),
              ("in front of the little {noun}", "on the steps of the {noun}", "by the gate of the {noun}",
               "on the path to the {noun}")),
    "room": (("room", "bedroom", "attic", "library", "hallway", "living room", "bathroom", "nursery", "playroom",
              "basement", "cellar", "museum", "theatre", "theater", "hospital"),
             ("in the cosy {noun}", "by the window of the {noun}", "on the rug in the {noun}", "in a quiet corner of the {noun}")),
    "castle": (("castle", "palace", "fortress", "tower", "kingdom", "dungeon"),
               ("in front of the {noun}", "on the walls of the {noun}", "by the gate of the {noun}",
                "in the courtyard of the {noun}")),
    "city": (("city", "downtown"),
             ("on a busy pavement in the {noun}", "at a busy corner of the {noun}", "among the tall buildings of the {noun}",
              "under the bright signs of the {noun}")),
    "town": (("town", "village"),
             ("on a quiet cobbled path in the {noun}", "by the fountain of the {noun}", "by the old clock of the {noun}",
              "on the old bridge of the {noun}")),
    "market": (("market", "marketplace", "bazaar", "supermarket"),
               ("at the busy {noun}", "by the fruit crates of the {noun}", "among the awnings of the {noun}",
                "at the edge of the {noun}")),
    "underwater": (("reef", "seabed", "sea floor", "ocean floor", "seafloor"),
                   ("over the sand of the {noun}", "among bright fish on the {noun}", "by tall kelp on the {noun}",
                    "deep down on the {noun}")),
    "sea": (("sea", "beach", "ocean", "seaside", "shore", "seashore", "coast", "bay", "harbour", "harbor", "island",
             "lagoon", "cove"),
            ("on the sand by the {noun}", "at the water's edge by the {noun}", "among the shells near the {noun}",
             "on the rocks by the {noun}")),
    "lake": (("lake", "river", "pond", "stream", "brook", "canal", "creek", "pool", "swimming pool", "swamp", "marsh"),
             ("on the bank of the {noun}", "by the reeds of the {noun}", "on a wooden jetty over the {noun}",
              "on the path along the {noun}")),
    "forest": (("forest", "wood", "woods", "woodland", "grove"),
               ("in the tall pines of the {noun}", "in a mossy clearing in the {noun}", "on a winding path through the {noun}",
                "by an old oak in the {noun}")),
    "jungle": (("jungle", "rainforest", "tropical forest", "tropics"),
               ("deep in the green {noun}", "under giant leaves in the {noun}", "among hanging creepers in the {noun}",
                "on a muddy trail through the {noun}")),
    "mountain": (("mountain", "mountains", "hill", "hills", "peak", "cliff", "summit", "volcano", "ridge", "mountainside"),
                 ("on a rocky path up the {noun}", "near the top of the {noun}", "on a grassy slope of the {noun}",
                  "on a narrow ledge of the {noun}")),
    "snow": (("glacier", "iceberg", "tundra", "ski slope", "snowfield", "north pole", "south pole", "arctic", "antarctica"),
             ("on the white expanse of the {noun}", "on the crisp white crust of the {noun}", "in a drift on the {noun}",
              "in the blue shadows of the {noun}")),
    "desert": (("desert", "canyon", "oasis", "sahara", "savanna", "savannah"),
               ("among the rolling sands of the {noun}", "on the hot sand of the {noun}", "by a dry thorn bush in the {noun}",
                "in the shade of a rock in the {noun}")),
    "farm": (("farm", "farmyard", "orchard", "vineyard"),
             ("by the hen coop of the {noun}", "by the red doors of the {noun}", "at the fence of the {noun}",
              "beside the hay bales of the {noun}")),
    "cave": (("cave", "caves", "cavern", "grotto", "tunnel", "mineshaft"),
             ("at the mouth of the {noun}", "deep inside the {noun}", "by glittering crystals in the {noun}",
              "in a dark passage of the {noun}")),
    "space": (("moon", "planet", "mars", "asteroid"),
              ("on the grey surface of the {noun}", "at the rim of a crater on the {noun}", "on the rocky ground of the {noun}",
               "at a landing pad on the {noun}")),
    "sky": (("sky", "skies", "clouds"),
            ("high up in the {noun}", "among drifting puffs in the {noun}", "far above the land in the {noun}",
             "in the open {noun}")),
    "meadow": (("meadow", "park", "field", "fields", "garden", "playground", "backyard", "yard", "lawn", "zoo", "prairie",
                "hillside"),
               ("on the soft green turf of the {noun}", "among the daisies of the {noun}", "by a bench in the {noun}",
                "on a path through the {noun}")),
}
# How the story names its main setting in a sentence ("all over the kitchen").
SETTING_NAME: dict[str, str] = {
    "kitchen": "the kitchen", "bakery": "the bakery", "school": "school", "haunted": "the haunted house",
    "house": "the house", "room": "home", "castle": "the castle", "city": "the city", "town": "the town",
    "market": "the market", "underwater": "the reef", "sea": "the seaside", "lake": "the lake", "forest": "the forest",
    "mountain": "the mountains", "snow": "the snowy hills", "desert": "the desert", "farm": "the farm", "cave": "the cave",
    "space": "the moon", "meadow": "the park", "jungle": "the jungle", "sky": "the sky",
}
# Where a story about each place plausibly ends when the prompt names no place.
HOME_FOR: dict[str, str] = {"sea": "room", "forest": "meadow", "town": "room", "room": "meadow", "mountain": "meadow",
                            "meadow": "room", "snow": "room", "desert": "town", "space": "room", "kitchen": "room",
                            "bakery": "town", "school": "house", "haunted": "room", "house": "room", "castle": "meadow",
                            "city": "room", "market": "room", "underwater": "sea", "lake": "house", "farm": "house",
                            "cave": "forest", "jungle": "meadow", "sky": "meadow"}

TIMES = ["dawn", "morning", "noon", "afternoon", "dusk", "night"]
TIME_PHRASES = {"dawn": "at dawn", "morning": "in the morning", "noon": "at noon",
                "afternoon": "in the afternoon", "dusk": "at dusk", "night": "at night"}
WEATHER_PHRASES = {"rain": "in the rain", "storm": "in a thunderstorm", "snowfall": "in falling snow",
                   "fog": "in the fog", "sunny": "in bright sunshine"}
# Sunshine belongs to the day: a sunny phrase never joins dawn, dusk or night.
SUNLESS_TIMES = frozenset({"dawn", "dusk", "night"})
SHOT_FOR_BEAT = [["wide"], ["medium", "wide"], ["medium", "close-up"], ["close-up", "medium"], ["wide", "medium"]]
CAMERA_FOR_BEAT = [["zoom out", "pan right", "pan left"], ["pan right", "pan left", "static", "tilt down"],
                   ["zoom in", "static", "pan left"], ["zoom in", "tilt up", "static"], ["zoom out", "pan left", "tilt up"]]
REGIONS = ["left", "center", "right"]


PREPOSITIONS = ("in front of", "deep inside", "deep down on", "deep in", "high up in", "far above", "up in", "at", "in", "on",
                "by", "among", "beside", "behind", "below", "over", "under", "near", "across", "along", "through",
                "around", "inside", "outside", "into", "onto", "towards", "past")


def split_where(phrase: str) -> tuple[str, str]:
    """'in the warm kitchen' -> ('in', 'the warm kitchen'); 'in front of the house' -> ('in front of', 'the house')."""
    for prep in PREPOSITIONS:
        if phrase.startswith(prep + " "):
            return prep, phrase[len(prep) + 1:]
    return "", phrase


def background_text(place_phrase: str, time: str, weather: str | None) -> str:
    """'the warm kitchen at night', with the weather after a comma when there is some."""
    text = f"{place_phrase} {TIME_PHRASES[time]}"
    if weather and not (weather == "sunny" and time in SUNLESS_TIMES):
        text += f", {WEATHER_PHRASES[weather]}"
    return text


def clip_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def noun_phrases(scene: str, noun: str, prep: str, article: bool) -> list[str]:
    """Place phrases that keep the prompt's own place `noun` ("snowy mountain") and are drawn as `scene`: the
    {noun} phrases of a scene whose head nouns end it ("mountain"), else the noun itself leading one of
    the scene's usual phrases ("on the sofa in a cosy room at home"; a noun no table knows is kept the same way,
    drawn as the scene that leads the phrase)."""
    # The drawn scene's own phrases first ("haunted house": the haunted house's porch, not a cottage's),
    # else those of the scene the head noun belongs to ("snowy mountain": a mountain path, drawn in snow).
    if not prep:
        # The noun is a phrase of its own ("under the sea"): it follows the scene's usual phrase.
        return [p if noun in p else f"{p} {noun}" for p in PLACE_PHRASES[scene]]
    owners = [scene] + [key for key in NOUN_PHRASES if key != scene]
    fits = [key for key in owners if any(noun == h or noun.endswith(" " + h) for h in NOUN_PHRASES.get(key, ((), ()))[0])]
    if fits and article:
        return [t.format(noun=noun) for t in NOUN_PHRASES[fits[0]][1]]
    own = f"{prep} the {noun}" if article else f"{prep} {noun}"
    # A usual phrase that already holds the noun ("in a cosy room at home" for "home") is used as it is.
    return [p if re.search(rf"\b{re.escape(noun)}\b", p) else f"{own} {p}" for p in PLACE_PHRASES[scene]]


def place_of(prompt: str) -> str:
    """The first place (a key of PLACE_WORDS) whose words the prompt uses; a meadow otherwise."""
    found = place_in(prompt)
    return found if found in PLACE_WORDS else "meadow"


def times_for(prompt: str, n: int, rng: random.Random, night_story: bool = False) -> list[str]:
    """Times of day that advance through the story: from the time the prompt names, else a day-long arc."""
    named = time_in(prompt, weak=False)
    if named == "night" or (named is None and night_story):
        span = ["dusk", "night"]
    elif named is not None:
        start = TIMES.index(named)
        span = TIMES[start:start + 2] if named != "dusk" else ["dusk", "night"]
    else:
        # A day story runs from dawn or morning to dusk; only a night story goes on into the dark.
        start = rng.choice([0, 1])
        span = TIMES[start:5]
    return [span[min(len(span) - 1, round(i * (len(span) - 1) / max(n - 1, 1)))] for i in range(n)]


SETUP, DISCOVERY, TROUBLE, TURN, HOME = range(5)
# Short films keep the trouble before the turn: a problem is set up before anything is put right.
SHORT_PLANS = {1: (SETUP,), 2: (SETUP, HOME), 3: (SETUP, TROUBLE, HOME), 4: (SETUP, TROUBLE, TURN, HOME)}


def beat_plan(n: int) -> list[int]:
    """The beat (SETUP .. HOME) of each of `n` shots, in order: from five shots on every beat is shown
    and none is skipped; fewer shots drop the discovery first, then the turn (the ending resolves the trouble)."""
    if n in SHORT_PLANS:
        return list(SHORT_PLANS[n])
    return [min(HOME, round(i * 4 / (n - 1))) for i in range(n)]


def beat_index(i: int, n: int) -> int:
    """Which of the five beats shot `i` of `n` falls on."""
    return beat_plan(n)[i]


def pick(rng: random.Random, options: list[str], avoid: str) -> str:
    """A random option other than `avoid`, unless `avoid` is the only one."""
    choices = [o for o in options if o != avoid] or options
    return rng.choice(choices)


def words_of(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def choose_line(rng: random.Random, options: tuple[str, ...] | list[str], fmt: dict[str, str], prompt: str,
                avoid: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """One of `options`, filled in, that does not repeat the prompt word for word (nor, if it can, a line in `avoid`)."""
    filled = [o.format(**fmt) for o in options]
    verbatim = words_of(prompt)
    if len(verbatim.split()) >= 3:
        filled = [f for f in filled if verbatim not in words_of(f)] or [f"{fmt['Name']} went on."]
    fresh = [f for f in filled if f not in avoid] or filled
    # "Pip the character" says nothing the name does not.
    text = rng.choice(fresh).replace(f"{fmt['Name']} the character", fmt["Name"])
    return text[:1].upper() + text[1:]

"""The words a background is read from: places, times of day and weather, and the light they give.

`SceneSpec.from_text("the kitchen at night, in the rain")` -> place "kitchen", time "night",
weather "rain". The first place word in the text wins (so "the kitchen of the castle" is a
kitchen); an explicit time word ("night", "dawn") outranks a vague one ("day", "dark").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PLACE_WORDS: dict[str, tuple[str, ...]] = {
    "kitchen": ("kitchen", "stove", "oven", "pantry"),
    "bakery": ("bakery", "bakehouse", "patisserie", "bread shop", "cake shop", "restaurant", "diner"),
    "school": ("school", "classroom", "schoolroom", "blackboard", "schoolyard", "gym", "gymnasium"),
    "haunted": ("haunted", "spooky", "mansion", "graveyard", "cemetery", "crypt"),
    "house": ("house", "cottage", "porch", "doorstep", "front door", "cabin", "hut", "treehouse"),
    "room": ("room", "home", "bedroom", "bed", "indoors", "library", "attic", "hallway", "sofa", "living room",
             "bathroom", "bathtub", "bath", "nursery", "playroom", "basement", "cellar", "museum", "theatre", "theater",
             "hospital", "stage", "fireplace"),
    "castle": ("castle", "palace", "fortress", "tower", "throne", "dungeon", "kingdom", "drawbridge", "moat"),
    "city": ("city", "street", "streets", "avenue", "downtown", "skyscraper", "skyscrapers", "airport", "skatepark",
             "road", "rooftop", "rooftops"),
    "town": ("town", "village", "square", "station", "cafe", "lane", "circus", "funfair"),
    "market": ("market", "marketplace", "bazaar", "shop", "shops", "store", "stall", "stalls", "supermarket", "toyshop"),
    "underwater": ("underwater", "under the sea", "undersea", "reef", "coral", "seabed", "sea floor", "submarine",
                   "ocean floor", "seafloor", "aquarium", "shipwreck", "wreck"),
    "sea": ("sea", "seaside", "beach", "ocean", "coast", "shore", "seashore", "waves", "island", "harbour", "harbor", "bay",
            "lighthouse", "pier", "dock", "boat", "ship", "lagoon", "cove"),
    "lake": ("lake", "river", "riverbank", "pond", "stream", "brook", "canal", "waterfall", "lakeside", "pool",
             "swimming pool", "swamp", "marsh", "creek"),
    "forest": ("forest", "wood", "woods", "woodland", "tree", "trees", "camp", "grove", "campsite", "treetops"),
    "jungle": ("jungle", "rainforest", "tropical forest", "vines", "tropics"),
    "mountain": ("mountain", "mountains", "hill", "hills", "peak", "cliff", "summit", "valley", "volcano", "ridge",
                 "hilltop", "mountainside"),
    "snow": ("snow", "snowy", "winter", "ice", "icy", "frozen", "ski", "igloo", "arctic", "polar", "glacier",
             "north pole", "south pole", "antarctica", "tundra", "iceberg", "ice rink", "rink", "ski slope", "snowfield"),
    "desert": ("desert", "dune", "dunes", "cactus", "canyon", "oasis", "sahara", "savanna", "savannah"),
    "farm": ("farm", "farmyard", "barn", "tractor", "haystack", "pigsty", "stable", "orchard", "vineyard", "henhouse"),
    "cave": ("cave", "caves", "cavern", "grotto", "tunnel", "mineshaft"),
    "space": ("space", "moon", "planet", "rocket", "galaxy", "orbit", "mars", "asteroid", "spaceship", "space station",
              "outer space"),
    "sky": ("sky", "skies", "clouds", "cloud", "air", "rainbow"),
    "meadow": ("meadow", "park", "field", "fields", "garden", "flower", "flowers", "grass", "playground", "backyard",
               "yard", "lawn", "zoo", "prairie", "hillside", "picnic spot"),
}
# Places drawn as the inside of a building: their light comes through a window, or from a lamp at night.
INDOOR = frozenset({"kitchen", "bakery", "school", "room"})
# Places the sky's weather does not reach.
SHELTERED = INDOOR | {"cave", "underwater", "space"}

TIME_WORDS: dict[str, tuple[str, ...]] = {
    "dawn": ("dawn", "sunrise", "daybreak", "early morning", "first light"),
    "morning": ("morning", "breakfast"),
    "noon": ("noon", "midday", "lunchtime", "high noon"),
    "afternoon": ("afternoon", "teatime"),
    "dusk": ("dusk", "sunset", "evening", "twilight", "nightfall", "sundown"),
    "night": ("night", "midnight", "moonlight", "moonlit", "tonight", "nighttime", "bedtime"),
}
# Vague words, used only when the text names no explicit time.
WEAK_TIME_WORDS: dict[str, tuple[str, ...]] = {"noon": ("day", "daytime", "daylight"), "night": ("dark",)}

WEATHER_WORDS: dict[str, tuple[str, ...]] = {
    "storm": ("storm", "stormy", "thunder", "thunderstorm", "lightning", "gale"),
    "rain": ("rain", "rainy", "raining", "rainstorm", "drizzle", "downpour", "showers"),
    "snowfall": ("snowing", "snowfall", "snowflakes", "blizzard", "falling snow"),
    "fog": ("fog", "foggy", "mist", "misty", "haze", "hazy"),
    "sunny": ("sunny", "sunshine", "sunlit", "bright sun", "clear sky", "clear skies"),
}

# Sky top colour, horizon colour, and the tint multiplied over everything (lighting).
SKY: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[float, float, float]]] = {
    "dawn": ((120, 130, 190), (250, 190, 150), (1.0, 0.92, 0.88)),
    "morning": ((110, 170, 235), (200, 225, 245), (1.0, 1.0, 1.0)),
    "noon": ((70, 140, 230), (180, 215, 245), (1.0, 1.0, 1.0)),
    "afternoon": ((90, 150, 220), (230, 220, 190), (1.0, 0.97, 0.92)),
    "dusk": ((70, 60, 130), (250, 140, 90), (1.0, 0.82, 0.72)),
    "night": ((8, 12, 40), (35, 45, 90), (0.55, 0.6, 0.85)),
}
# Indoors at night a warm lamp lights the room, dimmer than day.
LAMP_NIGHT_TINT = (0.66, 0.56, 0.44)
WEATHER_TINT: dict[str, tuple[float, float, float]] = {
    "storm": (0.62, 0.65, 0.74), "rain": (0.8, 0.83, 0.9), "fog": (0.93, 0.93, 0.96),
    "snowfall": (0.93, 0.95, 1.0), "sunny": (1.0, 1.0, 1.0), "fair": (1.0, 1.0, 1.0),
}


def _first_match(joined: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The key whose word occurs first in `joined` (the longer word on a tie), or None."""
    best, best_pos, best_len = None, len(joined) + 1, 0
    for key, keys in table.items():
        for k in keys:
            m = re.search(rf"\b{re.escape(k)}\b", joined)
            if m and (m.start() < best_pos or (m.start() == best_pos and len(k) > best_len)):
                best, best_pos, best_len = key, m.start(), len(k)
    return best


def normalise_words(text: str) -> str:
    """Lower-case words separated by single spaces: what the vocabularies are matched against."""
    return " ".join(re.findall(r"[\w']+", text.lower()))


def place_in(text: str) -> str | None:
    """The place (a key of PLACE_WORDS) the text names first, or None."""
    return _first_match(normalise_words(text), PLACE_WORDS)


def time_in(text: str, weak: bool = True) -> str | None:
    """The time of day the text names: an explicit word first, then (if `weak`) a vague one."""
    joined = normalise_words(text)
    return _first_match(joined, TIME_WORDS) or (_first_match(joined, WEAK_TIME_WORDS) if weak else None)


def weather_in(text: str) -> str | None:
    """The weather (a key of WEATHER_WORDS) the text names, or None."""
    return _first_match(normalise_words(text), WEATHER_WORDS)


@dataclass(frozen=True)
class SceneSpec:
    """What a background shows, read from its text."""

    place: str
    """A key of PLACE_WORDS ("meadow" when the text names none)."""
    time: str
    """A key of TIME_WORDS ("noon" when the text names none)."""
    weather: str = "fair"
    """A key of WEATHER_WORDS, or "fair" when the text names none (sunshine never lasts into the night)."""

    @classmethod
    def from_text(cls, text: str) -> SceneSpec:
        time = time_in(text) or "noon"
        place = place_in(text) or "meadow"
        # Snow named anywhere but a snowy landscape (which shows its own flakes) is snow falling there.
        snowing = place != "snow" and re.search(r"\bsnow(?:y|flakes)?\b", normalise_words(text))
        weather = weather_in(text) or ("snowfall" if snowing else "fair")
        if weather == "sunny" and time == "night":
            weather = "fair"
        return cls(place=place, time=time, weather=weather)

    @property
    def indoor(self) -> bool:
        return self.place in INDOOR

    @property
    def tint(self) -> tuple[float, float, float]:
        base = LAMP_NIGHT_TINT if self.indoor and self.time == "night" else SKY[self.time][2]
        weather = "fair" if self.place in SHELTERED else self.weather
        extra = WEATHER_TINT[weather]
        if self.place == "underwater":
            extra = (0.78, 0.92, 1.0)
        elif self.place == "jungle":
            # Light filtered through leaves in damp air: greener, a little warm.
            extra = tuple(a * b for a, b in zip(extra, (0.94, 1.0, 0.86)))
        return tuple(round(a * b, 4) for a, b in zip(base, extra))  # type: ignore[return-value]


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")

"""English verb forms for the verbs stories are made of: bake -> bakes, baked, baking (and back again).

Regular forms follow the spelling rules (a short verb ending consonant-vowel-consonant doubles its
last letter: swim -> swimming); the irregular ones are listed. `base_of` reads any form back.
"""

from __future__ import annotations

import re
from functools import cache

# base -> (past, past participle)
IRREGULAR: dict[str, tuple[str, str]] = {
    "make": ("made", "made"), "find": ("found", "found"), "buy": ("bought", "bought"), "fly": ("flew", "flown"),
    "build": ("built", "built"), "grow": ("grew", "grown"), "win": ("won", "won"), "catch": ("caught", "caught"),
    "sing": ("sang", "sung"), "read": ("read", "read"), "write": ("wrote", "written"), "draw": ("drew", "drawn"),
    "meet": ("met", "met"), "lose": ("lost", "lost"), "become": ("became", "become"), "go": ("went", "gone"),
    "run": ("ran", "run"), "ride": ("rode", "ridden"), "feed": ("fed", "fed"), "teach": ("taught", "taught"),
    "sleep": ("slept", "slept"), "swim": ("swam", "swum"), "dig": ("dug", "dug"), "hide": ("hid", "hidden"),
    "keep": ("kept", "kept"), "take": ("took", "taken"), "bring": ("brought", "brought"), "sit": ("sat", "sat"),
    "see": ("saw", "seen"), "get": ("got", "got"), "give": ("gave", "given"), "eat": ("ate", "eaten"),
    "throw": ("threw", "thrown"), "fight": ("fought", "fought"), "sell": ("sold", "sold"), "hold": ("held", "held"),
    "wake": ("woke", "woken"), "leave": ("left", "left"), "spin": ("spun", "spun"), "sweep": ("swept", "swept"),
    "shine": ("shone", "shone"), "fall": ("fell", "fallen"), "swing": ("swung", "swung"), "sink": ("sank", "sunk"),
    "rise": ("rose", "risen"), "blow": ("blew", "blown"), "break": ("broke", "broken"), "drink": ("drank", "drunk"),
    "drive": ("drove", "driven"), "freeze": ("froze", "frozen"), "hang": ("hung", "hung"), "leap": ("leapt", "leapt"),
    "slide": ("slid", "slid"), "speak": ("spoke", "spoken"), "stand": ("stood", "stood"), "steal": ("stole", "stolen"),
    "shake": ("shook", "shaken"), "bite": ("bit", "bitten"), "creep": ("crept", "crept"), "kneel": ("knelt", "knelt"),
    "seek": ("sought", "sought"), "tell": ("told", "told"), "think": ("thought", "thought"), "wear": ("wore", "worn"),
    "weep": ("wept", "wept"), "choose": ("chose", "chosen"), "come": ("came", "come"), "dream": ("dreamt", "dreamt"),
    "feel": ("felt", "felt"), "forget": ("forgot", "forgotten"), "begin": ("began", "begun"), "say": ("said", "said"),
    "do": ("did", "done"), "have": ("had", "had"), "sew": ("sewed", "sewn"), "shoot": ("shot", "shot"),
    "spread": ("spread", "spread"), "sting": ("stung", "stung"), "swear": ("swore", "sworn"), "tear": ("tore", "torn"),
    "cut": ("cut", "cut"), "put": ("put", "put"), "let": ("let", "let"), "hit": ("hit", "hit"), "shut": ("shut", "shut"),
    "understand": ("understood", "understood"), "lead": ("led", "led"), "lie": ("lay", "lain"),
    "ring": ("rang", "rung"), "spend": ("spent", "spent"), "send": ("sent", "sent"), "bend": ("bent", "bent"),
    "spit": ("spat", "spat"), "stick": ("stuck", "stuck"), "strike": ("struck", "struck"), "bleed": ("bled", "bled"),
    "know": ("knew", "known"), "quit": ("quit", "quit"), "flee": ("fled", "fled"), "hear": ("heard", "heard"),
    "pay": ("paid", "paid"), "lay": ("laid", "laid"),
}
# Other forms in common use (American and British, old and new).
EXTRA_FORMS: dict[str, tuple[str, ...]] = {
    "dive": ("dove",), "leap": ("leaped",), "dream": ("dreamed",), "learn": ("learnt",), "travel": ("travelled", "travelling"),
    "spell": ("spelt",), "kneel": ("kneeled",), "wake": ("waked",),
}
IRREGULAR_PAST = {verb: forms[0] for verb, forms in IRREGULAR.items()}
# Verbs whose last consonant doubles although the spelling rule cannot tell (stress on the last syllable).
DOUBLING = frozenset({"begin", "forget", "admit", "quit", "refer", "prefer", "regret", "upset", "permit", "equip"})
# Verbs the spelling rule would double but English does not.
NOT_DOUBLING = frozenset({"fix", "mix", "box", "snow", "row", "sew", "show", "glow", "blow", "grow", "throw", "play",
                          "stay", "pray", "visit", "open", "listen", "travel", "happen", "gallop", "wander", "enter"})

# Verbs a story is made of: what a character can set out to do, or what happens to it.
VERBS: frozenset[str] = frozenset(IRREGULAR) | frozenset({
    # making and doing
    "bake", "cook", "fry", "boil", "brew", "stir", "mix", "knead", "whisk", "chop", "slice", "pour", "taste", "serve",
    "decorate", "paint", "sketch", "colour", "color", "carve", "sculpt", "knit", "sew", "weave", "fold", "glue",
    "fix", "repair", "mend", "clean", "tidy", "wash", "scrub", "polish", "brush", "dust", "iron", "type", "juggle",
    "play", "practise", "practice", "train", "study", "learn", "count", "spell", "solve", "invent", "collect",
    # moving
    "walk", "jump", "hop", "skip", "climb", "crawl", "march", "stroll", "wander", "roam", "hike", "trek", "jog",
    "sprint", "race", "dash", "hurry", "rush", "chase", "skate", "ski", "sled", "snowboard", "surf", "sail", "row",
    "paddle", "dive", "float", "splash", "wade", "snorkel", "glide", "soar", "hover", "zoom", "roll", "slip",
    "tumble", "stumble", "trip", "bounce", "twirl", "dance", "waltz", "tiptoe", "sneak", "gallop", "trot", "prance",
    "scamper", "scurry", "waddle", "wiggle", "wriggle", "slither", "swoop", "flap", "flutter", "pedal", "cycle",
    "travel", "explore", "search", "hunt", "track", "follow", "cross", "escape", "return", "arrive", "visit",
    "launch", "land", "drift", "spin", "stretch", "kick", "punch", "push", "pull", "lift", "carry", "drag", "toss",
    "score", "shoot", "dodge", "tackle", "wrestle", "vault", "balance",
    # sound and feeling
    "sing", "hum", "whistle", "shout", "yell", "scream", "cry", "laugh", "giggle", "smile", "sneeze", "yawn",
    "snore", "bark", "howl", "roar", "growl", "purr", "meow", "chirp", "tweet", "quack", "squeak", "play",
    "listen", "talk", "whisper", "cheer", "clap", "wave", "hug", "kiss", "tickle", "shiver", "tremble", "worry",
    # rest and growth
    "nap", "rest", "relax", "dream", "wait", "watch", "look", "peek", "stare", "sit",
    "bloom", "blossom", "hatch", "melt", "crash", "drop", "spill", "shrink", "glow", "sparkle", "twinkle",
    # looking after things
    "plant", "water", "garden", "harvest", "pick", "gather", "dig", "rake", "weed", "milk", "herd", "shear",
    "fish", "camp", "guard", "protect", "defend", "patrol", "save", "rescue", "help", "share", "deliver", "shop",
    "open", "close", "celebrate", "discover", "try", "want", "wish", "hope", "love", "like", "decide", "need",
    "start", "plan", "attempt", "refuse", "imagine", "pretend", "swap",
    "whittle", "frost", "pack", "unpack", "wrap", "unwrap", "feed", "care", "comfort", "greet", "welcome", "join",
    # how things go wrong
    "wobble", "sway", "tip", "toss", "smudge", "burn", "miss", "knock", "prick", "struggle", "freeze", "hurry", "stop",
})
# Words that end in -ing but are not an action.
NOT_ACTIONS = frozenset({"morning", "evening", "nothing", "something", "anything", "everything", "building", "ceiling",
                         "king", "ring", "thing", "spring", "sing", "wing", "swing", "string", "during", "pudding",
                         "lightning", "clothing", "painting", "ending", "beginning", "feeling", "sibling", "darling",
                         "icing", "viking", "duckling"})
_VOWELS = "aeiou"


def _doubles(verb: str) -> bool:
    """Whether the last consonant doubles before -ed / -ing (swim -> swimming, visit -> visiting)."""
    if verb in DOUBLING:
        return True
    if verb in NOT_DOUBLING:
        return False
    # One syllable, one vowel, one final consonant (not w, x or y): stop, swim, nap, sled.
    return re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwxy]", verb) is not None and not verb.startswith("qu")


def past(verb: str) -> str:
    if verb in IRREGULAR:
        return IRREGULAR[verb][0]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in _VOWELS:
        return verb[:-1] + "ied"
    return verb + verb[-1] + "ed" if _doubles(verb) else verb + "ed"


def participle(verb: str) -> str:
    """The past participle: swum, fallen, baked."""
    return IRREGULAR[verb][1] if verb in IRREGULAR else past(verb)


def gerund(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    return verb + verb[-1] + "ing" if _doubles(verb) else verb + "ing"


def third(verb: str) -> str:
    """Third person singular: bake -> bakes, fly -> flies, catch -> catches."""
    if verb == "have":
        return "has"
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in _VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def forms(verb: str) -> tuple[str, ...]:
    """Every form of `verb`, any verb, known or not: base, -s, past, participle, -ing."""
    return tuple(dict.fromkeys((verb, third(verb), past(verb), participle(verb), gerund(verb), *EXTRA_FORMS.get(verb, ()))))


@cache
def _form_table() -> dict[str, str]:
    """Every form of every known verb -> its base; a word that is itself a base keeps it (left, found)."""
    table: dict[str, str] = {}
    for verb in sorted(VERBS):
        for form in forms(verb):
            table.setdefault(form, verb)
    table.update({verb: verb for verb in VERBS})
    return table


def base_of(word: str) -> str | None:
    """The base form of a known verb in any of its forms ('kneading' -> 'knead', 'swam' -> 'swim'), else None."""
    return _form_table().get(word.lower())


def base_of_gerund(word: str) -> str | None:
    """A guess at the base of an -ing word, known verb or not ('yodelling' -> None, 'kneading' -> 'knead')."""
    word = word.lower()
    if not word.endswith("ing") or len(word) < 5 or word in NOT_ACTIONS:
        return None
    return base_of(word)

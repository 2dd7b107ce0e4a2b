"""English verb forms for the verbs stories are made of: bake -> bakes, baked, baking (and back again)."""

from __future__ import annotations

IRREGULAR_PAST = {
    "make": "made", "find": "found", "buy": "bought", "fly": "flew", "build": "built", "grow": "grew", "win": "won",
    "catch": "caught", "sing": "sang", "read": "read", "write": "wrote", "draw": "drew", "meet": "met", "lose": "lost",
    "become": "became", "go": "went", "run": "ran", "ride": "rode", "feed": "fed", "teach": "taught", "sleep": "slept",
    "swim": "swam", "dig": "dug", "hide": "hid", "keep": "kept", "take": "took", "bring": "brought", "sit": "sat",
    "see": "saw", "get": "got", "give": "gave", "eat": "ate", "throw": "threw", "fight": "fought", "sell": "sold",
    "hold": "held", "wake": "woke", "leave": "left", "spin": "spun", "sweep": "swept", "shine": "shone",
}
# Short verbs whose last consonant doubles before -ed / -ing (shop -> shopping).
DOUBLING = {"shop", "stop", "plan", "hop", "jog", "skip", "swim", "run", "win", "dig", "chat", "drop", "clap",
            "spin", "sit", "get", "grab", "hug", "trap", "wrap", "drum", "nap", "skid"}
VERBS: frozenset[str] = frozenset(IRREGULAR_PAST) | frozenset({
    "bake", "cook", "learn", "guard", "protect", "explore", "search", "shop", "visit", "climb", "paint", "plant",
    "save", "rescue", "help", "play", "race", "dance", "fix", "clean", "deliver", "escape", "look", "hunt", "sail",
    "travel", "discover", "try", "want", "walk", "jump", "knead", "stir", "mix", "decorate", "chase", "skate", "ski",
    "hop", "skip", "wave", "laugh", "cry", "fish", "camp", "dive", "collect", "pick", "water", "carry", "pull",
    "push", "juggle", "wander", "roll", "slide", "fly", "count", "study", "practise", "practice", "train", "score",
    "kick", "stretch", "rest", "wait", "listen", "watch", "open", "close", "share", "celebrate", "defend", "patrol",
    "float", "splash", "paddle", "surf", "garden", "harvest", "milk", "herd", "sew", "knit", "tidy", "wash", "pour",
    "taste", "slice", "chop", "whisk", "frost", "deliver", "march", "sneak", "tiptoe", "peek", "shiver", "glow",
    "hum", "whistle", "nap", "clap", "hug", "spin", "twirl", "bounce", "crawl", "stroll", "roam", "hike", "drum",
})
# Words that end in -ing but are not an action.
NOT_ACTIONS = frozenset({"morning", "evening", "nothing", "something", "anything", "everything", "building", "ceiling",
                         "king", "ring", "thing", "spring", "sing", "wing", "swing", "string", "during", "pudding",
                         "lightning", "clothing", "painting", "ending", "beginning", "feeling", "sibling", "darling"})


def past(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + verb[-1] + "ed" if verb in DOUBLING else verb + "ed"


def gerund(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + verb[-1] + "ing" if verb in DOUBLING else verb + "ing"


def third(verb: str) -> str:
    """Third person singular: bake -> bakes, fly -> flies, catch -> catches."""
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def base_of(word: str) -> str | None:
    """The base form of a known verb in any of its forms ('kneading' -> 'knead', 'guards' -> 'guard'), else None."""
    word = word.lower()
    if word in VERBS:
        return word
    for verb in VERBS:
        if word in (third(verb), past(verb), gerund(verb)):
            return verb
    return None


def base_of_gerund(word: str) -> str | None:
    """A guess at the base of an -ing word, known verb or not ('yodelling' -> None, 'kneading' -> 'knead')."""
    word = word.lower()
    if not word.endswith("ing") or len(word) < 5 or word in NOT_ACTIONS:
        return None
    return base_of(word)

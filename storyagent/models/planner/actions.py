"""Stories built around the action the prompt names: every shot's action and narration hold that verb.

Three arcs, each over the same five beats as the genres (setup, discovery, trouble, turn, home-coming):
- "learn" ("a fox learns to swim"): eager to try, tries to swim, sinks struggling to swim, swims with
  help, swims across happily;
- "do" ("a goat climbs the mountain"): sets off to climb, climbs happily, slips struggling to climb,
  climbs again bravely, climbs to the top content;
- "happen" ("a cup falls off the table"): about to fall, falls, stuck after falling, helped up after
  falling, laughing about it.
Subject actions stay short and verb-led ("tries to swim", "swims across happily") so the animatic's
motion table can read them. Slots as in genres.py, plus {trouble}/{troubled} (how this action goes
wrong: "sinks"/"sank"), {manner} (" across"), {brave} ("bravely", "calmly" for quiet actions) and
{Do}/{Does}/{Doing}/{Did} for titles.
"""

from __future__ import annotations

from dataclasses import dataclass

from storyagent.models.planner.genres import Genre
from storyagent.models.planner.reading import Reading


@dataclass(frozen=True)
class ActionArc:
    """One way a story follows its action."""

    titles: tuple[str, ...]
    """Title templates."""
    loglines: tuple[str, ...]
    """One-sentence summary templates."""
    beats: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    """Per beat: (narration lines, subject actions); every one holds a form of the action."""


ARCS: dict[str, ActionArc] = {
    "learn": ActionArc(
        ("{Name} Learns to {Do}", "{Name} Can {Do}!", "Keep {Doing}, {Name}!"),
        ("{Name} the {cls} wants to {do}, and finds out that every try counts.",
         "{Doing} looks easy, until {Name} the {cls} tries it {where}."),
        ((("{Name} had always wanted to {do}.", "{Name} watched the others {do} and longed to join in.",
           "Today was the day {name} would learn to {do}."),
          ("gets ready to {do}, eager", "wants to {do}, excited")),
         (("{Name} took a deep breath and tried to {do} {where}.", "The first try: {name} set out to {do}, one careful step at a time."),
          ("tries to {do}", "tries to {do} for the first time")),
         (("But {doing} was harder than it looked, and {name} {troubled}.",
           "Again and again {name} tried to {do}, and again and again {name} {troubled}."),
          ("{trouble}, struggling to {do}", "{trouble}, unable to {do}")),
         (("A kind friend showed {name} how to {do}, one small step at a time.",
           "With a helping hand, {name} began to {do} at last."),
          ("{does} with a friend's help", "{does} slowly, with help")),
         (("Now {name} {did}{manner} all alone, happier than ever.", "{Name} could {do} at last, and everyone cheered."),
          ("{does}{manner} happily", "{does} all alone, proud")))),
    "do": ActionArc(
        ("{Name} {Does}", "{Doing} with {Name}", "Off to {Do}, {Name}!"),
        ("{Name} the {cls} sets out to {do} {where}, and the day does not go quite to plan.",
         "Nothing can stop {Name} the {cls} from {doing}, or can it?"),
        ((("{Name} set off {where}, ready to {do}.", "It was a perfect day to {do}, and {name} could not wait.",
           "{Name} thought of only one thing that morning: to {do}."),
          ("hurries off to {do}", "gets ready to {do}")),
         (("{Name} {did} {where}, and everything was new and wonderful.", "{Doing} was even better than {name} had hoped."),
          ("{does} happily", "{does}, looking around")),
         (("Then, all of a sudden, {name} {troubled} and could not {do} any more.",
           "But something went wrong: {name} stopped {doing} and froze."),
          ("{trouble}, struggling to {do}", "stops {doing}, worried")),
         (("{Name} took a deep breath and began to {do} again.", "With a friend cheering, {name} {did} again, braver than before."),
          ("{does} again, {brave}", "{does} once more, {brave}")),
         (("At the end of the day, {name} had {done}, tired and happy.", "{Name} would {do} again tomorrow, and the day after that."),
          ("{does}{manner}, content", "{does} one last time, happy")))),
    "happen": ActionArc(
        ("The Day {Name} {Did}", "Oops, {Name}!", "{Name} {Does}"),
        ("{Name} the {cls} never meant to {do}, but that is where the adventure begins.",
         "When {Name} the {cls} {did}, a little help made everything right."),
        ((("{Name} wobbled {where}, just about to {do}.", "Nobody noticed that {name} was about to {do}."),
          ("wobbles, about to {do}", "sways, close to {doing}")),
         (("Whoops! {Name} {did}.", "Before anyone could help, {name} {did}."),
          ("{does} suddenly", "{does}, surprised")),
         (("After {doing}, {name} was stuck and could not get back.", "{Name} lay still after {doing}, far from where {name} belonged."),
          ("lies still after {doing}", "is stuck after {doing}")),
         (("A friend came by and helped {name} up, after {doing} like that.", "{Name} had {done}, but a kind friend knew just what to do."),
          ("gets up after {doing}", "is helped up after {doing}")),
         (("{Name} laughed about {doing}, and was not afraid of it any more.", "Now {name} takes care not to {do} again, most days."),
          ("laughs about {doing}, happy", "smiles after {doing}, safe again")))),
}
# How an action goes wrong (third person, past); others stumble.
TROUBLE: dict[str, tuple[str, str]] = {
    "swim": ("sinks", "sank"), "dive": ("splashes", "splashed"), "float": ("sinks", "sank"), "paddle": ("sinks", "sank"),
    "fly": ("tumbles", "tumbled"), "soar": ("tumbles", "tumbled"), "glide": ("tumbles", "tumbled"),
    "climb": ("slips", "slipped"), "hike": ("slips", "slipped"), "ski": ("falls", "fell"), "skate": ("wobbles", "wobbled"),
    "ride": ("wobbles", "wobbled"), "surf": ("falls", "fell"), "sled": ("tips over", "tipped over"),
    "run": ("trips", "tripped"), "race": ("trips", "tripped"), "walk": ("trips", "tripped"), "jump": ("trips", "tripped"),
    "dance": ("trips", "tripped"), "hop": ("trips", "tripped"), "skip": ("trips", "tripped"), "juggle": ("drops everything", "dropped everything"),
    "sing": ("squeaks", "squeaked"), "whistle": ("squeaks", "squeaked"), "hum": ("squeaks", "squeaked"),
    "sleep": ("tosses and turns", "tossed and turned"), "nap": ("tosses and turns", "tossed and turned"),
    "rest": ("tosses and turns", "tossed and turned"), "read": ("yawns", "yawned"), "write": ("gets stuck", "got stuck"),
    "paint": ("smudges the paint", "smudged the paint"), "draw": ("smudges the lines", "smudged the lines"),
    "bake": ("burns the dough", "burned the dough"), "cook": ("spills the pot", "spilled the pot"),
    "fish": ("loses the line", "lost the line"), "kick": ("misses", "missed"), "catch": ("misses", "missed"),
    "throw": ("misses", "missed"), "plant": ("drops the seeds", "dropped the seeds"),
    "dig": ("hits a rock", "hit a rock"), "search": ("loses the trail", "lost the trail"),
    "fall asleep": ("tosses and turns", "tossed and turned"), "knit": ("drops a stitch", "dropped a stitch"),
    "sew": ("pricks a finger", "pricked a finger"),
    "explore": ("loses the way", "lost the way"), "swing": ("slips", "slipped"), "build": ("knocks it over", "knocked it over"),
}
DEFAULT_TROUBLE = ("stumbles", "stumbled")
# A quiet action that is not listed goes wrong without a fall.
CALM_TROUBLE = ("gets it all wrong", "got it all wrong")
# Where a finished action goes, said after its verb when it has no object ("swims across").
MANNER = {"swim": "across", "fly": "high", "soar": "high", "climb": "to the top", "hike": "to the top", "run": "fast",
          "race": "to the finish", "jump": "high", "hop": "high", "dive": "deep", "ski": "down the slope",
          "skate": "in circles", "dance": "in circles", "twirl": "in circles", "sing": "out loud", "swing": "high",
          "sail": "far", "surf": "to the shore", "ride": "far", "walk": "on", "sleep": "soundly", "nap": "soundly"}
# Actions done sitting still: taken up again calmly, not bravely.
CALM = frozenset({"sleep", "nap", "rest", "read", "write", "paint", "draw", "knit", "sew", "fish", "wait", "listen",
                  "watch", "sit", "dream", "relax", "bake", "cook", "plant", "garden", "water", "study", "sing", "hum",
                  "fall asleep", "write", "spell", "count", "brew", "stir", "whistle", "sculpt", "carve", "weave"})
# Genre lines that hold the action itself may join an arc's lines: the genre colours the story, never
# replaces its action.
ACTION_SLOTS = ("{do}", "{doing}", "{did}", "{does}")


def arc_slots(reading: Reading) -> dict[str, str]:
    """{trouble}, {troubled}, {manner} and {brave} for the reading's action."""
    # A verb with its particle may go its own way ("fall asleep" is not a fall).
    verb = f"{reading.verb} {reading.particle}" if f"{reading.verb} {reading.particle}" in TROUBLE else reading.verb
    trouble, troubled = TROUBLE.get(verb, CALM_TROUBLE if verb in CALM else DEFAULT_TROUBLE)
    manner = MANNER.get(verb, "") if not reading.has_object and not reading.particle else ""
    return {"trouble": trouble, "troubled": troubled, "manner": f" {manner}" if manner else "",
            "brave": "calmly" if verb in CALM else "bravely"}


def arc_for(reading: Reading, genre: Genre) -> ActionArc:
    """The reading's arc, with the lines of its genre that keep the action (when the prompt called the genre up)."""
    arc = ARCS[reading.arc or "do"]
    if not reading.genre_named:
        return arc

    def keeps(line: str) -> bool:
        return any(slot in line for slot in ACTION_SLOTS)

    beats = tuple((lines + tuple(x for x in g_lines if keeps(x)), actions)
                  for (lines, actions), (g_lines, _) in zip(arc.beats, genre.beats))
    return ActionArc(arc.titles + genre.titles, arc.loglines + tuple(x for x in genre.loglines if keeps(x)), beats)

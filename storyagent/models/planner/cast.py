"""A cast's story, offline: who of the user's characters does what in every shot, and where each stands.

`read_cast` reads the prompt for each character's part (rules of thumb, no parser):
- several characters doing the action ("Pip and Mo build a raft", "two friends sail", "Pip swims
  with Mo"): all of them act, each shot gives each its own form of the action;
- one teaching, coaching or showing the others ("Pip teaches Mo to swim", "Sol learns to fly with
  Wren"): the learners follow the learning arc, the teacher shows them how; one helping ("Nell helps
  Toby climb the tree"): the others act, the helper helps;
- one doing something to another ("Rex chases Dot", "Odo rescues Pim"): the object is a character
  the action is done to (the action reads "chases Dot"); "race", "play", "dance" ... are done together;
- one watching or listening ("Quin watches Ray dive", "Tam reads to Lia"): an audience, in every shot;
- a clause of its own ("... while Max sleeps"): that character does its own action beside the story;
- a character the prompt does not name is a friend who comes to help at the turn and is there at
  the end (in a one-shot film, in that shot).
A character named by its class word ("a fox", "the owl") counts as named when no other has that word.

`stage_cast` lays the cast over a story planned for the acting character (pipeline.py): every shot's
`characters` (each with its own action and a region side by side with the others', so nobody hides
anybody), narration naming the characters who act together, a description of each, `subject_action`
the focus character's action and `subject_region` the group's box.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from storyagent.models.planner.actions import ARCS, arc_slots
from storyagent.models.planner.arc import HOME, SETUP, TURN, choose_line, clip_text
from storyagent.models.planner.reading import Reading, read_prompt
from storyagent.models.planner.verbs import base_of, third
from storyagent.schemas import NAMED_REGIONS, Region, Shot, ShotCharacter, StoryScript, who

ACTOR, TEACHER, HELPER, TARGET, AUDIENCE, SECOND, FRIEND = ("actor", "teacher", "helper", "target", "audience",
                                                             "second", "friend")

# Verbs that hand the action on to the characters after them.
_TEACH = r"(?:teach(?:es)?|taught|teaching|show(?:s|ed)?|showing|coach(?:es|ed)?|coaching|train(?:s|ed)?|training)"
_HELP = r"(?:help(?:s|ed)?|helping|guide(?:s|d)?|guiding)"
_WATCH = r"(?:watch(?:es|ed)?|watching|see(?:s)?|saw|hear(?:s)?|heard|cheer(?:s|ed)?\s+on)"
# Actions two characters do with each other: "Pip races Mo" is a race of both.
TOGETHER_VERBS = frozenset({"race", "play", "dance", "meet", "wrestle", "hug", "marry", "fight", "duel", "argue",
                            "talk", "chat", "swim", "run", "sing", "skate", "cuddle", "kiss", "tango", "waltz",
                            "compete", "battle", "share", "explore", "travel"})
# Words that make the prompt's unnamed subject the whole cast: "two friends sail", "they build a raft".
_GROUP_WORDS = re.compile(r"\b(?:two|three|four|five|six|both|friends|together|they|everyone|everybody|all of them)\b")
_COUNT = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_NAME = r"@(\d)"
GROUP = rf"{_NAME}(?:\s*,\s*(?:and\s+)?{_NAME}|\s+and\s+{_NAME})*"


@dataclass(frozen=True)
class Part:
    """One character's part in a cast's story."""

    name: str
    class_word: str
    role: str
    """ACTOR (does the story's action), TEACHER (teaches the actors), HELPER (helps them), TARGET (the action is
    done to it), AUDIENCE (watches or listens), SECOND (its own action beside the story), FRIEND (not named by
    the prompt: helps at the turn, there at the end)."""
    reading: Reading | None = None
    """A SECOND character's own action."""


@dataclass(frozen=True)
class CastReading:
    """Who does what in a cast's prompt."""

    parts: tuple[Part, ...]
    """Every character's part, in the cast's order (the lead first)."""
    reading: Reading
    """The story's action and place, as the acting characters do it."""
    prompt: str
    """The prompt as the acting characters' story ("a owl learns to swim" for "Pip teaches Mo to swim")."""

    @property
    def actors(self) -> list[Part]:
        return [p for p in self.parts if p.role == ACTOR]

    @property
    def focus(self) -> Part:
        """The character the story is told about: the first who acts."""
        return self.actors[0]

    def with_role(self, *roles: str) -> list[Part]:
        return [p for p in self.parts if p.role in roles]

    @property
    def pattern(self) -> str:
        """"teach", "help", "together" (several act) or "solo"."""
        if self.with_role(TEACHER):
            return "teach"
        if self.with_role(HELPER):
            return "help"
        return "together" if len(self.actors) > 1 else "solo"


@dataclass
class Plan:
    """A story and what each of its shots was made of (for the cast laid over it)."""

    script: StoryScript
    reading: Reading
    beats: list[int]
    """The beat (SETUP .. HOME) of each shot."""
    formats: list[dict[str, str]]
    """Each shot's template slots ({name}, {do}, {where} ...)."""
    arc_beats: tuple
    """Per beat: (narration lines, actions) of the story's arc."""
    prompt: str


# ---- reading the prompt --------------------------------------------------------------------


def joined(names: list[str]) -> str:
    """"Pip", "Pip and Mo", "Ana, Bea and Cy"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _mask(prompt: str, cast: list[tuple[str, str]]) -> str:
    """The prompt in lower case with each character's name (or its class word after an article, when no other
    character shares it) written `@k`, k its place in the cast."""
    text = " " + re.sub(r"\s+", " ", prompt.strip()) + " "
    for k, (name, _) in sorted(enumerate(cast), key=lambda kc: -len(kc[1][0])):
        text = re.sub(rf"(?<![\w@])(?:{re.escape(name)})(?:'s)?(?!\w)", f"@{k}", text, flags=re.IGNORECASE)
    words = [c.strip().lower() for _, c in cast]
    for k, word in enumerate(words):
        if word and word != "character" and words.count(word) == 1 and f"@{k}" not in text:
            text = re.sub(rf"\b(?:a|an|the)\s+(?:\w+\s+)?{re.escape(word)}\b", f"@{k}", text, count=1, flags=re.IGNORECASE)
    return text.strip().lower()


def _ids(match: re.Match[str] | str) -> list[int]:
    text = match.group(0) if isinstance(match, re.Match) else match
    return [int(k) for k in re.findall(_NAME, text)]


def _subject(ids: list[int], cast: list[tuple[str, str]]) -> str:
    """How the acting characters are said in the prompt the planner reads: "a owl", "two friends"."""
    return f"a {cast[ids[0]][1] or 'character'}" if len(ids) == 1 else f"{_COUNT.get(len(ids), 'some')} friends"


def _conjugated(rest: str, single: bool) -> str:
    """A bare verb phrase ("climb the tree") said of one ("climbs the tree") or of several ("climb the tree")."""
    head, _, tail = rest.strip().partition(" ")
    base = base_of(head)
    if single and base is not None and head in (base, base + "ing", (base[:-1] + "ing") if base.endswith("e") else ""):
        head = third(base)
    return f"{head} {tail}".strip()


def _is_verb(word: str) -> bool:
    base = base_of(word)
    return base is not None and word != base


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\s+([,.;!?])", r"\1", text)).strip(" ,")


def _without_names(text: str) -> str:
    return _clean(re.sub(GROUP, " someone ", text))


def read_cast(prompt: str, cast: list[tuple[str, str]]) -> CastReading:
    """Each character's part in `prompt` (module docstring); `cast` is (name, class word) pairs, the lead first."""
    text = _mask(prompt, cast)
    roles: dict[int, str] = {}
    seconds: dict[int, Reading] = {}
    main, *others = re.split(r"\s*,?\s*\b(?:while|whilst|meanwhile)\b\s*,?\s*", text)
    for clause in others:
        m = re.match(GROUP, clause)
        if m and clause[m.end():].strip():
            ids = [k for k in _ids(m) if k not in roles]
            rest = clause[m.end():].strip()
            own = read_prompt(_subject(ids, cast) + " " + _conjugated(_without_names(rest), len(ids) == 1))
            for k in ids:
                roles[k] = SECOND if own.action is not None else AUDIENCE
                if own.action is not None:
                    seconds[k] = own
        else:
            main = f"{main} {clause}"  # a clause of nobody's own: part of the story's
    derived, targets, companions = _main_clause(main, cast, roles)
    reading = read_prompt(derived)
    if not reading.named_place:
        # The place may stand in a part of the prompt the actors' clause leaves out.
        whole = read_prompt(_without_names(text))
        if whole.named_place:
            reading = replace(reading, place=whole.place, named_place=True, place_noun=whole.place_noun,
                              place_head=whole.place_head, place_prep=whole.place_prep, place_article=whole.place_article)
    for k in companions:
        # Learning with someone is learning from them; doing something with someone is doing it together.
        roles[k] = TEACHER if reading.arc == "learn" else ACTOR
    if targets and reading.action is not None:
        # "chases Dot"; "gives Mo the present" when the action has a thing of its own.
        whom = joined([cast[k][0] for k in targets])
        reading = replace(reading, thing=f"{whom} {reading.thing}" if reading.has_object else whom, has_object=True)
    if not any(r == ACTOR for r in roles.values()):
        roles[min((k for k in range(len(cast)) if k not in roles), default=0)] = ACTOR
    parts = tuple(Part(name, cls, roles.get(k, FRIEND), seconds.get(k)) for k, (name, cls) in enumerate(cast))
    return CastReading(parts=parts, reading=reading, prompt=derived)


def _main_clause(main: str, cast: list[tuple[str, str]], roles: dict[int, str]) -> tuple[str, list[int], list[int]]:
    """The actors' prompt of the story's own clause, with the roles it gives put in `roles`; returns that prompt,
    the characters the action is done to, and those it is done with."""
    groups = list(re.finditer(GROUP, main))
    if not groups:
        if _GROUP_WORDS.search(main):
            for k in range(len(cast)):
                roles.setdefault(k, ACTOR)
        else:
            roles.setdefault(0, ACTOR)
        return main, [], []
    first = groups[0]
    prefix = main[:first.start()]
    named = not any(_is_verb(w) for w in re.findall(r"[a-z']+", prefix))
    if named:
        subject, after, lead_in = _ids(first), main[first.end():].strip(), prefix
    else:
        # The prompt's subject is no one of the cast by name ("the king teaches Mo ..."): the lead.
        subject, after, lead_in = [0], main, ""
    subject = [k for k in subject if k not in roles] or [0]

    def handed(verbs: str) -> re.Match[str] | None:
        return re.match(rf"^(?:[a-z]+ly\s+)?{verbs}\s+({GROUP})\s+(?:how\s+)?(?:to\s+)?(.+)$", after) if named else \
            re.search(rf"\b{verbs}\s+({GROUP})\s+(?:how\s+)?(?:to\s+)?(.+)$", after)

    for verbs, giver, taker, learn in ((_TEACH, TEACHER, ACTOR, True), (_HELP, HELPER, ACTOR, False),
                                       (_WATCH, AUDIENCE, ACTOR, False)):
        m = handed(verbs)
        if m is None or (verbs == _TEACH and not re.search(rf"{verbs}\s+{GROUP}\s+(?:how\s+)?to\b", after)):
            continue
        takers = [k for k in _ids(m.group(1)) if k not in roles]
        rest = _without_names(m.group(m.lastindex))
        if not takers or not rest or base_of(rest.split()[0]) is None:
            continue
        for k in subject:
            roles[k] = giver
        for k in takers:
            roles[k] = taker
        say = _subject(takers, cast)
        if learn:
            return f"{say} {'learns' if len(takers) == 1 else 'learn'} to {rest}", [], []
        return f"{say} {_conjugated(rest, len(takers) == 1)}", [], []

    # The subject acts; every other character gets its part from the word before its name.
    for k in subject:
        roles[k] = ACTOR
    targets: list[int] = []
    companions: list[int] = []
    together = False
    kept, pos = [], 0
    for g in re.finditer(GROUP, after):
        ids = [k for k in _ids(g) if k not in roles]
        before = after[:g.start()].rstrip()
        prep = re.search(r"\b(together with|along with|with|to|for|at|from|near|beside|behind)$", before)
        verb = re.search(r"\b([a-z']+)$", before)
        cut = prep.start() if prep else g.start()
        if prep and prep.group(1).endswith("with"):
            companions += ids
        elif prep is None and verb and base_of(verb.group(1)) is not None:
            if base_of(verb.group(1)) in TOGETHER_VERBS:
                together = True
                for k in ids:
                    roles[k] = ACTOR
            else:
                targets += ids
                for k in ids:
                    roles[k] = TARGET
        else:
            for k in ids:
                roles[k] = AUDIENCE
        kept.append(after[pos:cut])
        pos = g.end()
    kept.append(after[pos:])
    words = _clean(" ".join(kept))
    if not named:
        return words, targets, companions
    if together:
        # "Pip races Mo": a race of both, said of them together with the verb bare.
        acting = [k for k in range(len(cast)) if roles.get(k) == ACTOR]
        head, _, tail = words.partition(" ")
        return _clean(f"{lead_in} {_subject(acting, cast)} {base_of(head) or head} {tail}"), targets, companions
    return _clean(f"{lead_in} {_subject(subject, cast)} {words}"), targets, companions


# ---- laying the cast over the story ----------------------------------------------------------

# What each part does on each beat (SETUP, DISCOVERY, TROUBLE, TURN, HOME); every teacher's and helper's
# action keeps the story's verb.
TEACHER_ACTIONS = (("shows {actors} how to {do}", "gets ready to teach {actors} to {do}"),
                   ("shows {actors} how to {do}", "watches {actors} try to {do}"),
                   ("hurries to help {actors} {do}", "shows {actors} again how to {do}"),
                   ("{does} beside {actors}", "helps {actors} {do}"),
                   ("{does} alongside {actors}, proud", "{does} with {actors}, proud"))
HELPER_ACTIONS = (("gets ready to help {actors} {do}", "offers to help {actors} {do}"),
                  ("helps {actors} {do}", "watches {actors} {do}, smiling"),
                  ("hurries to help {actors} {do}", "holds on tight, helping {actors} {do}"),
                  ("helps {actors} {do} again", "cheers, helping {actors} {do}"),
                  ("celebrates with {actors} after {doing}", "{does} with {actors}, happy"))
TARGET_ACTIONS = (("looks around, curious", "waits, not noticing {actors}"),
                  ("spots {actors}", "turns to look at {actors}"),
                  ("waits for {actors}, worried", "calls out to {actors}"),
                  ("reaches out to {actors}", "runs towards {actors}"),
                  ("laughs with {actors}, happy", "hugs {actors}, happy"))
AUDIENCE_ACTIONS = (("waits for {actors}, curious", "sits down to watch {actors}"),
                    ("watches {actors} {do}", "watches {actors} {do}, delighted"),
                    ("gasps, worried", "watches {actors}, worried"),
                    ("cheers {actors} on", "claps for {actors}"),
                    ("claps for {actors}, delighted", "smiles at {actors}, happy"))
FRIEND_ACTIONS = {
    "learn": (("waves to {actors}", "comes along with {actors}"), ("watches {actors} {do}", "waves to {actors}"),
              ("runs to help {actors}", "hurries over to {actors}"), ("shows {actors} how to {do}", "helps {actors} {do}"),
              ("{does} with {actors}, happy", "cheers for {actors}")),
    "do": (("waves to {actors}", "comes along with {actors}"), ("watches {actors} {do}", "waves to {actors}"),
           ("runs to help {actors}", "hurries over to {actors}"), ("cheers {actors} on", "{does} beside {actors}"),
           ("{does} with {actors}, happy", "cheers for {actors}")),
    "happen": (("waves to {actors}", "walks beside {actors}"), ("gasps at {actors}", "hurries over to {actors}"),
               ("runs to help {actors}", "hurries over to {actors}"), ("helps {actors} up", "reaches out to {actors}"),
               ("laughs with {actors}", "smiles at {actors}, relieved")),
}

# Narration for the characters acting together, per arc and beat: past tense, so any number agrees.
GROUP_LINES = {
    "learn": (("{Names} had always wanted to {do}.", "Today was the day {names} would learn to {do}, together."),
              ("{Names} took a deep breath and tried to {do} {where}.", "The first try: {names} set out to {do}, side by side."),
              ("But {doing} was harder than it looked, and {names} {troubled}.",
               "Again and again {names} tried to {do}, and again and again they {troubled}."),
              ("{Names} helped each other, and began to {do} at last.", "Step by step, {names} showed each other how to {do}."),
              ("Now {names} {did}{manner} side by side, happier than ever.", "{Names} could {do} at last, and they cheered together.")),
    "do": (("{Names} set off {where}, ready to {do}.", "It was a perfect day to {do}, and {names} could not wait."),
           ("{Names} {did} {where}, and everything was new and wonderful.", "{Doing} together was even better than {names} had hoped."),
           ("Then, all of a sudden, {names} {troubled} and could not {do} any more.",
            "But something went wrong: {names} stopped {doing} and froze."),
           ("{Names} helped each other up and began to {do} again.", "Together, {names} {did} again, braver than before."),
           ("At the end of the day, {names} had {done} together, tired and happy.", "{Names} would {do} again tomorrow, side by side.")),
    "happen": (("{Names} wobbled {where}, just about to {do}.", "Nobody noticed that {names} were about to {do}."),
               ("Whoops! {Names} {did}, all at once.", "Before anyone could help, {names} {did}."),
               ("After {doing}, {names} were stuck and could not get back.", "{Names} lay still after {doing}, far from home."),
               ("{Names} helped each other up, after {doing} like that.", "Together, {names} got back up after {doing}."),
               ("{Names} laughed about {doing}, and were not afraid of it any more.", "{Names} laughed together about {doing}.")),
}
TEACH_LINES = (("{Actors} wanted to {do}, and {teachers} promised to show them how {where}.",
                "{Teachers} knew how to {do}, and {actors} longed to learn."),
               ("{Teachers} showed {actors} how to {do}, one small step at a time.",
                "{Actors} watched {teachers} closely and tried to {do} for the first time."),
               ("But {doing} was harder than it looked: {actors} {troubled}, and {teachers} hurried to help.",
                "{Actors} {troubled} again and again, but {teachers} did not give up."),
               ("With {teachers} close by, {actors} began to {do} at last.",
                "{Teachers} showed {actors} once more, and this time {actors} {did}."),
               ("Now {actors} {did}{manner}, and {teachers} cheered with pride.",
                "{Teachers} and {actors} {did} together, happier than ever."))
HELP_LINES = (("{Teachers} promised to help {actors} {do} {where}.", "{Actors} wanted to {do}, and {teachers} came to help."),
              ("{Actors} {did} {where}, and {teachers} was right there to help.",
               "With {teachers} beside them, {actors} began {doing}."),
              ("Then {actors} {troubled}, and {teachers} hurried over to help.",
               "{Doing} was hard, and {actors} {troubled}; {teachers} held on tight."),
              ("With a hand from {teachers}, {actors} began to {do} again.",
               "{Teachers} cheered, and {actors} {did} again, braver than before."),
              ("At the end of the day, {actors} had {done}, and {teachers} cheered.",
               "{Teachers} and {actors} celebrated after {doing}, tired and happy."))
# The lead acting alone, with the friends who come to help: at the turn, at the end (and in a one-shot film).
FRIEND_LINES = {
    "learn": {SETUP: ("{Name} wanted to {do}, and {friends} came along to help.",),
              TURN: ("{Friends} showed {name} how to {do}, one small step at a time.",
                     "With help from {friends}, {name} began to {do} at last."),
              HOME: ("Now {name} {did}{manner}, and {friends} cheered.", "{Name} could {do} at last, and {friends} cheered.")},
    "do": {SETUP: ("{Name} and {friends} set off {where}, ready to {do}.",),
           TURN: ("With {friends} cheering, {name} {did} again, braver than before.",
                  "{Friends} came to help, and {name} began to {do} again."),
           HOME: ("At the end of the day, {name} and {friends} had {done} together, tired and happy.",
                  "{Name} and {friends} would {do} again tomorrow.")},
    "happen": {SETUP: ("{Name} wobbled {where}, just about to {do}, while {friends} watched.",),
               TURN: ("{Friends} came by and helped {name} up, after {doing} like that.",),
               HOME: ("{Name} and {friends} laughed about {doing} together.",)},
}
GROUP_TITLES = {"learn": ("{Names} Learn to {Do}", "Keep {Doing}, {Names}!"),
                "do": ("{Names} {Do}", "{Doing} Together"),
                "happen": ("Oops, {Names}!", "The Day {Names} {Did}")}
GROUP_LOGLINES = {"learn": ("{Names} want to {do}, and find out together that every try counts.",),
                  "do": ("{Names} set out to {do} {where}, and the day does not go quite to plan.",),
                  "happen": ("When {names} {did}, they helped each other make everything right.",)}
TEACH_TITLES = ("A Lesson in {Doing}", "{Actors} Learns to {Do}")
TEACH_LOGLINES = ("{Teachers} {shows} {actors} how to {do} {where}, one small step at a time.",)
HELP_TITLES = ("A Helping Hand", "{Doing} with {Teachers}")
HELP_LOGLINES = ("{Teachers} {helps} {actors} {do} {where}, and nobody gives up.",)
ALONE = re.compile(r"\s*\b(?:all alone|alone|all by (?:him|her|it|them)sel(?:f|ves))\b")
SECOND_SAYS = ("Meanwhile, {who} {did}.", "Nearby, {who} {did}.", "All the while, {who} {did}.")
AUDIENCE_SAYS = ("{who} watched, delighted.", "{who} watched every moment.")


def side_by_side(n: int, variant: int = 0) -> list[Region]:
    """`n` regions left to right that do not cover one another: a pair as the named left and right (or one of
    them nearer the camera), more as an even row."""
    if n == 1:
        return [Region.named("center")]
    if n == 2:
        pairs = (("left", "right"), ("bottom left", "right"), ("left", "bottom right"))
        return [Region.named(r) for r in pairs[variant % len(pairs)]]
    margin, gap = 0.03, 0.02
    w = min(0.4, (1 - 2 * margin - (n - 1) * gap) / n)
    x0 = (1 - (n * w + (n - 1) * gap)) / 2
    rows = []
    for i in range(n):
        near = variant % 2 == 1 and i % 2 == 1
        rows.append(Region(x=round(x0 + i * (w + gap), 4), y=0.3 if near else 0.25, w=round(w, 4), h=0.68 if near else 0.7))
    return rows


def bounding(regions: list[Region]) -> Region:
    """The box around `regions` (the group's region)."""
    x0, y0 = min(r.x for r in regions), min(r.y for r in regions)
    x1, y1 = max(r.x + r.w for r in regions), max(r.y + r.h for r in regions)
    return Region(x=round(x0, 4), y=round(y0, 4), w=round(min(1.0, x1) - x0, 4), h=round(min(1.0, y1) - y0, 4))


def describe(characters: list[ShotCharacter], classes: dict[str, str], background: str, shot_type: str) -> str:
    """The picture's prompt: each character with its action, then the place and the framing."""
    who_does = ", ".join(f"{who(c.name, classes.get(c.name, 'character'))} {c.action}" for c in characters)
    return clip_text(f"{who_does}, {background}, {shot_type} shot, storybook illustration", 600)


def _present(part: Part, beat: int, i: int, beats: list[int]) -> bool:
    if part.role != FRIEND:
        return True
    # A friend comes at the turn and is there at the end; a film too short for either has everyone in its last shot.
    return beat in (TURN, HOME) if any(b in (TURN, HOME) for b in beats) else i == len(beats) - 1


def _arc(reading: Reading) -> str:
    return reading.arc if reading.action is not None and reading.arc in ARCS else "do"


def stage_cast(plan: Plan, cast: CastReading, rng: random.Random) -> StoryScript:
    """`plan`'s story with the cast laid over it (module docstring)."""
    classes = {p.name: p.class_word for p in cast.parts}
    actors = [p.name for p in cast.actors]
    teachers = [p.name for p in cast.with_role(TEACHER, HELPER)]
    friends = [p.name for p in cast.with_role(FRIEND)]
    audience = [p.name for p in cast.with_role(AUDIENCE)]
    focus = cast.focus.name
    arc = _arc(plan.reading)
    pattern = cast.pattern
    base_slots = arc_slots(plan.reading)
    said: set[str] = set()
    shots: list[Shot] = []
    for i, shot in enumerate(plan.script.shots):
        beat = plan.beats[i]
        fmt = base_slots | plan.formats[i] | _names(actors, teachers, friends, audience, focus)
        here = [p for p in cast.parts if _present(p, beat, i, plan.beats)]
        actions = {p.name: clip_text(_action(p, beat, fmt, shot, plan, cast, rng, len(here) > 1), 200) for p in here}

        # Side by side, the focus where the planner framed the lead (left, center or right).
        if len(here) == 1:
            spots, order = [shot.subject_region], here
        else:
            framed = next((k for k, v in NAMED_REGIONS.items() if Region(**v) == shot.subject_region), "center")
            spots = side_by_side(len(here), rng.randrange(3))
            slot = {"left": 0, "right": len(here) - 1}.get(framed, len(here) // 2 if len(here) > 2 else rng.randrange(2))
            others = [p for p in here if p.name != focus]
            order = others[:slot] + [p for p in here if p.name == focus] + others[slot:]
        place = {p.name: spots[k] for k, p in enumerate(order)}
        characters = [ShotCharacter(name=p.name, action=actions[p.name], region=place[p.name]) for p in here]

        narration = _narration(shot, beat, fmt, pattern, arc, friends, here, plan, rng, said)
        narration = _asides(narration, here, audience, beat, plan, rng)
        said.add(narration)
        shots.append(shot.model_copy(update={
            "narration": clip_text(narration, 400),
            "description": describe(characters, classes, shot.background, shot.shot_type.value),
            "subject_action": actions[focus],
            "subject_region": bounding([c.region for c in characters]),
            "characters": characters,
        }))

    title, logline = plan.script.title, plan.script.logline
    first = base_slots | plan.formats[0] | _names(actors, teachers, friends, audience, focus)
    titles, loglines = {"together": (GROUP_TITLES[arc], GROUP_LOGLINES[arc]), "teach": (TEACH_TITLES, TEACH_LOGLINES),
                        "help": (HELP_TITLES, HELP_LOGLINES)}.get(pattern, ((), ()))
    if titles:
        title = clip_text(choose_line(rng, titles, first, plan.prompt), 200)
        logline = clip_text(choose_line(rng, loglines, first, plan.prompt), 600)
    return StoryScript(title=title, logline=logline, shots=shots)


def _names(actors: list[str], teachers: list[str], friends: list[str], audience: list[str], focus: str) -> dict[str, str]:
    """The template slots that name the cast."""
    out = {"Names": joined(actors), "names": joined(actors), "Actors": joined(actors), "actors": joined(actors),
           "Name": focus, "name": focus,
           "shows": "shows" if len(teachers) == 1 else "show", "helps": "helps" if len(teachers) == 1 else "help"}
    for key, group in (("teachers", teachers), ("friends", friends), ("audience", audience)):
        if group:
            out[key] = out[key.capitalize()] = joined(group)
    return out


def _action(part: Part, beat: int, fmt: dict[str, str], shot: Shot, plan: Plan, cast: CastReading,
            rng: random.Random, company: bool) -> str:
    """What `part` does on `beat` (`company`: with other characters in the shot)."""
    if part.role == ACTOR:
        options = [a.format(**fmt) for a in plan.arc_beats[beat][1]]
        if company:
            # Nobody does it "all alone" with the others beside them.
            options = [a for a in options if not ALONE.search(a)] or [ALONE.sub("", a) for a in options]
        if part.name == cast.focus.name:
            return shot.subject_action if shot.subject_action in options or not company else options[0]
        # Each acting character its own form of the action: the beat's other actions in turn.
        k = [p.name for p in cast.actors].index(part.name)
        start = options.index(shot.subject_action) if shot.subject_action in options else 0
        return options[(start + k) % len(options)]
    if part.role == SECOND and part.reading is not None:
        own = part.reading
        slots = own.slots() | arc_slots(own) | {"where": fmt["where"], "place": fmt["place"]}
        return rng.choice(ARCS[_arc(own)].beats[beat][1]).format(**slots)
    table = {TEACHER: TEACHER_ACTIONS, HELPER: HELPER_ACTIONS, TARGET: TARGET_ACTIONS, AUDIENCE: AUDIENCE_ACTIONS,
             FRIEND: FRIEND_ACTIONS[_arc(plan.reading)]}.get(part.role, AUDIENCE_ACTIONS)
    return rng.choice(table[beat]).format(**fmt)


def _narration(shot: Shot, beat: int, fmt: dict[str, str], pattern: str, arc: str, friends: list[str],
               here: list[Part], plan: Plan, rng: random.Random, said: set[str]) -> str:
    """The shot's line: the group's, the lesson's or the help's; the lead's own with the friends there."""
    if pattern == "together":
        return choose_line(rng, GROUP_LINES[arc][beat], fmt, plan.prompt, avoid=said)
    if pattern in ("teach", "help"):
        return choose_line(rng, (TEACH_LINES if pattern == "teach" else HELP_LINES)[beat], fmt, plan.prompt, avoid=said)
    if friends and any(p.name in friends for p in here):
        lines = FRIEND_LINES[arc]
        return choose_line(rng, lines.get(beat, lines[HOME]), fmt, plan.prompt, avoid=said)
    return ALONE.sub("", shot.narration) if len(here) > 1 else shot.narration


def _asides(narration: str, here: list[Part], audience: list[str], beat: int, plan: Plan, rng: random.Random) -> str:
    """The narration with what a character of a clause of its own does, and the audience watching, said after it."""
    for p in here:
        if p.role == SECOND and p.reading is not None:
            did = p.reading.slots()["did"]
            narration += " " + rng.choice(SECOND_SAYS).format(who=p.name, did=did)
    watching = [p.name for p in here if p.name in audience and not re.search(rf"\b{re.escape(p.name)}\b", narration)]
    if watching and (beat in (SETUP, HOME) or len(plan.beats) == 1):
        narration += " " + rng.choice(AUDIENCE_SAYS).format(who=joined(watching))
    return narration

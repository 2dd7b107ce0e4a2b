"""Issue 25: the offline planner's cast story, and a one-character story exactly as it was before casts."""

import json
import re

import pytest

from storyagent.models.planner import PlannerConfig, TemplatePlanner, check_keeps_prompt, revise_shot
from storyagent.models.planner.cast import ACTOR, AUDIENCE, FRIEND, SECOND, TARGET, TEACHER, read_cast, side_by_side
from storyagent.schemas import HIDDEN_FRACTION, StoryScript, covered_fraction
from tests.support.paths import FIXTURES

PINNED = json.loads((FIXTURES / "planner" / "one_character.json").read_text())
PIP_MO = [("Pip", "fox"), ("Mo", "owl")]


def plan(prompt: str, cast=PIP_MO, n: int = 5, seed: int = 0) -> StoryScript:
    return TemplatePlanner()(prompt, cast[0][0], n, seed=seed, class_word=cast[0][1], supporting=cast[1:])


def actions_of(script: StoryScript, name: str) -> list[str]:
    return [c.action for s in script.shots for c in s.characters if c.name == name]


@pytest.mark.parametrize("entry", PINNED["stories"], ids=[e["args"][0] for e in PINNED["stories"]])
def test_a_one_character_story_is_byte_for_byte_what_it_was(entry):
    prompt, name, cls, n, seed = entry["args"]
    script = TemplatePlanner(PlannerConfig(shot_duration=2.0))(prompt, name, n, seed, cls)
    assert script.model_dump_json(indent=2) == entry["json"]
    assert "characters" not in script.model_dump_json()
    # An empty cast is no cast.
    assert TemplatePlanner(PlannerConfig(shot_duration=2.0))(prompt, name, n, seed, cls, supporting=[]) == script


@pytest.mark.parametrize("entry", PINNED["revisions"], ids=[e["feedback"] for e in PINNED["revisions"]])
def test_a_one_character_revision_is_what_it_was(entry):
    from storyagent.schemas import Shot

    shot = Shot.model_validate_json(entry["shot"])
    assert revise_shot(shot, entry["feedback"], name="Pip", class_word="fox").model_dump_json() == entry["json"]
    assert revise_shot(shot, entry["feedback"], name="Pip", class_word="fox", cast=[("Pip", "fox")]).model_dump_json() \
        == entry["json"]


@pytest.mark.parametrize("prompt,cast,roles", [
    ("Pip and Mo build a raft", PIP_MO, [ACTOR, ACTOR]),
    ("Pip teaches Mo to swim", PIP_MO, [TEACHER, ACTOR]),
    ("Mo teaches Pip how to fly", PIP_MO, [ACTOR, TEACHER]),
    ("a fox learns to swim", PIP_MO, [ACTOR, FRIEND]),
    ("Mo learns to swim", PIP_MO, [FRIEND, ACTOR]),
    ("the fox chases the owl", PIP_MO, [ACTOR, TARGET]),
    ("Pip races Mo in the meadow", PIP_MO, [ACTOR, ACTOR]),
    ("Pip swims with Mo in the lake", PIP_MO, [ACTOR, ACTOR]),
    ("Pip sings for Mo", PIP_MO, [ACTOR, AUDIENCE]),
    ("Pip paints while Mo reads", PIP_MO, [ACTOR, SECOND]),
    ("two friends build a raft", [("Pip", "fox"), ("Mo", "owl"), ("Tig", "tiger")], [ACTOR, ACTOR, ACTOR]),
])
def test_who_does_what(prompt, cast, roles):
    assert [p.role for p in read_cast(prompt, cast).parts] == roles


def test_together_everyone_does_the_action_in_every_shot_each_their_own_way():
    script = plan("Pip and Mo build a raft")
    for shot in script.shots:
        assert [c.name for c in shot.characters] == ["Pip", "Mo"]
        pip, mo = shot.characters
        assert re.search(r"\bbuil(d|ds|t|ding)\b", pip.action) and re.search(r"\bbuil(d|ds|t|ding)\b", mo.action)
        assert pip.action != mo.action, "each character its own action"
        assert "Pip and Mo" in shot.narration
        assert shot.subject_action == pip.action
        assert "Pip the fox" in shot.description and "Mo the owl" in shot.description
    assert "Pip and Mo" in script.title + script.logline
    assert check_keeps_prompt("two friends build a raft", script, every_shot=True) == []


def test_teaching_the_teacher_shows_and_the_learner_swims():
    script = plan("Pip teaches Mo to swim")
    for shot in script.shots:
        teacher, learner = (next(c for c in shot.characters if c.name == n) for n in ("Pip", "Mo"))
        assert re.search(r"\bswim", teacher.action) and re.search(r"\bswim|\bsank|\bsinks", learner.action)
        assert "Mo" in teacher.action, f"the teacher's action is about the learner: {teacher.action!r}"
        assert "Pip" in shot.narration and "Mo" in shot.narration
    assert any("shows Mo how to swim" in a for a in actions_of(script, "Pip"))
    assert any(a.startswith("tries to swim") for a in actions_of(script, "Mo"))


def test_a_friend_the_prompt_does_not_name_comes_at_the_turn_and_stays_to_the_end():
    script = plan("a fox learns to swim", n=5)
    shown = [[c.name for c in s.characters] for s in script.shots]
    assert shown == [["Pip"], ["Pip"], ["Pip"], ["Pip", "Mo"], ["Pip", "Mo"]]
    assert "Mo" in script.shots[3].narration and "Pip" in script.shots[3].narration
    assert script.cast_problems(["Pip", "Mo"]) == ([], [])
    # In a one-shot film everybody is in that shot.
    assert [c.name for c in plan("a fox learns to swim", n=1).shots[0].characters] == ["Pip", "Mo"]


def test_a_character_of_its_own_clause_does_its_own_action():
    script = plan("Bo paints the fence while Zed sleeps", cast=[("Bo", "bunny"), ("Zed", "zebra")], n=3)
    for shot in script.shots:
        bo, zed = shot.characters
        assert "paint" in bo.action and re.search(r"\bsle(ep|eps|pt|eping)\b", zed.action)
        assert re.search(r"Zed slept", shot.narration)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_regions_side_by_side_hide_nobody(n):
    for variant in range(3):
        spots = side_by_side(n, variant)
        assert len(spots) == n and [s.x for s in spots] == sorted(s.x for s in spots)
        for a in spots:
            for b in spots:
                if a is not b:
                    assert covered_fraction(a, b) < HIDDEN_FRACTION and covered_fraction(a, b) == 0.0


def test_six_characters_all_fit_and_the_group_region_holds_them():
    cast = [(n, "cat") for n in ("Ann", "Ben", "Cat", "Dan", "Eve", "Fay")]
    script = plan("six friends dance in the park", cast=cast, n=3)
    assert script.cast_problems([n for n, _ in cast]) == ([], [])
    for shot in script.shots:
        assert len(shot.characters) == 6
        r = shot.subject_region
        assert all(r.x <= c.region.x and c.region.x + c.region.w <= r.x + r.w + 1e-6 for c in shot.characters)


def test_a_cast_story_is_deterministic_and_follows_the_seed():
    assert plan("Pip and Mo build a raft", seed=3) == plan("Pip and Mo build a raft", seed=3)
    assert plan("Pip and Mo build a raft", seed=3) != plan("Pip and Mo build a raft", seed=4)


def test_the_story_is_planned_again_for_another_cast_and_keeps_its_key_for_one(tmp_path):
    from storyagent.cast import CastMember
    from storyagent.config import RunConfig
    from storyagent.hashing import hash_json
    from storyagent.tools.story import offline_planner, story_input_hash
    from tests.support.paths import PIP, PIP_VIDEO

    def cfg(*supporting):
        return RunConfig.build(prompt="Pip teaches Mo to swim", subject=PIP, name="Pip", class_word="fox", shots=3,
                               supporting=list(supporting))

    one = cfg()
    assert story_input_hash(one) == hash_json({"prompt": one.prompt, "name": "Pip", "class_word": "fox", "shots": 3,
                                               "seed": 0, "llm": one.llm, "duration": one.shot_duration})
    owl, cat = (CastMember(name="Mo", class_word=w, media=PIP_VIDEO) for w in ("owl", "cat"))
    keys = {story_input_hash(c) for c in (one, cfg(owl), cfg(cat))}
    assert len(keys) == 3, "a changed cast is a new story"
    story = offline_planner(cfg(owl))
    assert {c.name for s in story.shots for c in s.characters} == {"Pip", "Mo"}
    assert "Mo the owl" in story.shots[0].description and "Mo the cat" in offline_planner(cfg(cat)).shots[0].description

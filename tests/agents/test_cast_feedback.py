"""Issue 25, point 6: a redo may name a character ("redo 3: Mo on the left", "redo 2: Mo waves"); only the named
shots change, so only their pictures and clips are made again; a name not in the cast is one sentence back.
The real crew on the offline animatic backend, the reviews scripted through AG2's IOStream."""

import json
from pathlib import Path

import pytest

from storyagent.agents.crew import run_crew
from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.schemas import StoryScript
from tests.agents.test_human_review import ScriptedIO
from tests.support.creature import write_owl_blob_png
from tests.support.paths import PIP

PROMPT = "Pip and Mo build a raft"


@pytest.fixture(scope="module")
def owl(tmp_path_factory):
    """A second character the tests make: a blue owl-ish blob on a transparent ground."""
    return write_owl_blob_png(tmp_path_factory.mktemp("owl") / "mo.png")


def cfg(owl: Path, review: str) -> RunConfig:
    return RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=4, width=128, height=80,
                           fps=4, shot_duration=2.0, review=review,
                           supporting=[CastMember(name="Mo", class_word="owl", media=owl)])


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted([*root.rglob("*.png"), *root.rglob("*.mp4")])}


def story(root: Path) -> StoryScript:
    return StoryScript.model_validate_json((root / "story.json").read_text())


def where(script: StoryScript, shot: int) -> dict[str, float]:
    return {c.name: c.region.x for c in script.shots[shot - 1].characters}


@pytest.fixture(scope="module")
def film(tmp_path_factory, owl):
    """A finished two-character film, made once; each test works on its own copy."""
    root = tmp_path_factory.mktemp("cast_film")
    run_crew(cfg(owl, "none"), root, show_progress=False)
    return root


def copy_of(film: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "film"
    shutil.copytree(film, out)
    return out


def test_redo_3_moves_the_named_character_and_redraws_only_shot_3(film, tmp_path, owl):
    root = copy_of(film, tmp_path)
    before_story, before = story(root), mtimes(root)
    assert len(before_story.shots[2].characters) == 2, "shot 3 shows both"
    side = "right" if where(before_story, 3)["Mo"] < where(before_story, 3)["Pip"] else "left"
    io = ScriptedIO(["ok", f"redo 3: Mo on the {side}", "ok", "ok"])
    result = run_crew(cfg(owl, "human"), root, resume=True, show_progress=False, io=io)

    x = where(result.script, 3)
    assert (x["Mo"] > x["Pip"]) if side == "right" else (x["Mo"] < x["Pip"]), f"Mo is on the {side} now: {x}"
    assert result.script.cast_problems(["Pip", "Mo"]) == ([], []), "neither hides the other"
    assert [s for s in result.script.shots if s.index != 3] == [s for s in before_story.shots if s.index != 3]
    shot3, old3 = result.script.shots[2], before_story.shots[2]
    assert [c.action for c in shot3.characters] == [c.action for c in old3.characters], "only where they stand"
    changed = {k for k, t in mtimes(root).items() if before.get(k) != t}
    drawn = {k for k in changed if k.startswith("storyboard/")}
    assert "storyboard/shot_03.png" in drawn
    assert all(k.startswith("storyboard/shot_03") for k in drawn), f"only shot 3's pictures are redrawn: {drawn}"
    assert {k for k in changed if k.startswith("shots/")} == {"shots/shot_03.mp4"}
    assert "Storyboard drawn now: shot 3; unchanged: shot 1, 2, 4." in io.questions[2]


def test_redo_2_gives_the_named_character_its_new_action(film, tmp_path, owl):
    root = copy_of(film, tmp_path)
    before_story, before = story(root), mtimes(root)
    io = ScriptedIO(["redo 2: Mo waves", "ok", "ok", "ok"])
    result = run_crew(cfg(owl, "human"), root, resume=True, show_progress=False, io=io)

    shot2, old2 = result.script.shots[1], before_story.shots[1]
    actions = {c.name: c.action for c in shot2.characters}
    assert actions["Mo"] == "waves"
    assert actions["Pip"] == next(c.action for c in old2.characters if c.name == "Pip"), "Pip keeps his action"
    assert "Mo waves" in shot2.narration and "Mo the owl waves" in shot2.description
    assert [c.region for c in shot2.characters] == [c.region for c in old2.characters]
    assert [s for s in result.script.shots if s.index != 2] == [s for s in before_story.shots if s.index != 2]
    assert json.loads((root / "story.json").read_text())["shots"][0] == json.loads(before_story.shots[0].model_dump_json())
    assert "Story rewritten now: shot 2; unchanged: shot 1, 3, 4." in io.questions[1]
    changed = {k for k, t in mtimes(root).items() if before.get(k) != t}
    assert all(k.startswith(("storyboard/shot_02", "shots/shot_02")) or k in ("storyboard.png", "film.mp4")
               for k in changed), changed
    assert "storyboard/shot_02.png" in changed and "shots/shot_02.mp4" in changed


def test_a_name_not_in_the_cast_is_one_sentence_and_nothing_is_made_again(film, tmp_path, owl):
    root = copy_of(film, tmp_path)
    before_story, before = story(root), mtimes(root)
    io = ScriptedIO(["ok", "redo 3: Crongo on the left", "ok", "ok"])
    result = run_crew(cfg(owl, "human"), root, resume=True, show_progress=False, io=io)
    said = io.questions[2]
    assert "Crongo is not in the cast (Pip, Mo): name one of them, or leave the name out, and say it again." in said
    assert "No storyboard changed." in said
    assert result.script == before_story
    assert {k for k, t in mtimes(root).items() if before.get(k) != t} <= {"film.mp4"}

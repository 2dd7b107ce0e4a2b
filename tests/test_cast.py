"""The cast in the run settings: how a user gives several characters, how a cast of one stays today's film,
and what the story of a cast must respect (issue 25, items 1 and 2)."""

import json
import shutil
import subprocess
import sys

import pytest

from storyagent.cast import CastMember, cast_from_options, read_cast_file, reference_folder
from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.schemas import Region, Shot, ShotCharacter, StoryScript, covered_fraction, front_to_back


def shot(index=1, **extra):
    return Shot(index=index, narration="Pip waves.", description="a fox waves", subject_action="waves",
                subject_region="left", background="a beach", shot_type="wide", camera_motion="static", **extra)


# ---- giving a cast --------------------------------------------------------------------------------


def test_cast_file_reads_every_character_relative_to_its_folder(tmp_path, pip_png, pip_video):
    folder = tmp_path / "my cast"
    folder.mkdir()
    shutil.copy(pip_png, folder / "pip.png")
    shutil.copy(pip_video, folder / "mo.mp4")
    (folder / "cast.toml").write_text(
        '[[character]]\nname = "Pip"\nclass_word = "fox"\nmedia = "pip.png"\n\n'
        '[[character]]\nname = "Mo"\nclass_word = "owl"\nmedia = "mo.mp4"\nvoice = "espeak"\n')
    pip, mo = read_cast_file(folder / "cast.toml")
    assert (pip.name, pip.class_word, pip.media) == ("Pip", "fox", folder / "pip.png")
    assert (mo.name, mo.class_word, mo.media, mo.voice) == ("Mo", "owl", folder / "mo.mp4", "espeak")


@pytest.mark.parametrize("text, words", [
    ("[[character]]\nname = 'Pip'\n", "character 1 of"),                      # no media
    ("name = 'Pip'\n", "holds no [[character]] tables"),
    ("[[character]\nname = 'Pip'", "is not valid TOML"),
    ("[[character]]\nname = 'Pip'\nmedia = 'nowhere.png'\n", "nowhere.png"),
    ("[[character]]\nname = 'Pip'\nmedia = 'pip.png'\nhat = 'red'\n", "hat"),
])
def test_a_bad_cast_file_is_refused_in_one_sentence(tmp_path, pip_png, text, words):
    shutil.copy(pip_png, tmp_path / "pip.png")
    (tmp_path / "cast.toml").write_text(text)
    with pytest.raises(InputError, match=None) as err:
        read_cast_file(tmp_path / "cast.toml")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_subject_options_name_each_character(pip_png, pip_video):
    cast = cast_from_options([f"Pip={pip_png}", f"Mo={pip_video}"], ["Mo=owl", "Pip=fox"], None, "Hero")
    assert [(m.name, m.class_word, m.media) for m in cast] == [("Pip", "fox", pip_png), ("Mo", "owl", pip_video)]
    # One plain --subject is today's command: --name and a plain --class-word are the lead's.
    (lead,) = cast_from_options([str(pip_png)], ["fox"], "Tom", "Hero")
    assert (lead.name, lead.class_word, lead.media) == ("Tom", "fox", pip_png)


@pytest.mark.parametrize("subjects, words, message", [
    (["{pip}", "{video}"], [], "give each as NAME=PATH"),
    (["Pip={pip}", "pip={video}"], [], "Two characters are called 'pip'"),
    (["Pip={pip}"], ["Mo=owl"], "--class-word names mo, who is not given"),
    (["Pip={pip}", "Mo=missing.mp4"], [], "missing.mp4"),
])
def test_bad_subject_options_are_refused(pip_png, pip_video, subjects, words, message):
    subjects = [s.format(pip=pip_png, video=pip_video) for s in subjects]
    with pytest.raises(InputError) as err:
        cast_from_options(subjects, words, None, "Hero")
    assert message in str(err.value)


def test_the_cast_is_the_lead_then_the_supporting_characters(pip_png, pip_video):
    cfg = RunConfig.build(prompt="two friends build a raft", subject=pip_png, name="Pip", class_word="fox",
                          supporting=[CastMember(name="Mo", class_word="owl", media=pip_video)])
    assert [m.name for m in cfg.cast] == ["Pip", "Mo"]
    assert [reference_folder(i, m.name) for i, m in enumerate(cfg.cast)] == ["subject", "cast/mo"]
    assert cfg.inputs_record()["supporting"][0]["media"] == str(pip_video.resolve())


# ---- a cast of one is today's film ---------------------------------------------------------------


def _storyagent(*args, cwd):
    return subprocess.run([sys.executable, "-m", "storyagent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_cast_of_one_makes_the_same_film_with_the_same_cache_keys(tmp_path, pip_png):
    (tmp_path / "cast.toml").write_text(f'[[character]]\nname = "Pip"\nclass_word = "fox"\nmedia = "{pip_png}"\n')
    today = _storyagent("run", "a day at the seaside", "-s", str(pip_png), "--name", "Pip", "--class-word", "fox",
                        "--shots", "2", "--out", "today", "-q", cwd=tmp_path)
    as_cast = _storyagent("run", "a day at the seaside", "--cast", "cast.toml", "--shots", "2", "--out", "cast", "-q",
                          cwd=tmp_path)
    assert today.returncode == 0 and as_cast.returncode == 0, today.stderr + as_cast.stderr
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("today", "cast"))
    assert a["inputs"] == b["inputs"] and "supporting" not in a["inputs"]
    assert {k: v["input_hash"] for k, v in a["artifacts"].items()} == {k: v["input_hash"] for k, v in b["artifacts"].items()}
    assert (tmp_path / "today/story.json").read_bytes() == (tmp_path / "cast/story.json").read_bytes()
    assert "characters" not in (tmp_path / "today/story.json").read_text()
    assert (tmp_path / "today/film.mp4").read_bytes() == (tmp_path / "cast/film.mp4").read_bytes()


def test_run_without_a_subject_says_what_to_give(tmp_path):
    res = _storyagent("run", "a day at the seaside", cwd=tmp_path)
    assert res.returncode != 0 and "--subject" in res.stderr and "Traceback" not in res.stderr


# ---- the story of a cast ---------------------------------------------------------------------------


def test_a_one_character_shot_serialises_as_before():
    assert "characters" not in shot().model_dump(mode="json")
    assert shot().cast("Pip") == [ShotCharacter(name="Pip", action="waves", region=Region.named("left"))]


def test_cast_problems_refuse_strangers_and_hidden_characters_and_warn_of_idle_ones():
    pip = {"name": "Pip", "action": "waves", "region": "left"}
    script = StoryScript(title="t", logline="l", shots=[
        shot(1, characters=[pip, {"name": "Mo", "action": "hops", "region": "right"}]),
        shot(2, characters=[pip, {"name": "Crong", "action": "runs", "region": "right"}]),
        shot(3, characters=[{"name": "Pip", "action": "sits", "region": {"x": 0.3, "y": 0.2, "w": 0.4, "h": 0.6}},
                            {"name": "Mo", "action": "sits", "region": "center"}]),
    ])
    errors, warnings = script.cast_problems(["Pip", "Mo", "Eddy"])
    assert errors == ["shot 2 names 'Crong', who is not in the cast (Pip, Mo, Eddy)",
                      "shot 3 hides Pip behind Mo; give them regions side by side (left and right)"]
    assert warnings == ["Eddy is in the cast but in no shot"]


def test_nearer_characters_are_the_ones_lower_in_the_frame():
    far = ShotCharacter(name="Mo", action="waits", region={"x": 0.5, "y": 0.1, "w": 0.3, "h": 0.4})
    near = ShotCharacter(name="Pip", action="waves", region={"x": 0.4, "y": 0.4, "w": 0.4, "h": 0.6})
    assert [c.name for c in front_to_back([far, near])] == ["Pip", "Mo"]
    assert covered_fraction(far.region, near.region) == pytest.approx((0.3 * 0.1) / (0.3 * 0.4))


def test_a_shot_lists_each_character_once():
    with pytest.raises(ValueError, match="listed twice"):
        shot(characters=[{"name": "Pip", "action": "a", "region": "left"}, {"name": "pip", "action": "b", "region": "right"}])


# ---- the class word matters to the diffusion backend (issue 26, item 7) ---------------------------


@pytest.mark.parametrize("supporting, words", [
    ([], "give --class-word (fox, cat, toy ...)."),
    ([{"name": "Mo", "media": "{video}"}], "finds Mo in the pictures by what they are; give --class-word NAME=WORD"),
])
def test_the_diffusion_backend_refuses_a_character_without_a_class_word(pip_png, pip_video, supporting, words):
    lead_word = "character" if not supporting else "fox"
    supporting = [m | {"media": m["media"].format(video=pip_video)} for m in supporting]
    with pytest.raises(InputError) as err:
        RunConfig.build(prompt="a day", subject=pip_png, name="Pip", class_word=lead_word, backend="diffusion",
                        supporting=supporting)
    assert words in str(err.value) and "\n" not in str(err.value)
    # The animatic cuts the character from its own media: no class word needed.
    RunConfig.build(prompt="a day", subject=pip_png, name="Pip", class_word=lead_word, supporting=supporting)


def test_run_with_the_diffusion_backend_and_no_class_word_says_so_before_any_work(tmp_path, pip_png):
    res = _storyagent("run", "a day at the seaside", "-s", str(pip_png), "--backend", "diffusion", "--out", "r",
                      cwd=tmp_path)
    assert res.returncode != 0 and "--class-word" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_the_cast_files_voice_of_the_lead_reaches_the_run(tmp_path, pip_png, pip_video):
    """Every character's `voice` in a cast file is kept, the first character's too (it is the lead, whose
    settings are the run's subject, name and class word)."""
    from storyagent.cli import cast_settings

    (tmp_path / "cast.toml").write_text(
        f'[[character]]\nname = "Pip"\nclass_word = "fox"\nmedia = "{pip_png}"\nvoice = "espeak:en-us+m3"\n\n'
        f'[[character]]\nname = "Mo"\nclass_word = "owl"\nmedia = "{pip_video}"\nvoice = "espeak:en-us+f3"\n')
    cfg = RunConfig.build(prompt="two friends build a raft", **cast_settings([], [], None, tmp_path / "cast.toml"))
    assert [(m.name, m.voice) for m in cfg.cast] == [("Pip", "espeak:en-us+m3"), ("Mo", "espeak:en-us+f3")]
    assert cfg.inputs_record()["lead_voice"] == "espeak:en-us+m3"
    with pytest.raises(InputError):
        RunConfig.build(prompt="a day", subject=pip_png, name="Pip", lead_voice="no-such-engine:x")

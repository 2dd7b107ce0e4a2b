"""A cast in the front ends (issue 25): the example cast's files, the README's first cast command as written,
the chat asking for a second character, and the studio's slots for the rest of the cast (its browser test
is in test_studio.py, beside the browser it drives)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pexpect
import pytest
from PIL import Image

from storyagent.cast import read_cast_file
from storyagent.errors import InputError
from storyagent.media import load_reference
from tests.support.cast_film import CAST_TOML, EXAMPLES, MO, MO_MASK, assert_two_character_film, mean_colour
from tests.support.paths import PIP, ROOT


def spawn(*args: str, cwd: Path = ROOT) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "storyagent", *args], cwd=str(cwd), encoding="utf-8", timeout=90,
                         dimensions=(50, 200), env={**os.environ, "PYTHONPATH": str(ROOT)})


def finish(child: pexpect.spawn) -> None:
    child.expect("Done")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_example_cast_is_pip_and_mo_each_cut_out_its_own_way(tmp_path):
    cast = read_cast_file(CAST_TOML)
    assert [(m.name, m.class_word, m.media, m.mask) for m in cast] == [
        ("Pip", "fox", PIP, None), ("Mo", "owl", MO, MO_MASK)]
    pip, mo = load_reference(PIP, max_frames=1), load_reference(MO, mask=MO_MASK, max_frames=1)
    assert (pip.mask_methods, mo.mask_methods) == (["alpha"], ["user mask"])
    # Mo's photo has a busy background: the mask, not the picture's border colours, says where Mo is.
    assert load_reference(MO, max_frames=1).mask_methods == ["user mask"], "mo_mask.png beside mo.jpg is found"
    # Clearly different characters: a violet owl and an orange fox.
    violet, orange = (mean_colour(r.frames[0], r.masks[0] > 0) for r in (mo, pip))
    assert violet[2] - violet[0] > orange[2] - orange[0] + 60, (violet, orange)
    for path in (MO, MO_MASK):
        assert path.stat().st_size < 64 * 1024, f"{path} is not a small file"
    # The committed files are what examples/make_mo.py draws.
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); import make_mo; "
                    f"make_mo.main(__import__('pathlib').Path({str(tmp_path)!r}))"], check=True, capture_output=True)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mo_mask.png")), np.asarray(Image.open(MO_MASK)))
    drawn, kept = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (tmp_path / "mo.jpg", MO))
    assert np.abs(drawn - kept).mean() < 1.0


def readme_cast_command() -> str:
    """The first command of the README's cast section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A cast: several characters", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.+?)\n", section).group(1)


def test_the_readmes_first_cast_command_runs_as_written(tmp_path):
    """Run from a checkout's root (here a folder whose examples/ is the checkout's), word for word."""
    command = readme_cast_command()
    words = shlex.split(command)
    assert words[:2] == ["storyagent", "run"] and "examples/cast.toml" in words, command
    (tmp_path / "examples").symlink_to(EXAMPLES)
    done = subprocess.run([sys.executable, "-m", "storyagent", *words[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    out = tmp_path / words[words.index("--out") + 1]
    assert_two_character_film(out)


def test_chat_asks_for_another_character_until_no(tmp_path):
    """Without --subject, the chat asks for the first character, then "Add another character?": an unclear
    answer, a missing file, a file that is no picture and a name the cast already has are each asked again."""
    out = tmp_path / "chat"
    child = spawn("chat", "--out", str(out))
    child.expect("folder of your character")
    child.sendline(str(PIP))
    child.expect("What is the story about")
    child.sendline("two friends build a raft")
    child.expect(r"The character's name .*Pip")
    child.sendline("")
    child.expect("What is it")
    child.sendline("fox")
    child.expect(r"Add another character\? \(y/n\)")
    child.sendline("perhaps")
    child.expect("Please answer y or n")
    child.sendline("y")
    child.expect("folder of character 2")
    child.sendline(str(tmp_path / "nobody.png"))
    child.expect("does not exist")
    child.sendline(str(ROOT / "README.md"))
    child.expect("is not a photo or video")
    child.sendline(str(MO))
    child.expect(r"Character 2's name .*Mo")
    child.sendline("pip")
    child.expect("What is pip")
    child.sendline("owl")
    child.expect("Two characters are called 'pip'")
    child.expect(r"Character 2's name .*Mo")
    child.sendline("")
    child.expect("What is Mo")
    child.sendline("owl")
    child.expect("The cast: Pip the fox, Mo the owl.")
    child.expect(r"Add another character\? \(y/n\)")
    child.sendline("no")
    child.expect("How many shots")
    child.sendline("2")
    for stage in ("story", "storyboard", "video"):
        child.expect(rf"\[{stage}\] ready")
        child.sendline("ok")
    finish(child)
    assert_two_character_film(out)
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert inputs["supporting"][0] | {"media": ""} == {"name": "Mo", "class_word": "owl", "media": "", "mask": None,
                                                       "voice": None}
    assert Path(inputs["supporting"][0]["media"]) == MO


def test_chat_with_a_cast_file_asks_nothing_about_the_characters_and_resumes_with_them(tmp_path):
    out = tmp_path / "chat"
    child = spawn("chat", "two friends build a raft", "--cast", str(CAST_TOML), "--shots", "2", "--out", str(out))
    index = child.expect([r"\[story\] ready", "character", "What is"])
    assert index == 0, "the cast file says who the film is about"
    child.sendline("ok")
    child.expect(r"\[storyboard\] ready")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    story = (out / "story.json").read_bytes()

    child = spawn("chat", "--out", str(out), "--resume")
    child.expect(r"Resuming .*'Pip' and 'Mo', 2 shots")
    assert child.expect([r"\[storyboard\] ready", r"\[story\] ready", "What is", "Add another"]) == 0
    child.sendline("ok")
    child.expect(r"\[video\] ready")
    child.sendline("ok")
    finish(child)
    assert (out / "story.json").read_bytes() == story, "the approved story is kept"
    assert_two_character_film(out)


def test_chat_refuses_a_bad_cast_in_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-m", "storyagent", "chat", "a raft", "--subject", f"Pip={PIP}",
                           "--subject", f"Pip={MO}", "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    said = done.stderr.strip().splitlines()
    assert said[1:] == ["error: Two characters are called 'Pip'; give each character its own name."], said
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------- the studio, without a browser
def _studio(tmp_path):
    pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
    from storyagent.studio.app import OTHERS, Studio

    return Studio(tmp_path / "runs"), OTHERS


def _start(studio, others: int, *cast) -> tuple[str | None, str]:
    slots = [value for character in cast for value in character]
    slots += [None, "", ""] * (others - len(cast))
    return studio.start([str(PIP)], "two friends build a raft", "Pip", "fox", 2, "animatic", "none", "none",  # no review
                        128, 80, 4, 0, "none", "none", None, *slots)


def test_the_studio_passes_the_rest_of_the_cast_as_supporting(tmp_path):
    studio, others = _studio(tmp_path)
    for cast, said in ((([], "Mo", "owl"),), "Character 2 (Mo) has no photos or clips"), \
                      ((([str(MO)], "pip", "owl"),), "Two characters are called 'pip'"), \
                      ((([str(ROOT / "README.md")], "Mo", "owl"),), "Character 2: README.md is not a photo or clip"):
        run_id, message = _start(studio, others, *cast)
        assert run_id is None and said in message and "\n" not in message, message
    assert not [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")], "no folder for a refused cast"

    # Mo uploaded with the mask beside the photo; an emptied slot between is no character.
    run_id, message = _start(studio, others, ([], "", ""), ([str(MO), str(MO_MASK)], "Mo", "owl"))
    assert run_id is not None, message
    session = studio.sessions[run_id]
    assert [(m.name, m.class_word, m.media.name) for m in session.cfg.supporting] == [("Mo", "owl", "uploads_02")]
    assert sorted(p.name for p in (session.root / "uploads_02").iterdir()) == ["upload_01.jpg", "upload_01_mask.png"]
    end = time.monotonic() + 120
    while not session.finished and time.monotonic() < end:
        time.sleep(0.2)
    assert session.view().state == "done", session.view()
    assert_two_character_film(session.root)

    # The story table shows each character's action in a cast shot, and an edit of it goes to that character.
    from storyagent.studio.runs import save_story_edits, story_rows

    rows = story_rows(session.root)
    story = json.loads((session.root / "story.json").read_text())
    assert rows[0][4] == "; ".join(f"{c['name']}: {c['action']}" for c in story["shots"][0]["characters"])
    assert save_story_edits(session.root, rows) is False, "an unedited table changes nothing"
    for bad in ("Pip: paddles hard", "Pip: paddles; Crong: steers", "Pip paddles; Mo steers", "Pip: a; Pip: b; Mo: c"):
        rows[0][4] = bad
        with pytest.raises(InputError, match="Shot 1's action names each of its characters once, as "
                                             "Pip: what Pip does; Mo: what Mo does."):
            save_story_edits(session.root, rows)
    assert json.loads((session.root / "story.json").read_text()) == story, "a refused edit writes nothing"
    rows[0][4] = "mo: steers from the back;  Pip: paddles hard "
    assert save_story_edits(session.root, rows) is True
    first = json.loads((session.root / "story.json").read_text())["shots"][0]
    assert {c["name"]: c["action"] for c in first["characters"]} == {"Pip": "paddles hard", "Mo": "steers from the back"}
    assert first["subject_action"] == "paddles hard", "the lead's action is the shot's subject action"

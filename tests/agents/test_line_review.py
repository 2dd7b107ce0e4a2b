"""The human Observer hears each shot's line (issue 24): the story review names and plays every line, and a
reviewer's words about the voice ("redo 2: say it slower") speak that line again and change nothing else."""

import hashlib
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pexpect
import pytest
from autogen.io import IOConsole

from storyagent.agents.crew import run_crew
from storyagent.agents.lines import voice_only, voice_words
from storyagent.agents.playback import LinePlayer
from storyagent.config import RunConfig
from storyagent.manifest import read_run
from storyagent.media.audio import read_audio
from storyagent.tools.sound import voice_feedback

from tests.support.paths import ROOT

pytestmark = pytest.mark.sound  # these films are made with their voice and score

PIP = ROOT / "examples" / "pip" / "pip.png"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ListeningIO(IOConsole):
    """Scripted answers; at each question, what the run folder holds: every line's and clip's bytes, the story."""

    def __init__(self, root: Path, answers: list[str]) -> None:
        self.root, self.answers = root, list(answers)
        self.questions: list[str] = []
        self.seen: list[dict[str, str]] = []

    def print(self, *objects, sep=" ", end="\n", flush=False) -> None:
        pass

    def send(self, message) -> None:
        pass

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        self.questions.append(prompt)
        files = [*self.root.glob("audio/narration_*.wav"), *self.root.glob("shots/*.mp4"), self.root / "story.json"]
        self.seen.append({str(p.relative_to(self.root)): sha(p) for p in sorted(files) if p.is_file()})
        return self.answers.pop(0)


def cfg(shots: int = 3, **settings) -> RunConfig:
    given = dict(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=shots, width=128,
                 height=80, fps=4, shot_duration=2.0, review="human", voice="espeak", music="none")
    return RunConfig.build(**(given | settings))


def lines(seen: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in seen.items() if k.startswith("audio/")}


@needs_espeak
def test_a_voice_redo_at_the_story_speaks_that_line_again_and_nothing_else(tmp_path):
    io = ListeningIO(tmp_path, ["redo 2: say it slower", "ok", "ok", "ok"])
    result = run_crew(cfg(), tmp_path, show_progress=False, io=io)

    first, second = io.seen[0], io.seen[1]
    assert sorted(lines(first)) == [f"audio/narration_0{i}.wav" for i in (1, 2, 3)], "every line spoken for the review"
    for i in (1, 2, 3):
        assert str(tmp_path / f"audio/narration_0{i}.wav") in io.questions[0], "the review names each line's file"
    changed = {k for k in first if first[k] != second.get(k)}
    assert changed == {"audio/narration_02.wav"}, "shot 2's line alone is spoken again; the story is as it was"
    assert "Line of shot 2 redone" in io.questions[1] and "text is unchanged" in io.questions[1]
    assert result.speakers[:3] == ["story_designer", "observer", "observer"], "no agent rewrote the story"

    # The words are the shot's voice redo at the story stage, rewriting nothing; the sound stage reads them.
    manifest = read_run(tmp_path)
    assert [(r["feedback"], r["rewrote_story"]) for r in manifest.redos("story", 2)] == [("say it slower", False)]
    assert manifest.redos("story", 1) == manifest.redos("story", 3) == []
    assert voice_feedback(manifest, 2) == "say it slower"
    slower = read_audio(tmp_path / "audio/narration_02.wav").duration
    # The same line, said at the plain rate, in another run: the redone one is the longer.
    plain = tmp_path / "plain"
    run_crew(cfg(review="none"), plain, show_progress=False)
    assert slower > 1.08 * read_audio(plain / "audio/narration_02.wav").duration
    assert sha(plain / "audio/narration_01.wav") == first["audio/narration_01.wav"]

    # The film says the line as redone: the stem the review heard is the one it used.
    assert sha(tmp_path / "audio/narration_02.wav") == second["audio/narration_02.wav"]
    import av

    with av.open(str(tmp_path / "film.mp4")) as film:
        assert [s.type for s in film.streams].count("audio") == 1


@needs_espeak
def test_a_voice_redo_at_the_clips_changes_no_clip(tmp_path):
    io = ListeningIO(tmp_path, ["ok", "ok", "redo 3: say it happier", "ok"])
    run_crew(cfg(), tmp_path, show_progress=False, io=io)
    at_clips, after = io.seen[2], io.seen[3]
    assert {k for k in at_clips if at_clips[k] != after.get(k)} == {"audio/narration_03.wav"}
    assert "[video] ready" in io.questions[3] and "Line of shot 3 redone" in io.questions[3]
    assert str(tmp_path / "audio/narration_03.wav") in io.questions[3]
    assert voice_feedback(read_run(tmp_path), 3) == "say it happier"


@needs_espeak
def test_words_for_the_text_and_the_voice_do_both(tmp_path):
    io = ListeningIO(tmp_path, ["redo 2: say it slower at night", "ok", "ok", "ok"])
    result = run_crew(cfg(), tmp_path, show_progress=False, io=io)
    assert "night" in result.script.shots[1].background and "night" not in result.script.shots[0].background
    assert "Story rewritten now: shot 2" in io.questions[1]
    assert voice_feedback(read_run(tmp_path), 2) == "say it slower at night"
    assert voice_feedback(read_run(tmp_path), 1) == ""


def test_without_a_voice_the_review_says_so_and_goes_on(tmp_path):
    io = ListeningIO(tmp_path, ["ok", "ok", "ok"])
    result = run_crew(cfg(shots=2, voice="none"), tmp_path, show_progress=False, io=io)
    assert "No narration to hear" in io.questions[0] and result.film is not None
    assert not list(tmp_path.glob("audio/narration_*.wav"))


@pytest.mark.parametrize("words,stage,about_voice,only_voice", [
    ("say it slower", "story", True, True), ("happier", "story", True, True),
    ("a bit slower, please", "story", True, True), ("say it slower at night", "story", True, False),
    ("make it night", "story", False, False), ("more zing please", "story", False, False),
    # At the pictures and the clips, a bare "livelier" or "slower" may be about the motion: not the line's.
    ("livelier", "video", False, False), ("slower", "storyboard", False, False),
    ("say it livelier", "video", True, True), ("the voice deeper", "video", True, True),
])
def test_which_words_are_about_the_voice(words, stage, about_voice, only_voice):
    assert (voice_words(words, stage), voice_only(words, stage)) == (about_voice, only_voice)


def fake_player(folder: Path, log: Path) -> Path:
    """An `ffplay` on PATH that plays nothing: it appends the file it was given to `log`."""
    folder.mkdir()
    exe = folder / "ffplay"
    exe.write_text(f"#!/bin/sh\nfor last; do :; done\necho \"$last\" >> {log}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def played_lines(log: Path, count: int) -> list[str]:
    """The files the fake player was given, once it was given `count` (a failure if that never comes)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        played = log.read_text().split() if log.exists() else []
        if len(played) >= count:
            return played
        time.sleep(0.05)
    raise AssertionError(f"the player was given {played}, not {count} files")


def test_the_player_plays_the_lines_in_order_unless_muted(tmp_path, monkeypatch):
    log = tmp_path / "played.txt"
    monkeypatch.setenv("PATH", f"{fake_player(tmp_path / 'bin', log)}{os.pathsep}{os.environ['PATH']}")
    files = [tmp_path / "a.wav", tmp_path / "b.wav"]
    assert not LinePlayer().play(files), "STORYAGENT_NO_PLAY (set for every test) mutes it"
    monkeypatch.setenv("STORYAGENT_NO_PLAY", "0")
    assert LinePlayer().play(files)
    assert played_lines(log, 2) == [str(f) for f in files]


@needs_espeak
def test_the_terminal_chat_plays_each_line_at_the_story_review(tmp_path):
    log = tmp_path / "played.txt"
    env = {**os.environ, "PATH": f"{fake_player(tmp_path / 'bin', log)}{os.pathsep}{os.environ['PATH']}",
           "STORYAGENT_NO_PLAY": ""}
    out = tmp_path / "chat"
    child = pexpect.spawn(sys.executable, ["-m", "storyagent", "chat", "a day at the seaside", "--subject", str(PIP),
                                           "--name", "Pip", "--class-word", "fox", "--shots", "2", "--voice", "espeak",
                                           "--music", "none", "--out", str(out)],
                          cwd=str(ROOT), encoding="utf-8", timeout=120, dimensions=(50, 250), env=env)
    child.expect(r"\[story\] ready")
    child.expect(r"Each shot's line: shot 1: .*narration_01\.wav; shot 2: .*narration_02\.wav")
    # The lines play in the background while the question waits: wait for them before answering.
    played_lines(log, 2)
    child.sendline("redo 1: happier")
    child.expect(r"Line of shot 1 redone")
    played_lines(log, 3)
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    played = log.read_text().split()
    # Every line at the first review, then only the line said again.
    assert played == [str(out / "audio/narration_01.wav"), str(out / "audio/narration_02.wav"),
                      str(out / "audio/narration_01.wav")]
    assert json.loads((out / "manifest.json").read_text())["inputs"]["voice"] == "espeak"

import json
import math
from pathlib import Path

import pytest

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.hashing import hash_file
from storyagent.media import read_frames
from storyagent.workspace import MANIFEST, Workspace

from tests.support.paths import PIP


def small_cfg(**kw) -> RunConfig:
    base = dict(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=3,
                width=128, height=80, fps=4, shot_duration=2.0)
    base.update(kw)
    return RunConfig.build(**base)


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hash_file(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (MANIFEST, TRANSCRIPT)}


def test_run_writes_the_documented_layout(tmp_path):
    result = run_crew(small_cfg(), tmp_path / "run", show_progress=False)
    root = result.root
    for rel in ("story.json", "storyboard.png", "film.mp4", "manifest.json", "shots/shot_01.mp4", "shots/shot_03.mp4",
                "storyboard/shot_02.png", "storyboard/shot_02_mask.png", "subject/frame_01.png"):
        assert (root / rel).is_file(), rel
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["stages"] == {s: "done" for s in ("subject", "story", "storyboard", "video", "sound", "film")}
    assert manifest["inputs"]["prompt"] == "a day at the seaside" and manifest["inputs"]["seed"] == 0
    assert "storyagent" in manifest["versions"]
    for key, entry in manifest["artifacts"].items():
        assert entry["input_hash"] and hash_file(root / entry["path"]) == entry["meta"]["file_hashes"][entry["path"]], key
    # Title card (1.5 s) plus three 2 s shots at 4 fps, each held while its line is said (with a voice here).
    lines = [manifest["artifacts"].get(f"audio/narration_{i:02d}") for i in (1, 2, 3)]
    held = [max(8, math.ceil((0.15 + line["meta"]["seconds"] + 0.4) * 4)) if line else 8 for line in lines]
    assert len(read_frames(root / "film.mp4", 1000)) == 6 + sum(held)
    assert (root / "film.srt").is_file() and (root / "film.vtt").is_file()
    assert not list(root.rglob(".*tmp*"))


def test_resume_reuses_everything_when_nothing_changed(tmp_path):
    run_crew(small_cfg(), tmp_path, show_progress=False)
    before = {p: (tmp_path / p).stat().st_mtime_ns for p in file_hashes(tmp_path)}
    run_crew(small_cfg(), tmp_path, resume=True, show_progress=False)
    after = {p: (tmp_path / p).stat().st_mtime_ns for p in file_hashes(tmp_path)}
    assert before == after


def test_editing_one_shot_redoes_only_that_shot(tmp_path):
    run_crew(small_cfg(), tmp_path, show_progress=False)
    story = json.loads((tmp_path / "story.json").read_text())
    story["shots"][1]["background"] = "a snowy hill at night"
    (tmp_path / "story.json").write_text(json.dumps(story))
    before = {p: (tmp_path / p).stat().st_mtime_ns for p in file_hashes(tmp_path)}
    result = run_crew(small_cfg(), tmp_path, resume=True, show_progress=False)
    rewritten = {p for p, t in before.items() if (tmp_path / p).stat().st_mtime_ns != t}
    assert result.script.shots[1].background == "a snowy hill at night", "the person's edit is kept"
    # The score is composed from each shot's place and time of day, so it (and the mix) follows the edit;
    # the lines' words are unchanged, so no line is spoken again.
    sound = {"audio/music.wav", "audio/mix.wav"} if "audio/music.wav" in before else set()
    assert rewritten == {"storyboard/shot_02.png", "storyboard/shot_02_mask.png", "shots/shot_02.mp4",
                         "storyboard.png", "film.mp4", *sound}


def test_missing_or_damaged_files_are_redone(tmp_path):
    run_crew(small_cfg(), tmp_path, show_progress=False)
    before = file_hashes(tmp_path)
    (tmp_path / "shots/shot_03.mp4").unlink()
    (tmp_path / "storyboard/shot_01.png").write_bytes(b"garbage")
    run_crew(small_cfg(), tmp_path, resume=True, show_progress=False)
    after = file_hashes(tmp_path)
    assert after["shots/shot_03.mp4"] == before["shots/shot_03.mp4"], "rendering is deterministic"
    assert after["storyboard/shot_01.png"] == before["storyboard/shot_01.png"]
    assert after["shots/shot_02.mp4"] == before["shots/shot_02.mp4"]


def test_a_changed_seed_redoes_the_story(tmp_path):
    run_crew(small_cfg(), tmp_path, show_progress=False)
    old = (tmp_path / "story.json").read_text()
    run_crew(small_cfg(seed=5), tmp_path, resume=True, show_progress=False)
    assert (tmp_path / "story.json").read_text() != old


def test_invalid_edit_to_story_is_reported_and_nothing_is_lost(tmp_path):
    run_crew(small_cfg(), tmp_path, show_progress=False)
    before = file_hashes(tmp_path)
    story = json.loads((tmp_path / "story.json").read_text())
    story["shots"][0]["camera_motion"] = "barrel roll"
    (tmp_path / "story.json").write_text(json.dumps(story))
    with pytest.raises(InputError, match="camera_motion: must be one of"):
        run_crew(small_cfg(), tmp_path, resume=True, show_progress=False)
    after = file_hashes(tmp_path)
    assert {k: v for k, v in after.items() if k != "story.json"} == {k: v for k, v in before.items() if k != "story.json"}


def test_output_folder_checks(tmp_path):
    run_crew(small_cfg(), tmp_path / "run", show_progress=False)
    with pytest.raises(InputError, match="already holds a run; add --resume"):
        Workspace.open(tmp_path / "run", {}, resume=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        Workspace.open(tmp_path / "file.txt", {}, resume=False)
    with pytest.raises(InputError, match="Cannot create output folder"):
        Workspace.open(tmp_path / "file.txt" / "sub", {}, resume=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="not empty"):
        Workspace.open(tmp_path / "other", {}, resume=False)
    assert (tmp_path / "other" / "thesis.docx").read_text() == "precious"
    (tmp_path / "run" / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="damaged"):
        Workspace.open(tmp_path / "run", {}, resume=True)


def test_paths_outside_the_run_folder_are_refused(tmp_path):
    ws = Workspace.open(tmp_path / "run", {}, resume=False)
    assert ws.path("shots/shot_01.mp4") == (tmp_path / "run" / "shots" / "shot_01.mp4").resolve()
    for bad in ("../escape.txt", "/etc/passwd", "shots/../../x"):
        with pytest.raises(InputError, match="outside the run folder"):
            ws.path(bad)

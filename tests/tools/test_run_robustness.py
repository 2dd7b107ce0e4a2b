"""Run folders that survive a second run, signals, a dead process, a tampered manifest and a failed
first run (issue 16: findings 1, 2, 4, 5, 6 and the failed first run of 9). Processes are real."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.errors import InputError
from storyagent.run_lock import LOCK
from storyagent.workspace import MANIFEST, Workspace
from tests.frontends.test_cli import PIP, ROOT, cli
from tests.tools.test_workspace_resume import small_cfg

SMALL = ["--shots", "3", "--width", "128", "--height", "80", "--fps", "4", "--duration", "2", "-q"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_args(out: Path, *extra: str, prompt: str = "a day at the seaside") -> list[str]:
    return ["run", prompt, "--subject", str(PIP / "pip.png"), "--out", str(out), *SMALL, *extra]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "storyagent", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def temp_files(root: Path) -> list[Path]:
    """What the atomic writers leave behind when killed: hidden `.NAME.XXXXXXXX.tmp.EXT` files."""
    return [p for p in root.rglob(".*") if ".tmp" in p.name]


def mtimes(root: Path) -> dict[str, int]:
    """Every file a run made, with its mtime (the manifest and transcript are rewritten by every run)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, TRANSCRIPT, LOCK)}


def freeze(proc: subprocess.Popen) -> None:
    """SIGSTOP, and wait until the process really stands still (the signal is delivered asynchronously)."""
    proc.send_signal(signal.SIGSTOP)
    deadline = time.time() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.time() < deadline, "the process did not stop"
        time.sleep(0.001)


def recorded_shots(out: Path) -> int:
    try:  # the manifest is written atomically, so any read sees a whole file
        return sum(k.startswith("shots/") for k in json.loads((out / MANIFEST).read_text())["artifacts"])
    except (OSError, ValueError):
        return 0


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


# ---- 1. one run per folder -------------------------------------------------------------------


def test_a_second_run_on_a_busy_folder_names_the_first_runs_pid(tmp_path):
    out = tmp_path / "run"
    first = start(*run_args(out))
    deadline = time.time() + 60
    while not ((out / LOCK).exists() and (out / LOCK).read_text().strip() == str(first.pid)):
        assert time.time() < deadline and first.poll() is None, "the first run never took the lock"
        time.sleep(0.005)
    freeze(first)  # mid-run, holding the folder
    try:
        for extra in ((), ("--resume",)):
            res = cli(*run_args(out, *extra))
            assert res.returncode == 2
            assert one_sentence(res.stderr) == (f"error: {out} is in use by another StoryAgent run (PID {first.pid}); "
                                                "wait for it to end, or choose another --out.")
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["stages"]["film"] == "done" and (out / "film.mp4").is_file(), "the first run's film is whole"
    assert not (out / LOCK).exists(), "a run that ends lets go of its folder"


def test_one_process_may_reopen_its_folder_and_closing_lets_another_in(tmp_path):
    root = tmp_path / "run"
    probe = [sys.executable, "-c", ("import sys; from storyagent.workspace import Workspace; "
                                    "from storyagent.errors import InputError\n"
                                    "try: Workspace.open(sys.argv[1], {}, resume=True).close()\n"
                                    "except InputError as e: sys.exit(str(e))"), str(root)]
    first = Workspace.open(root, {}, resume=False)
    second = Workspace.open(root, {}, resume=True)  # as tests and benchmarks do, one after the other
    first.close()
    res = subprocess.run(probe, capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert res.returncode == 1 and f"(PID {os.getpid()})" in res.stderr, "still held by the open Workspace"
    second.close()
    assert not (root / LOCK).exists()
    assert subprocess.run(probe, capture_output=True, text=True, env=ENV, timeout=60, check=False).returncode == 0


# ---- 2. the demo keeps out of other stories ---------------------------------------------------


def test_demo_never_writes_over_another_story(tmp_path):
    mine = tmp_path / "mine"
    assert cli(*run_args(mine, prompt="a rainy day in the city")).returncode == 0
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    res = cli("demo", "--out", str(mine), "-q")
    assert res.returncode == 2
    assert one_sentence(res.stderr) == (f"error: {mine} holds a run of another story, which the demo never writes over; "
                                        "give the demo another --out.")
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before

    demo = tmp_path / "demo"
    assert cli("demo", "--out", str(demo), "--shots", "1", "-q").returncode == 0
    made = mtimes(demo)
    assert cli("demo", "--out", str(demo), "--shots", "1", "-q").returncode == 0, "the demo resumes its own run"
    assert mtimes(demo) == made


# ---- 4. the subject's cache key is its content -------------------------------------------------


def test_resume_with_the_subject_path_spelled_differently_redoes_nothing(tmp_path, monkeypatch):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(PIP / "pip.png", media / "pip.png")
    (tmp_path / "link").symlink_to(media, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    run_crew(small_cfg(subject=Path("media")), out, show_progress=False)
    made = mtimes(out)
    for spelling in (media, tmp_path / "link", Path("link"), media / "pip.png"):
        run_crew(small_cfg(subject=spelling), out, resume=True, show_progress=False)
        assert mtimes(out) == made, spelling

    # The key still sees the content: other pixels under the same name are read again.
    Image.fromarray(np.asarray(Image.open(media / "pip.png"))[:, ::-1].copy()).save(media / "pip.png")
    run_crew(small_cfg(subject=Path("media")), out, resume=True, show_progress=False)
    assert mtimes(out)["subject/frame_01.png"] != made["subject/frame_01.png"]


# ---- 5. signals and dead runs ------------------------------------------------------------------


def test_sigkill_mid_shot_then_resume_leaves_no_temp_file_and_the_same_film(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start(*run_args(killed, "--shots", "4"))
    shots, deadline = killed / "shots", time.time() + 120
    caught = False
    # Sample the run while it stands still, until it is caught writing a clip after a finished one.
    while not caught and proc.poll() is None and time.time() < deadline:
        freeze(proc)
        caught = (shots / "shot_01.mp4").exists() and any(p.name.startswith(".shot_") for p in temp_files(shots))
        if not caught:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.002)
    assert caught, "the run finished before it could be caught mid-shot"
    proc.kill()
    proc.communicate(timeout=30)
    assert temp_files(killed) and (killed / LOCK).exists(), "SIGKILL leaves a half-written clip and a stale lock"

    res = cli(*run_args(killed, "--shots", "4", "--resume"))
    assert res.returncode == 0, res.stderr
    assert temp_files(killed) == [] and not (killed / LOCK).exists()
    assert cli(*run_args(clean, "--shots", "4")).returncode == 0
    assert (killed / "film.mp4").read_bytes() == (clean / "film.mp4").read_bytes()


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(tmp_path, sig, status):
    out = tmp_path / "long"
    proc = start("run", "a long walk in the forest", "--subject", str(PIP / "pip.png"), "--shots", "24",
                 "--width", "640", "--height", "400", "--out", str(out), "-q")
    deadline = time.time() + 90
    while recorded_shots(out) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert one_sentence(err) == (f"Stopped by {sig.name}. Finished work is kept in {out}; continue with the same "
                                 f"command plus --out {out} --resume.")
    assert 2 <= recorded_shots(out) < 24
    assert temp_files(out) == [] and not (out / LOCK).exists()


def test_a_dead_writers_temp_files_go_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    run_crew(small_cfg(), out, show_progress=False)
    # Two writers killed mid-write, as SIGKILL leaves them.
    for target in ("film.mp4", "shots/shot_02.mp4"):
        dies_writing = ("import os, signal, sys\nfrom storyagent.fileio import atomic_path\n"
                        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half')\n"
                        "    os.kill(os.getpid(), signal.SIGKILL)")
        res = subprocess.run([sys.executable, "-c", dies_writing, str(out / target)], env=ENV, timeout=60, check=False)
        assert res.returncode == -signal.SIGKILL
    left = temp_files(out)
    assert len(left) == 2
    old_style = out / "shots" / ".shot_03.k3j9_0ab.tmp.mp4"  # tempfile.mkstemp's names, of earlier versions
    old_style.write_bytes(b"half")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".film.0123abcd.tmp.mp4").write_bytes(b"not the run's")
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    kept = [out / "notes.tmp.mp4", out / ".film.mp4.bak", out / ".film.12ab.tmp.mp4", out / "shots" / "film.0123abcd.tmp.mp4"]
    for p in kept:
        p.write_bytes(b"someone's")

    Workspace.open(out, small_cfg().inputs_record(), resume=True).close()
    assert not any(p.exists() for p in [*left, old_style])
    assert all(p.read_bytes() == b"someone's" for p in kept)
    assert (elsewhere / ".film.0123abcd.tmp.mp4").exists(), "symlinked folders are not followed"


# ---- 6. a tampered manifest --------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run_crew(small_cfg(), out, show_progress=False)
    return out


def _set(path: str, value: object):
    """A tampering: put `value` at the dotted `path` of the manifest (keys may hold '/', not '.')."""
    *parents, last = path.split(".")

    def tamper(manifest: dict, root: Path) -> None:
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value
    return tamper


def _drop(path: str):
    *parents, last = path.split(".")

    def tamper(manifest: dict, root: Path) -> None:
        node = manifest
        for key in parents:
            node = node[key]
        del node[last]
    return tamper


def _escape_by_symlink(manifest: dict, root: Path) -> None:
    (root / "escape").symlink_to(root.parent, target_is_directory=True)
    manifest["artifacts"]["film"]["path"] = "escape/film.mp4"


TAMPERINGS = {
    "huge subject_frames": (_set("subject_frames", 1_000_000_000), "subject_frames: Input should be less than or equal to 64"),
    "subject_frames as text": (_set("subject_frames", "3"), "subject_frames: Input should be a valid integer"),
    "artifacts a list": (_set("artifacts", []), "artifacts: Input should be a valid dictionary"),
    "an artifact a string": (_set("artifacts.film", "film.mp4"), "artifacts.film: Input should be a valid dictionary"),
    "a path leading out": (_set("artifacts.film.path", "../../etc/passwd"),
                           "artifacts.film.path '../../etc/passwd' lies outside the run folder"),
    "an absolute path": (_set("artifacts.film.path", "/etc/passwd"), "artifacts.film.path '/etc/passwd' lies outside"),
    "a path through a symlink out": (_escape_by_symlink, "artifacts.film.path 'escape/film.mp4' lies outside"),
    "a path a number": (_set("artifacts.film.path", 5), "artifacts.film.path: Input should be a valid string"),
    "file hashes a list": (_set("artifacts.film.meta.file_hashes", []),
                           "artifacts.film.meta.file_hashes: Input should be a valid dictionary"),
    "no frames in a clip": (_set("artifacts.shots/shot_01.num_frames", -1),
                            "artifacts.shots/shot_01.num_frames: Input should be greater than or equal to 1"),
    "an unknown field": (_set("artifacts.story.frames", 3), "artifacts.story.frames: Extra inputs are not permitted"),
    "a subject frame without its mask method": (_drop("artifacts.subject/frame_01.meta.mask_method"),
                                                "artifacts.subject/frame_01 lacks its mask, mask method or source"),
    "stages a list": (_set("stages", []), "stages: Input should be a valid dictionary"),
    "a stage a number": (_set("stages.video", 3), "stages.video: Input should be a valid string"),
    "a negative take": (_set("takes", {"video": {"2": -1}}), "takes.video.2: Input should be greater than or equal to 0"),
    "a huge take": (_set("takes", {"video": {"2": 10**12}}), "takes.video.2: Input should be less than or equal to 1000"),
    "takes a list": (_set("takes", {"video": [1]}), "takes.video: Input should be a valid dictionary"),
    "a redo's take as text": (_set("redos", {"video": {"1": [{"take": "x", "feedback": ""}]}}),
                              "redos.video.1.0.take: Input should be a valid integer"),
    "speakers a string": (_set("speakers", "x"), "speakers: Input should be a valid list"),
    "an identity pass with a stray field": (
        _set("storyboard_identity", {"shared": "a", "pass": {"prompts": ["p"], "seeds": [1], "steps": 3}}),
        "storyboard_identity.pass.steps: Extra inputs are not permitted"),
}


def _copy(finished_run: Path, tmp_path: Path) -> Path:
    root = tmp_path / "run"
    shutil.copytree(finished_run, root, symlinks=True, ignore=shutil.ignore_patterns(LOCK))  # held by this process
    return root


def _assert_refused(root: Path, needle: str) -> None:
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} if (root / MANIFEST).is_file() else None
    with pytest.raises(InputError) as err:
        Workspace.open(root, small_cfg().inputs_record(), resume=True)
    message = str(err.value)
    assert message.startswith(f"{root / MANIFEST} is damaged: {needle}"), message
    assert message.endswith("; move it away to start that run afresh.") and "\n" not in message
    assert not (root / LOCK).exists(), "the lock is let go"
    if before is not None:
        assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before, "nothing is touched"


@pytest.mark.parametrize("case", TAMPERINGS)
def test_a_tampered_manifest_is_one_sentence(finished_run, tmp_path, case):
    tamper, needle = TAMPERINGS[case]
    root = _copy(finished_run, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    tamper(manifest, root)
    (root / MANIFEST).write_text(json.dumps(manifest))
    _assert_refused(root, needle)


@pytest.mark.parametrize("content,needle", [
    (b"{not json", "it is not valid JSON (Expecting property name"),
    (b'{"artifacts": {}, "x": "\xff\xfe"}', "it is not valid JSON ("),
    (b"[" * 100_000, "its JSON is nested too deeply"),
    (b'{"artifacts": {}, "subject_frames": 1' + b"0" * 5000 + b"}", "it is not valid JSON (Exceeds the limit"),
    (b'{"artifacts": {}}' + b" " * (17 << 20), "it is 17 MB, far more than a run writes"),
])
def test_an_unreadable_manifest_is_one_sentence(finished_run, tmp_path, content, needle):
    root = _copy(finished_run, tmp_path)
    (root / MANIFEST).write_bytes(content)
    _assert_refused(root, needle)


def test_a_fifo_in_place_of_the_manifest_does_not_hang(finished_run, tmp_path):
    root = _copy(finished_run, tmp_path)
    (root / MANIFEST).unlink()
    os.mkfifo(root / MANIFEST)
    _assert_refused(root, "it is not a regular file")


def test_the_cli_refuses_a_tampered_manifest_at_once(finished_run, tmp_path):
    root = _copy(finished_run, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["subject_frames"] = 1_000_000_000  # once read as a frame count; memory grew until killed
    (root / MANIFEST).write_text(json.dumps(manifest))
    res = cli(*run_args(root, "--resume"), timeout=60)
    assert res.returncode == 2
    assert one_sentence(res.stderr).startswith(f"error: {root / MANIFEST} is damaged: subject_frames: ")


# ---- 9. a failed first run does not block the corrected command --------------------------------


def test_a_failed_first_run_does_not_block_the_corrected_command(tmp_path):
    (tmp_path / "cat.png").write_bytes(os.urandom(3000))
    res = cli("run", "a day", "--subject", str(tmp_path / "cat.png"), *SMALL, cwd=tmp_path)
    assert res.returncode == 2 and "Cannot read image cat.png" in one_sentence(res.stderr)
    assert sorted(p.name for p in (tmp_path / "runs" / "a-day").iterdir()) == [MANIFEST], "the failed run's folder"

    res = cli("run", "a day", "--subject", str(PIP / "pip.png"), *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "runs" / "a-day" / "film.mp4").is_file() and not (tmp_path / "runs" / "a-day-2").exists()
    # Once the folder holds finished work it is a run again: a new run is refused.
    res = cli("run", "a day", "--subject", str(PIP / "pip.png"), "--out", str(tmp_path / "runs" / "a-day"), *SMALL)
    assert res.returncode == 2 and "already holds a run; add --resume" in res.stderr

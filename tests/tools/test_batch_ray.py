"""`storyagent batch --ray` on a real Ray cluster of two nodes on 127.0.0.1, one of which is lost while
shots are running (issue 28, Done when).

The cluster is made with `ray start` (a head and a second node, one CPU each) and stopped by the test,
by the process ids of this cluster only: `ray stop --force` would also stop any other Ray cluster of
this user on the machine.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="storyagent batch --ray needs Ray: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil", reason="the test finds the second node's processes with psutil (Ray needs it)")

from storyagent.hashing import hash_file
from storyagent.manifest import MANIFEST
from tests.support.paths import PIP, ROOT
from tests.support.ray_cluster import LocalCluster

FILMS = ("a day at the seaside", "a rainy afternoon in the garden", "a walk in the snowy woods", "a night at the fair")
JOBS = ('[defaults]\nsubject = "pip.png"\nclass_word = "fox"\nshots = 3\nwidth = 128\nheight = 80\nfps = 4\n'
        'shot_duration = 2.0\n\n' + "".join(f'[[film]]\nprompt = "{p}"\n\n' for p in FILMS))
ARTIFACT_NAMES = (".mp4", ".png", ".made.json", MANIFEST, "story.json", "transcript.json")
# A lost node is declared dead after a few missed health checks, not the default ~30 s.
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                      "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}


def running_a_task(procs: list[psutil.Process]) -> bool:
    """Whether one of `procs` is a Ray worker executing a task now (Ray titles it `ray::work` meanwhile)."""
    for p in procs:
        try:
            if p.cmdline()[:1] and p.cmdline()[0].startswith("ray::work"):
                return True
        except psutil.Error:
            pass
    return False


def notes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob(".*.made.json")}


def made_by(found: dict[str, bytes], procs: list[psutil.Process]) -> set[str]:
    """The notes whose shot one of `procs` made."""
    pids = {p.pid for p in procs}
    return {rel for rel, note in found.items() if json.loads(note)["made"]["pid"] in pids}


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def artifact_like(paths: set[str]) -> set[str]:
    return {p for p in paths if p.endswith(ARTIFACT_NAMES) or any(s in p for s in ("seaside", "snowy", "films"))}


def git_status() -> set[str]:
    res = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    return set(res.stdout.splitlines())


def batch(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "storyagent", "batch", *args, "-q"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_batch_on_two_nodes_survives_losing_one_while_shots_run(tmp_path):
    inputs, cwd, runs = tmp_path / "in", tmp_path / "cwd", tmp_path / "runs"
    for folder in (inputs, cwd):
        folder.mkdir()
    shutil.copy(PIP, inputs / "pip.png")
    jobs = inputs / "films.toml"
    jobs.write_text(JOBS, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}

    # The same batch in one process: what every film must be, byte for byte.
    here = batch(str(jobs), "--out", str(tmp_path / "here"), cwd=cwd, env=env)
    out, err = here.communicate(timeout=120)
    assert here.returncode == 0, out + err

    cache = Path(os.environ["STORYAGENT_CACHE"])
    before = {"tmp_path": listing(tmp_path), "cache": listing(cache) if cache.exists() else set(),
              "/tmp": artifact_like({p.name for p in Path("/tmp").iterdir()}), "repo": git_status()}
    cluster = LocalCluster(cwd, {**os.environ, **FAST_HEALTH_CHECKS})
    driver = None
    try:
        cluster.start()
        driver = batch(str(jobs), "--ray", cluster.address, "--out", str(runs), cwd=cwd, env=env)
        # Lose the second node while it runs a shot, once it has finished one.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and driver.poll() is None:
            node = cluster.second_node()
            if made_by(notes(runs), node) and running_a_task(node):
                break
            time.sleep(0.01)
        lost = cluster.second_node()
        assert driver.poll() is None and running_a_task(lost), "the second node never ran a shot while the batch ran"
        finished_before = notes(runs)
        killed = {p.pid for p in lost}
        for p in lost:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(lost, timeout=10)
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, out + err
        assert "4 films" in err and err.count("done") == 4 and "failed" not in err
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.communicate()
        cluster.stop()
    assert not cluster.processes(), "every process of the cluster is stopped"

    for prompt_number in range(1, 5):
        (root,) = runs.glob(f"0{prompt_number}_*")
        manifest = json.loads((root / MANIFEST).read_text())
        assert set(manifest["stages"].values()) == {"done"}, manifest["stages"]
        keys = {f"{folder}/shot_0{i}" for folder in ("storyboard", "shots") for i in (1, 2, 3)} | {"film"}
        assert keys <= manifest["artifacts"].keys()
        for entry in manifest["artifacts"].values():
            for rel, digest in entry["meta"]["file_hashes"].items():
                assert hash_file(root / rel) == digest, f"{root.name}/{rel} is what the manifest records"
        # Made once, by content: every artifact as the batch made in one process makes it.
        reference = tmp_path / "here" / root.name
        for path in reference.rglob("*"):
            if path.suffix in (".mp4", ".png") or path.name == "story.json":
                rel = path.relative_to(reference)
                assert (root / rel).read_bytes() == path.read_bytes(), f"{root.name}/{rel}"

    # A shot finished before the node was lost is never made again: its note (with the pid and time of
    # the make) is unchanged; the shots the lost node finished are kept; the one it was making when it
    # was lost, and every later one, were made by a worker that outlived the loss.
    final = notes(runs)
    assert len(final) == 4 * 7, sorted(final)
    for rel, note in finished_before.items():
        assert final[rel] == note, f"{rel} was made again"
    assert made_by(final, lost) and made_by(final, lost) <= finished_before.keys()
    assert all(json.loads(final[rel])["made"]["pid"] not in killed for rel in final.keys() - finished_before.keys())

    # Nothing written outside the run folders: not beside them, not in the cache, /tmp or the repository.
    new = listing(tmp_path) - before["tmp_path"]
    assert new and all(p == "runs" or p.startswith("runs/0") for p in new), sorted(new)[:10]
    assert not any(cwd.iterdir())
    assert (listing(cache) if cache.exists() else set()) == before["cache"]
    assert artifact_like({p.name for p in Path("/tmp").iterdir()}) <= before["/tmp"]
    assert not artifact_like({line[3:] for line in git_status() - before["repo"]})

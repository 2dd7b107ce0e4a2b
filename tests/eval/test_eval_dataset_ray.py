"""`storyagent eval dataset --ray`: the protocol's tasks on a real local Ray cluster give the tables
the in-process run gives, to the float; without Ray installed, `--ray` says what to install."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.eval.test_eval_dataset import tiny_metric_models, write_pororo
from tests.support.paths import ROOT

try:
    import ray  # noqa: F401

    RAY_MISSING = ""
except ImportError as exc:
    RAY_MISSING = f"Ray is not importable ({exc}); pip install -e \".[ray]\""

# Runs the CLI as `storyagent` does, and says at exit whether Ray was imported on the way.
CLI = ("import atexit, sys\n"
       "atexit.register(lambda: print('ray imported:', 'ray' in sys.modules))\n"
       "from storyagent.cli import main\n"
       "sys.argv = ['storyagent', *sys.argv[1:]]\n"
       "main()\n")
# The same, with `import ray` failing as it does where Ray is not installed.
NO_RAY = ("import sys\n"
          "class NoRay:\n"
          "    def find_spec(self, name, path=None, target=None):\n"
          "        if name == 'ray' or name.startswith('ray.'):\n"
          "            raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n"
          "sys.meta_path.insert(0, NoRay())\n") + CLI


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head node on 127.0.0.1 with 2 CPUs, on free ports and a temp folder of its own; its address."""
    from tests.support.ray_cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("ray_cwd"), dict(os.environ), nodes=1, cpus=2)
    try:
        cluster.start()
        yield cluster.address
    finally:
        cluster.stop()
        assert not cluster.processes(), "Ray processes left running"


def eval_dataset(data, out, models=None, *extra, program=CLI):
    """`storyagent eval dataset` on the tiny PororoSV folder, in a child process; (result, seconds)."""
    args = ["eval", "dataset", str(data), "--format", "pororo", "--method", "animatic", "--characters",
            "pororo,crong", "--size", "48x32", "--samples", "2", "--out", str(out), "-q", *extra]
    if models is not None:
        args += ["--lpips-heads", str(models / "heads.pth"), "--lpips-backbone", str(models / "alex.pth"),
                 "--i3d", str(models / "i3d.pt"), "--fvd-min-clips", "3"]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", program, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})
    return result, time.perf_counter() - start


def tables(out: Path) -> dict[str, object]:
    """Every table the report holds, as text and as numbers; the notes without the report's own folder."""
    results = json.loads((out / "results.json").read_text())
    results["notes"] = [n.replace(str(out), "OUT") for n in results["notes"]]
    found = {"results.json": results, "table1.md": (out / "table1.md").read_text().replace(str(out), "OUT")}
    for name in ("table1.csv", "per_character.csv", "shots.csv"):
        found[name] = (out / name).read_text()
    return found


@pytest.mark.skipif(bool(RAY_MISSING), reason=RAY_MISSING)
def test_ray_cluster_gives_the_in_process_tables(tmp_path, ray_cluster):
    data = write_pororo(tmp_path / "po")
    models = tmp_path / "models"
    models.mkdir()
    tiny_metric_models(models)

    here, here_s = eval_dataset(data, tmp_path / "here", models)
    assert here.returncode == 0, here.stderr
    assert "ray imported: False" in here.stdout  # without --ray nothing imports Ray
    there, there_s = eval_dataset(data, tmp_path / "there", models, "--ray", ray_cluster)
    assert there.returncode == 0, there.stderr
    print(f"\ntiny PororoSV, 16 shots: in-process {here_s:.1f} s, on Ray {there_s:.1f} s "
          f"(ratio {there_s / here_s:.2f})")

    ours, theirs = tables(tmp_path / "here"), tables(tmp_path / "there")
    assert theirs == ours
    summary = ours["results.json"]["summary"]
    # Every metric was computed (not "n/a"), so the equality above is of numbers: FVD from the I3D
    # features the workers sent, SSIM, PSNR and LPIPS means of the shots in the split's order.
    assert all(isinstance(summary[m], float) for m in ("FVD", "SSIM", "PSNR", "LPIPS")), summary
    rows = ours["results.json"]["rows"]
    assert [(r["Character"], r["Sample"]) for r in rows] == [(c, s) for c in ("pororo", "crong")
                                                           for s in (1, 1, 1, 1, 2, 2, 2, 2)]
    per_character = list(csv.DictReader((tmp_path / "there" / "per_character.csv").open()))
    assert [(r["Character"], r["Shots"]) for r in per_character] == [("pororo", "8"), ("crong", "8")]
    # The workers wrote each generated shot and the reference media, atomically (no temp file left).
    for out in (tmp_path / "here", tmp_path / "there"):
        shots = sorted(p.relative_to(out).as_posix() for p in (out / "generated").rglob("*.mp4"))
        assert len(shots) == 16 and shots[0] == "generated/crong/sample_01/ep1_0.mp4", shots
        assert not [p for p in out.rglob(".*.tmp*")]
    assert sorted(p.name for p in (tmp_path / "there" / "references" / "pororo").iterdir()) == sorted(
        p.name for p in (tmp_path / "here" / "references" / "pororo").iterdir())


@pytest.mark.skipif(bool(RAY_MISSING), reason=RAY_MISSING)
def test_bad_input_met_in_a_task_stops_the_run_in_one_sentence(tmp_path, ray_cluster):
    data = write_pororo(tmp_path / "po")
    # Pororo's given masks in its training episode are empty: its reference task finds no reference.
    (data / "masks" / "ep0").mkdir(parents=True)
    for k in range(5):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "masks" / "ep0" / f"{k}_pororo.png")
    result, _ = eval_dataset(data, tmp_path / "out", None, "--ray", ray_cluster)
    assert result.returncode == 2, result.stderr
    message = (result.stdout + result.stderr).replace("ray imported: True", "").strip()
    assert message == ("error: No training clip of pororo in episode ep0 shows the character where a mask finds "
                       "it; pick another training episode in the split."), message
    assert not (tmp_path / "out" / "table1.md").exists()


def test_ray_flag_without_ray_says_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_RAY, "eval", "dataset", str(tmp_path), "--format", "pororo",
                             "--method", "animatic", "--out", str(tmp_path / "out"), "--ray", "auto", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    message = (result.stdout + result.stderr).replace("ray imported: False", "").strip()
    assert result.returncode == 2, message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "--ray needs Ray, which is not installed" in message and 'pip install -e ".[ray]"' in message
    assert not (tmp_path / "out").exists()  # said before any work

"""Films per minute of `storyagent batch`: in one process, and on a local Ray cluster of 1 and 2 workers.

    python benchmarks/batch_throughput.py [--films 4] [--shots 3] [--size 256x160]

Each row times the whole command (`python -m storyagent batch JOBS.toml [--ray ADDRESS]`, into a
fresh folder) for the same animatic films of examples/pip/pip.png; the Ray rows run on a cluster of
one node with 1 or 2 CPUs made with `ray start` on 127.0.0.1 beforehand (its start is not timed).
Quote the ratios of one run: on a 2-core machine the driver, the workers and the encoder share the
cores, so 2 workers cannot double the rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ray_cluster import LocalCluster  # noqa: E402

PROMPTS = ("a day at the seaside", "a rainy afternoon in the garden", "a walk in the snowy woods", "a night at the fair",
           "a fox learns to swim", "a picnic in the park", "lost in the city at night", "a trip to the moon")


def jobs_file(folder: Path, films: int, shots: int, width: int, height: int) -> Path:
    shutil.copy(ROOT / "examples" / "pip" / "pip.png", folder / "pip.png")
    text = (f'[defaults]\nsubject = "pip.png"\nname = "Pip"\nclass_word = "fox"\nshots = {shots}\nwidth = {width}\n'
            f'height = {height}\n\n') + "".join(f'[[film]]\nprompt = "{PROMPTS[i % len(PROMPTS)]}"\nseed = {i}\n\n'
                                               for i in range(films))
    path = folder / "films.toml"
    path.write_text(text, encoding="utf-8")
    return path


def timed_batch(jobs: Path, out: Path, ray: str | None, env: dict[str, str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "storyagent", "batch", str(jobs), "--out", str(out), "-q",
                    *(["--ray", ray] if ray else [])], cwd=jobs.parent, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=4)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--size", default="256x160", help="frame size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = jobs_file(folder, args.films, args.shots, width, height)
        rows.append(("in one process", timed_batch(jobs, folder / "out", None, env)))
        for workers in (1, 2):
            with LocalCluster(folder, env, nodes=1, cpus=workers) as cluster:
                rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}",
                             timed_batch(jobs, folder / "out", cluster.address, env)))

    base = args.films / rows[0][1] * 60
    print(f"{args.films} films of {args.shots} shots at {width}x{height}, {os.cpu_count()} CPU cores\n")
    print("| how | wall s | films per minute | vs one process |")
    print("|---|---|---|---|")
    for how, seconds in rows:
        rate = args.films / seconds * 60
        print(f"| {how} | {seconds:.1f} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()

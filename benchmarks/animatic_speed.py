"""Wall time and peak memory of a whole offline animatic run, as a user starts it.

    python benchmarks/animatic_speed.py [--runs 5] [--shots 4] [--stages]

Target: a 4-shot film (`storyagent run "a day at the seaside" -s examples/pip/pip.png --name Pip
--class-word fox --shots 4`) in under 2.5 s median wall time and under 250 MiB peak resident
memory, on a machine with 2 CPU cores. What is timed is the whole process (`python -m storyagent
run ...`, started with this interpreter, each time into a fresh folder): interpreter start, every
import (AG2's alone takes about 1 s), the crew, the renders, the encodes and the files. Each run's
own peak memory and CPU time come from `os.wait4`, which reports one child's resource usage (the
`RUSAGE_CHILDREN` maximum would mix the runs together).

`--stages` adds the in-process split of the same run per stage (subject, story, storyboard,
video, film), cold and resumed, imports excluded: where the time inside the run goes.

The numbers are as good as the machine is quiet: other processes on the same cores add to the
wall time (the CPU time column shows what the run itself used).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PIP = ROOT / "examples" / "pip" / "pip.png"
PROMPT = "a day at the seaside"
TARGET_SECONDS = 2.5
TARGET_MIB = 250


@dataclass
class ProcessRun:
    wall: float
    """Seconds from start to exit."""
    cpu: float
    """User plus system CPU seconds of the process."""
    peak_mib: float
    """Its peak resident memory."""


def command(shots: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "storyagent", "run", PROMPT, "-s", str(PIP), "--name", "Pip", "--class-word", "fox",
            "--shots", str(shots), "--out", str(out)]


def run_process(shots: int, out: Path) -> ProcessRun:
    """One `storyagent run` in its own process into `out` (which must not exist), measured by `os.wait4`."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command(shots, out), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
        if proc.returncode:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"`{' '.join(command(shots, out))}` failed with exit code {proc.returncode}:\n{tail}")
    # ru_maxrss is in KiB on Linux.
    return ProcessRun(wall=wall, cpu=usage.ru_utime + usage.ru_stime, peak_mib=usage.ru_maxrss / 1024)


def process_table(runs: list[ProcessRun], shots: int) -> Table:
    table = Table(title=f"`storyagent run`, {shots} shots, whole process ({len(runs)} runs, {os.cpu_count()} CPUs)")
    table.add_column("")
    for name in ("min", "median", "max", "target"):
        table.add_column(name, justify="right")
    walls, cpus, peaks = [r.wall for r in runs], [r.cpu for r in runs], [r.peak_mib for r in runs]
    wall_ok = "✓" if statistics.median(walls) < TARGET_SECONDS else "✗"
    mem_ok = "✓" if max(peaks) < TARGET_MIB else "✗"
    table.add_row("wall (s)", f"{min(walls):.2f}", f"{statistics.median(walls):.2f}", f"{max(walls):.2f}",
                  f"median < {TARGET_SECONDS} {wall_ok}")
    table.add_row("CPU (s)", f"{min(cpus):.2f}", f"{statistics.median(cpus):.2f}", f"{max(cpus):.2f}", "")
    table.add_row("peak RSS (MiB)", f"{min(peaks):.0f}", f"{statistics.median(peaks):.0f}", f"{max(peaks):.0f}",
                  f"max < {TARGET_MIB} {mem_ok}")
    return table


STAGES = ("subject", "story", "storyboard", "video", "film", "total")


def stage_times(shots: int, out: Path, resume: bool) -> dict[str, float]:
    """The same run in this process, stage by stage (imports done before the clock starts)."""
    from storyagent.config import RunConfig
    from storyagent.tools.film import assemble_film
    from storyagent.tools.run import Run
    from storyagent.tools.story import write_story
    from storyagent.tools.storyboard import generate_storyboard
    from storyagent.tools.video import animate_shots

    cfg = RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=shots)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    with Run.open(cfg, out, resume=resume, show_progress=False) as run:
        times["subject"] = time.perf_counter() - t0
        t = time.perf_counter()
        script = write_story(run)
        times["story"] = time.perf_counter() - t
        t = time.perf_counter()
        board = generate_storyboard(run, script)
        times["storyboard"] = time.perf_counter() - t
        t = time.perf_counter()
        clips = animate_shots(run, script, board)
        times["video"] = time.perf_counter() - t
        t = time.perf_counter()
        assemble_film(run, script, clips)
        times["film"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    return times


def stage_table(shots: int, repeats: int, tmp: Path) -> Table:
    stage_times(shots, tmp / "warm-up", resume=False)  # imports, font and codec set-up
    cold, resumed = [], []
    for i in range(repeats):
        out = tmp / f"stages{i}"
        cold.append(stage_times(shots, out, resume=False))
        resumed.append(stage_times(shots, out, resume=True))
    table = Table(title=f"In-process stages, {shots} shots, 512×320 @ 8 fps (median of {repeats})")
    table.add_column("stage")
    table.add_column("cold run (s)", justify="right")
    table.add_column("resumed run (s)", justify="right")
    for key in STAGES:
        table.add_row(key, f"{statistics.median(r[key] for r in cold):.3f}",
                      f"{statistics.median(r[key] for r in resumed):.3f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="whole-process runs (default 5)")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--stages", action="store_true", help="also time each stage in this process")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs for --stages (default 3)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for i in range(args.runs):
            runs.append(run_process(args.shots, Path(tmp) / f"run{i}"))
            console.print(f"run {i + 1}: {runs[-1].wall:.2f} s wall, {runs[-1].cpu:.2f} s CPU, "
                          f"{runs[-1].peak_mib:.0f} MiB", style="dim")
        console.print(process_table(runs, args.shots))
        if args.stages:
            console.print(stage_table(args.shots, args.repeats, Path(tmp)))


if __name__ == "__main__":
    main()

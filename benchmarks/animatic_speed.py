"""Time and peak memory of a default 4-shot animatic run (the offline default), per stage.

    python benchmarks/animatic_speed.py [--shots 4] [--repeats 3]

Runs in-process on the example subject (examples/pip) into a temporary folder, once cold and
once resumed, and prints a table. Target: a cold 4-shot run under 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from storyagent.config import RunConfig
from storyagent.tools.film import assemble_film
from storyagent.tools.story import write_story
from storyagent.tools.storyboard import generate_storyboard
from storyagent.tools.subject import prepare_subject
from storyagent.tools.video import animate_shots
from storyagent.workspace import Workspace

PIP = Path(__file__).resolve().parent.parent / "examples" / "pip"


def one_run(cfg: RunConfig, out: Path, resume: bool) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    ws = Workspace.open(out, cfg.inputs_record(), resume=resume)
    subject = prepare_subject(ws, cfg)
    times["subject"] = time.perf_counter() - t0
    t = time.perf_counter()
    script = write_story(ws, cfg)
    times["story"] = time.perf_counter() - t
    t = time.perf_counter()
    board = generate_storyboard(ws, cfg, script, subject, show_progress=False)
    times["storyboard"] = time.perf_counter() - t
    t = time.perf_counter()
    clips = animate_shots(ws, cfg, script, subject, board, show_progress=False)
    times["video"] = time.perf_counter() - t
    t = time.perf_counter()
    assemble_film(ws, cfg, script, clips)
    times["film"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = RunConfig.build(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=args.shots)
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            cold.append(one_run(cfg, out, resume=False))
            warm.append(one_run(cfg, out, resume=True))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def best(rows: list[dict[str, float]], key: str) -> float:
        return min(r[key] for r in rows)

    table = Table(title=f"Animatic run, {args.shots} shots, 512×320 @ 8 fps (best of {args.repeats})")
    table.add_column("stage")
    table.add_column("cold run (s)", justify="right")
    table.add_column("resumed run (s)", justify="right")
    for key in ("subject", "story", "storyboard", "video", "film", "total"):
        table.add_row(key, f"{best(cold, key):.2f}", f"{best(warm, key):.3f}")
    console = Console()
    console.print(table)
    console.print(f"peak resident memory of the process: {peak_mb:.0f} MiB")
    console.print(f"resumed / cold total: {best(warm, 'total') / best(cold, 'total'):.3f}")


if __name__ == "__main__":
    main()

"""The paper's dataset protocol (Tables 1 and 5) on N GPUs: its tasks counted, their schedule simulated.

    python benchmarks/protocol_wall_time.py [--gpus 1 2 4 8 16] [--anydoor-step 0.5] [--lora-be-step 1.5]
                                            [--shot 30] [--preset paper|quick]

Counted, not guessed: the task graph is the one `eval dataset --ray` submits
(`storyagent/eval/dataset_ray.py`): per character one task that fine-tunes StoryAnyDoor and LoRA-BE
(steps from the presets in the code: `StoryAnyDoorTrainingConfig.steps`, `LORA_BE_PRESETS`), then per
test sample one task that makes its shots, ready once its character's task is done. The characters
and samples are the split files' (`storyagent/eval/splits/*.json`). The tasks are scheduled the way
Ray's scheduler places them on N single-GPU workers when every task asks for one GPU: each free GPU
takes the first ready task in submission order.

What is assumed, and printed with the table: the seconds per StoryAnyDoor step, per LoRA-BE step
and per shot (one AnyDoor redraw and one 50-step DynamiCrafter clip) on one A100/H100-class GPU; no
GPU was at hand to measure them. Replace them with `benchmarks/anydoor_speed.py`,
`benchmarks/lora_be_train.py` and `benchmarks/dynamicrafter_speed.py` on yours.
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import dataclass
from importlib import resources

from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.tools.backends.finetunes import LORA_BE_PRESETS

QUICK_ANYDOOR_STEPS = 1_000
"""`--preset quick`'s StoryAnyDoor steps (README: 1 000 steps, 40 LoRA-BE epochs)."""


@dataclass(frozen=True)
class Task:
    name: str
    seconds: float
    after: str | None = None
    """The task that must finish first (a sample's character)."""


def protocol_tasks(dataset: str, preset: str, anydoor_step: float, lora_be_step: float, shot: float) -> list[Task]:
    """The protocol's tasks in the order `eval dataset --ray` submits them: every character, then every sample."""
    split = json.loads(resources.files("storyagent.eval").joinpath("splits", f"{dataset}.json").read_text())
    # A LoRA-BE epoch is one step per reference clip and one per clip's first frame (16 + 16).
    lora_be_steps = LORA_BE_PRESETS[preset]["epochs"] * 2 * split["max_reference_clips"]
    anydoor_steps = StoryAnyDoorTrainingConfig().steps if preset == "paper" else QUICK_ANYDOOR_STEPS
    finetune = anydoor_steps * anydoor_step + lora_be_steps * lora_be_step
    characters = [c["name"] for c in split["characters"]]
    tasks = [Task(f"finetune {c}", finetune) for c in characters]
    tasks += [Task(f"{c} sample {s + 1}", split["shots"] * shot, after=f"finetune {c}")
              for c in characters for s in range(split["samples"])]
    return tasks


def wall_time(tasks: list[Task], gpus: int) -> float:
    """Seconds until the last task ends, on `gpus` workers taking the first ready task whenever one is free."""
    done: dict[str, float] = {}
    free = [0.0] * gpus  # when each GPU is next free
    heapq.heapify(free)
    waiting = list(tasks)
    while waiting:
        now = heapq.heappop(free)
        ready = [t for t in waiting if t.after is None or done.get(t.after, float("inf")) <= now]
        if not ready:
            # Nothing can start yet: this GPU idles until the earliest dependency ends.
            heapq.heappush(free, min(done[t.after] for t in waiting if t.after in done))
            continue
        task = ready[0]
        waiting.remove(task)
        done[task.name] = now + task.seconds
        heapq.heappush(free, done[task.name])
    return max(done.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 5, 8, 16])
    parser.add_argument("--preset", choices=sorted(LORA_BE_PRESETS), default="paper")
    parser.add_argument("--anydoor-step", type=float, default=0.5, help="seconds per StoryAnyDoor step (assumed)")
    parser.add_argument("--lora-be-step", type=float, default=1.5, help="seconds per LoRA-BE step (assumed)")
    parser.add_argument("--shot", type=float, default=30.0, help="seconds per shot (assumed)")
    args = parser.parse_args()

    print(f"preset {args.preset}; assumed: {args.anydoor_step} s per StoryAnyDoor step, {args.lora_be_step} s per "
          f"LoRA-BE step, {args.shot} s per shot; one fine-tuned method\n")
    print(f"| dataset | tasks | {' | '.join(f'{n} GPU' + ('s' if n > 1 else '') for n in args.gpus)} |")
    print("|---|---|" + "---|" * len(args.gpus))
    for dataset in ("pororo", "flintstones"):
        tasks = protocol_tasks(dataset, args.preset, args.anydoor_step, args.lora_be_step, args.shot)
        hours = [wall_time(tasks, n) / 3600 for n in args.gpus]
        print(f"| {dataset} | {len(tasks)} | {' | '.join(f'{h:.1f} h' for h in hours)} |")


if __name__ == "__main__":
    main()

"""Seconds per LoRA-BE training step and peak GPU memory at the DynamiCrafter 512 configuration.

    python benchmarks/lora_be_train.py [--steps 5]
    python benchmarks/lora_be_train.py --tiny          # CPU smoke run on a tiny configuration

Random weights (they time the same as trained ones): bf16 base model, fp32 LoRA weights and
block-wise embeddings, one 16-frame 320x512 clip per step, with and without gradient
checkpointing. Target (issue 5): a full 400-epoch fine-tune on 5 clips fits in 24 GB; the table
also gives the time of such a fine-tune (2000 steps) at the measured speed.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from storyagent.models.lora_be import Clip, LoRABEConfig, LoRABETrainer

try:  # the speed benchmark builds the same full-size pipeline
    from benchmarks.dynamicrafter_speed import build
except ImportError:  # run as a script from the repository root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dynamicrafter_speed import build  # type: ignore[no-redef]


def synthetic_clip(frames: int, height: int, width: int) -> Clip:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((frames, height, width), bool)
    masks[:, height // 4 : 3 * height // 4, width // 4 : width // 2] = True
    return Clip(video, masks)


def run(checkpointing: bool, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    pipe = build(args.tiny)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe.to(device, dtype=dtype)
    cfg = LoRABEConfig(token="<miffy>", class_word="rabbit", gradient_checkpointing=checkpointing, augment=True,
                       checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = LoRABETrainer(pipe, cfg, tmp)
        clip = synthetic_clip(trainer.frames, trainer.height, trainer.width)
        trainer.train_step(clip)  # warm-up: kernel selection, allocator
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(clip)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t) / args.steps
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        trainable = sum(p.numel() for p in trainer.lora_params) + trainer.embeddings.embeddings.numel()
    del trainer, pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"seconds": seconds, "peak": peak, "trainable": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5; 2 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny configuration, for a CPU smoke run")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args()
    args.steps = args.steps or (2 if args.tiny else 5)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    precision = "bf16 weights + autocast" if device.type == "cuda" else "fp32 (CPU)"
    table = Table(title=f"LoRA-BE training step, {'tiny' if args.tiny else '512'} configuration, {precision}, on {where}")
    for col in ("gradient checkpointing", "s / step", "peak GPU GiB", "trainable params", "400 epochs x 5 clips"):
        table.add_column(col, justify="right")
    for checkpointing in (True, False):
        r = run(checkpointing, args, device)
        hours = r["seconds"] * 2000 / 3600
        table.add_row("on" if checkpointing else "off", f"{r['seconds']:.2f}",
                      "n/a (CPU)" if device.type != "cuda" else f"{r['peak']:.2f}", f"{r['trainable']:,}",
                      f"{hours:.1f} h")
    Console().print(table)
    if not args.tiny:
        print("Target: a 400-epoch fine-tune on 5 clips fits in 24 GB of GPU memory.")


if __name__ == "__main__":
    main()

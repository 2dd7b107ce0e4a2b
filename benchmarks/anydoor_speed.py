"""Time and peak GPU memory of one AnyDoor redraw and one StoryAnyDoor fine-tuning step.

    python benchmarks/anydoor_speed.py            # full-size modules (ViT-g/14, SD-2.1 UNet), random weights, CUDA
    python benchmarks/anydoor_speed.py --tiny     # CPU smoke test with a tiny model

Random weights time the same as trained ones. The redraw is the whole `AnyDoorPipeline.__call__`
(preprocessing, DINOv2, 50 DDIM steps with guidance 5.0 at 512 px, decode, paste-back); the
fine-tuning step is one forward + backward + AdamW step of `StoryAnyDoorTrainer` (batch 1, full
ControlNet + UNet decoder + projector, or LoRA with --lora).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from storyagent.models.anydoor import AnyDoorConfig, AnyDoorPipeline
from storyagent.models.anydoor.testing import tiny_config
from storyagent.models.anydoor.components import build_components
from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.models.anydoor.training import StoryAnyDoorTrainer


def _scene(side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (side, side * 4 // 3, 3), dtype=np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[side // 4:3 * side // 4, side // 3:side // 3 + side // 2] = True
    return image, mask


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(fn, device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random model (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: 50, tiny: 5)")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                        help="inference dtype on CUDA (training keeps float32 weights with bf16 autocast)")
    parser.add_argument("--lora", action="store_true", help="time a LoRA fine-tuning step instead of the full one")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = tiny_config() if args.tiny else AnyDoorConfig()
    steps = args.steps or (5 if args.tiny else config.sampling.ddim_steps)
    frame_side = 192 if args.tiny else 720

    rows: list[tuple[str, float, float]] = []
    torch.manual_seed(0)
    t0 = time.perf_counter()
    components = build_components(config)
    build_s = time.perf_counter() - t0
    pipe = AnyDoorPipeline(**components, config=config)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    ref_image, ref_mask = _scene(frame_side, 0)
    frame, mask = _scene(frame_side, 1)

    # 1. Redraw: warm-up (cuDNN autotune, allocator), then the timed run.
    pipe.to(device, dtype)
    pipe(ref_image, ref_mask, frame, mask, num_inference_steps=1, show_progress=False)
    seconds, peak = _measure(lambda: pipe(ref_image, ref_mask, frame, mask, num_inference_steps=steps,
                                          generator=torch.Generator().manual_seed(0), show_progress=False), device)
    rows.append((f"redraw {config.image_size} px, {steps} DDIM steps, cfg {config.sampling.cfg_scale} ({args.dtype if device.type == 'cuda' else 'float32'})",
                 seconds, peak))

    # 2. Fine-tuning step (fp32 master weights, bf16 autocast on CUDA): warm-up step, then one timed.
    pipe.to(device, torch.float32)
    frames, masks = zip(*[_scene(frame_side, s) for s in range(3)])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = StoryAnyDoorTrainer(pipe, list(frames), list(masks), tmp,
                                      StoryAnyDoorTrainingConfig(steps=2, use_lora=args.lora))
        trainer.train_step()
        seconds, peak = _measure(trainer.train_step, device)
        n_train = sum(p.numel() for p in trainer.params.values())
    rows.append((f"fine-tune step ({'LoRA' if args.lora else 'full'}, {n_train / 1e6:.1f} M trainable, batch 1)",
                 seconds, peak))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = Table(title=f"AnyDoor speed on {name} ({'tiny' if args.tiny else 'full-size'} random weights; "
                        f"built in {build_s:.1f} s)")
    table.add_column("what")
    table.add_column("time (s)", justify="right")
    table.add_column("peak GPU memory (GiB)", justify="right")
    for what, seconds, peak in rows:
        table.add_row(what, f"{seconds:.2f}", "-" if np.isnan(peak) else f"{peak:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()

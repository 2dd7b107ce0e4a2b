"""End to end with the diffusion backend: seconds and peak GPU memory per stage of a 4-shot film,
with and without --low-vram.

Every model (SDXL, Grounding DINO base, SAM ViT-H, AnyDoor, DynamiCrafter 512) is built at full
size with random weights (random weights time the same as trained ones), written to a temporary
weights folder and loaded from there through `STORYAGENT_WEIGHTS_*`, as a real install loads
them. Then the stages run as the crew runs them: the subject (reference frames and LangSAM
masks; StoryAnyDoor and LoRA-BE fine-tunes, short ones), the storyboard (`StoryboardPipeline`:
StoryDiffusion, LangSAM, removal, StoryAnyDoor redraw, paste), the video (DynamiCrafter + LoRA-BE per shot) and the assembly.
Each mode trains its fine-tunes again (--finetune force), so both time the same work. A stage's
time includes loading its models from disk, as in a real run; its peak is the GPU memory peak
while it ran (models wait on the CPU between stages). Building and saving the full-size weights
takes a few minutes; where one command may run for 10 minutes only, run the modes one at a time
(`--modes default`, then `--modes low-vram`).

    python benchmarks/e2e_diffusion.py --random-weights   # CUDA, full-size models
    python benchmarks/e2e_diffusion.py --tiny             # CPU smoke run with the tiny test models
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmarks' full-size builders

from storyagent.models import placement

STAGES = ("subject: frames + LangSAM masks", "subject: fine-tunes", "storyboard", "video", "assembly")


def save_tiny_weights(root: Path) -> dict[str, Path]:
    from storyagent.models.anydoor.testing import tiny_pipeline as anydoor_tiny
    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.langsam.testing import save_tiny_grounding_dino, save_tiny_sam
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    tiny_sdxl().save_pretrained(root / "sdxl")
    anydoor_tiny().save_pretrained(root / "anydoor")
    tiny_pipeline().save_pretrained(root / "dc")
    return {"sdxl-base": root / "sdxl", "grounding-dino-base": save_tiny_grounding_dino(root / "gdino"),
            "sam-vit-h": save_tiny_sam(root / "sam.pth"), "anydoor": root / "anydoor", "dynamicrafter-512": root / "dc"}


def save_grounding_dino_base(folder: Path) -> Path:
    """Grounding DINO base's architecture (Swin-B backbone at 384 px, BERT-base text tower), random weights;
    the tokenizer knows a few words only, which is all the detector's prompt needs."""
    from transformers import (
        BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
        GroundingDinoProcessor, SwinConfig,
    )

    from storyagent.models.langsam.testing import TINY_WORDS

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *TINY_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=256)
    backbone = SwinConfig(image_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                          out_features=["stage2", "stage3", "stage4"])
    config = GroundingDinoConfig(backbone_config=backbone, text_config=BertConfig())
    GroundingDinoForObjectDetection(config).half().save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_full_weights(root: Path) -> dict[str, Path]:
    """Every model at full size with random weights, saved in half precision (the GPU's dtype)."""
    from dynamicrafter_speed import build as build_dynamicrafter
    from storyboard_speed import full_size_sdxl

    from storyagent.models.anydoor import AnyDoorConfig, AnyDoorPipeline
    from storyagent.models.anydoor.components import build_components
    from storyagent.models.langsam.config import SamConfig
    from storyagent.models.langsam.testing import save_tiny_sam

    full_size_sdxl(torch.device("cpu"), torch.float16).save_pretrained(root / "sdxl")
    config = AnyDoorConfig()
    AnyDoorPipeline(**build_components(config), config=config).save_pretrained(root / "anydoor")
    build_dynamicrafter(tiny=False).save_pretrained(root / "dc")
    return {"sdxl-base": root / "sdxl", "grounding-dino-base": save_grounding_dino_base(root / "gdino"),
            "sam-vit-h": save_tiny_sam(root / "sam.pth", arch=SamConfig()), "anydoor": root / "anydoor",
            "dynamicrafter-512": root / "dc"}


def subject_folder(root: Path, side: int) -> Path:
    """A photo and a two-second clip of a brown disc walking right: the subject's reference media."""
    from PIL import Image

    from storyagent.media import write_video

    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side]
    frames = []
    for i in range(24):
        frame = np.full((side, side, 3), 230, np.uint8)
        frame[(yy - side // 2) ** 2 + (xx - side // 4 - i * side // 48) ** 2 < (side // 6) ** 2] = (170, 90, 40)
        frames.append(frame)
    Image.fromarray(frames[0]).save(root / "pip.png")
    write_video(root / "walk.mp4", frames, 12)
    return root


def run_film(cfg, out: Path) -> dict[str, tuple[float, float | None]]:
    """(seconds, peak GPU GiB) per stage of one film, the stages called as the crew calls them."""
    from storyagent.tools.film import assemble_film
    from storyagent.tools.run import Run, backend_class
    from storyagent.tools.story import offline_planner
    from storyagent.tools.storyboard import generate_storyboard
    from storyagent.tools.subject import prepare_subject
    from storyagent.tools.video import animate_shots
    from storyagent.workspace import Workspace

    backend = backend_class(cfg.backend)(cfg)
    backend.check()
    results: dict[str, tuple[float, float | None]] = {}

    def timed(stage: str, fn: Callable[[], object]):
        placement.free_memory()
        placement.peak_memory_reset()
        start = time.perf_counter()
        value = fn()
        placement.peak_memory_gib()  # synchronises first, so the time is the GPU's too
        results[stage] = (time.perf_counter() - start, placement.peak_memory_gib())
        return value

    # As `Run.open` builds the run, with the subject's two parts timed apart.
    with Workspace.open(out, cfg.inputs_record(), resume=False) as ws:
        subject = timed(STAGES[0], lambda: prepare_subject(ws, cfg, backend.reference_masks(cfg.cast[0])))
        run = Run(cfg, ws, backend, subject, show_progress=False)
        timed(STAGES[1], lambda: backend.prepare_subject(run))
        script = offline_planner(cfg)
        # The storyboard pipeline (models/storyboard) loads its models here, once, and keeps them.
        frames = timed(STAGES[2], lambda: generate_storyboard(run, script))
        clips = timed(STAGES[3], lambda: animate_shots(run, script, frames))
        timed(STAGES[4], lambda: assemble_film(run, script, clips))
    return results


def table(rows: dict[str, dict[str, tuple[float, float | None]]], title: str) -> Table:
    """One row per stage and a total; per mode its seconds and peak GPU memory, then low-vram / default."""
    def peak(stages: dict[str, tuple[float, float | None]]) -> float | None:
        return max((p for _, p in stages.values() if p is not None), default=None)

    full = {mode: r | {"total": (sum(s for s, _ in r.values()), peak(r))} for mode, r in rows.items()}
    out = Table(title=title)
    out.add_column("stage")
    for mode in full:
        out.add_column(f"{mode} (s)", justify="right")
        out.add_column(f"{mode} peak GPU (GiB)", justify="right")
    both = "default" in full and "low-vram" in full
    if both:
        out.add_column("low-vram / default time", justify="right")
        out.add_column("low-vram / default peak", justify="right")
    for stage in (*STAGES, "total"):
        cells = [cell for r in full.values()
                 for cell in (f"{r[stage][0]:.2f}", "n/a (CPU)" if r[stage][1] is None else f"{r[stage][1]:.2f}")]
        if both:
            (t0, p0), (t1, p1) = full["default"][stage], full["low-vram"][stage]
            cells += [f"{t1 / t0:.2f}x" if t0 else "-", f"{p1 / p0:.2f}x" if p0 and p1 is not None else "-"]
        out.add_row(stage, *cells)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--random-weights", action="store_true", help="full-size models with random weights (CUDA)")
    size.add_argument("--tiny", action="store_true", help="the tiny test models on the CPU (a smoke run)")
    parser.add_argument("--shots", type=int, default=4, help="shots in the film")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps of every model (default: each "
                        "model's own; tiny: 2)")
    parser.add_argument("--anydoor-steps", type=int, default=None, help="StoryAnyDoor training steps (default 20; tiny 1)")
    parser.add_argument("--modes", default="default,low-vram", help="comma-separated: default, low-vram")
    args = parser.parse_args()

    if args.random_weights and not torch.cuda.is_available():
        sys.exit("--random-weights builds every model at full size and needs a CUDA GPU; use --tiny on the CPU.")
    from storyagent.config import RunConfig
    from storyagent.weights import env_var

    work = Path(tempfile.mkdtemp(prefix="e2e_diffusion_"))
    os.environ["STORYAGENT_CACHE"] = str(work / "cache")  # the fine-tunes never touch the user's cache
    start = time.perf_counter()
    weights = save_tiny_weights(work / "weights") if args.tiny else save_full_weights(work / "weights")
    for name, path in weights.items():
        os.environ[env_var(name)] = str(path)
    built = time.perf_counter() - start

    side = 64 if args.tiny else 512
    # The tiny run is a smoke run (CI): few reference frames, two denoising steps, one training step.
    tiny = dict(width=64, height=64, storyboard_side=64, steps=2, anydoor_steps=1, lora_be_epochs=1,
                max_reference_frames=4) if args.tiny else \
        dict(width=512, height=320, storyboard_side=1024, anydoor_steps=20, lora_be_epochs=1)
    if args.steps:
        tiny["steps"] = args.steps
    if args.anydoor_steps:
        tiny["anydoor_steps"] = args.anydoor_steps
    media = subject_folder(work / "subject", side)
    rows: dict[str, dict[str, tuple[float, float | None]]] = {}
    for mode in args.modes.split(","):
        cfg = RunConfig.build(prompt="a day at the seaside", subject=media, name="Pip", class_word="fox",
                              shots=args.shots, fps=8, backend="diffusion", finetune="force",
                              low_vram=mode == "low-vram", **tiny)
        rows[mode] = run_film(cfg, work / f"run-{mode}")

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    Console().print(table(rows, f"{args.shots}-shot film, diffusion backend, "
                                f"{'tiny' if args.tiny else 'full-size random-weight'} models on {device} "
                                f"(weights built and saved in {built:.0f} s)"))


if __name__ == "__main__":
    main()

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

The fine-tunes get a table of their own (issue 26, item 10): StoryAnyDoor and LoRA-BE at the `paper`
and `quick` presets, in each memory setting (`models/training_memory.py`: the default, and the
low-VRAM one a CUDA out-of-memory error falls back to), a few steps each on the full-size models:
seconds per step (after one warm-up step), peak GPU memory, and what the whole fine-tune would take
at that speed. `--parts finetunes` runs that table alone.

    python benchmarks/e2e_diffusion.py --random-weights   # CUDA, full-size models
    python benchmarks/e2e_diffusion.py --tiny             # CPU smoke run with the tiny test models

With `--video-model A,B,...` (or `all`) it makes the film with each video model instead, default and
--low-vram, and prints per video model the video stage's seconds per shot and per second of film, its
peak GPU memory and the whole film's time (issue 27, item 5). A Wan model is diffusers' own at its
released size with random weights (`models/wan/testing.full_size_pipeline`, saved in bf16), its film at
the model's native size and frame rate; expect minutes per shot at 50 steps (`--steps`, `--shots`).

    python benchmarks/e2e_diffusion.py --random-weights --video-model wan2.2-ti2v-5b --shots 1
    python benchmarks/e2e_diffusion.py --tiny --video-model all
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmarks' full-size builders

from storyagent.models import placement

STAGES = ("subject: frames + LangSAM masks", "storyboard: fine-tunes", "storyboard", "video", "assembly")
LORA_BE_CLIPS = 5
"""Reference clips of the subject the LoRA-BE column's whole fine-tune assumes (an epoch is a step per clip)."""


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
    from storyagent.tools.subject import prepare_cast
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

    # As `Run.open` builds the run; the fine-tunes train at the storyboard stage (`Run.train`), timed apart.
    with Workspace.open(out, cfg.inputs_record(), resume=False) as ws:
        cast = timed(STAGES[0], lambda: prepare_cast(ws, cfg, backend.reference_masks))
        run = Run(cfg, ws, backend, cast, show_progress=False)
        backend.prepare_subject(run)  # prints what will train and its expected time
        script = offline_planner(cfg)
        timed(STAGES[1], run.train)
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


def disc_frames(side: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A brown disc walking right on a light ground (the subject of `subject_folder`), with its masks."""
    yy, xx = np.mgrid[:side, :side]
    frames, masks = [], []
    for i in range(count):
        mask = (yy - side // 2) ** 2 + (xx - side // 4 - i * side // (2 * count)) ** 2 < (side // 6) ** 2
        frame = np.full((side, side, 3), 230, np.uint8)
        frame[mask] = (170, 90, 40)
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def time_steps(step: Callable[[], object], steps: int) -> tuple[float, float | None]:
    """(seconds per step, peak GPU GiB) of `steps` calls of `step`, after one warm-up call (kernel choice,
    the allocator's first blocks, the optimizer's state)."""
    step()
    placement.peak_memory_reset()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    peak = placement.peak_memory_gib()  # synchronises first, so the time is the GPU's too
    return (time.perf_counter() - start) / steps, peak


def time_finetunes(presets: list[str], modes: list[str], steps: int, work: Path) -> list[dict[str, object]]:
    """StoryAnyDoor and LoRA-BE at each preset and memory setting: a few steps each on the models the weights
    folders hold (loaded as a run loads them), one trainer at a time on the GPU."""
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
    from storyagent.models.anydoor.training import StoryAnyDoorTrainer
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.lora_be import Clip, LoRABEConfig, LoRABETrainer
    from storyagent.models.training_memory import TrainingMemory
    from storyagent.tools.backends.finetunes import LORA_BE_PRESETS

    device = placement.compute_device()
    rows: list[dict[str, object]] = []
    for preset in presets:
        for mode in modes:
            memory = TrainingMemory(low_vram=mode == "low-vram")
            placement.free_memory()
            config = StoryAnyDoorTrainingConfig.preset(preset, checkpoint_every=10**9)
            with placement.on_device(AnyDoorPipeline.from_pretrained(device="cpu"), device) as pipe:
                frames, masks = disc_frames(pipe.config.image_size, 8)
                trainer = StoryAnyDoorTrainer(pipe, frames, masks, work / f"anydoor-{preset}-{mode}", config,
                                              memory=memory)
                seconds, peak = time_steps(trainer.train_step, steps)
                trained = sum(p.numel() for p in trainer.params.values())
                del trainer
            rows.append({"model": "StoryAnyDoor", "preset": preset, "mode": mode, "trained": trained,
                         "seconds": seconds, "peak": peak, "steps": config.steps})
            placement.free_memory()
            settings = LORA_BE_PRESETS[preset]
            lora = LoRABEConfig(token="<pip>", class_word="fox", learning_rate=settings["learning_rate"],
                                epochs=int(settings["epochs"]), checkpoint_every=10**9)
            with placement.on_device(DynamiCrafterPipeline.from_pretrained(device="cpu"), device) as pipe:
                trainer = LoRABETrainer(pipe, lora, work / f"lora_be-{preset}-{mode}", memory=memory)
                frames, masks = disc_frames(max(trainer.height, trainer.width), trainer.frames)
                top = (max(trainer.height, trainer.width) - trainer.height) // 2
                left = (max(trainer.height, trainer.width) - trainer.width) // 2
                video = np.stack(frames)[:, top:top + trainer.height, left:left + trainer.width]
                clip = Clip(video, np.stack(masks)[:, top:top + trainer.height, left:left + trainer.width], fps=8.0)
                seconds, peak = time_steps(partial(trainer.train_step, clip), steps)
                trained = sum(p.numel() for p in trainer.lora_params) + sum(
                    e.embeddings.numel() for e in trainer.token_embeddings)
                del trainer
            rows.append({"model": "LoRA-BE", "preset": preset, "mode": mode, "trained": trained, "seconds": seconds,
                         "peak": peak, "steps": lora.epochs * LORA_BE_CLIPS})
    placement.free_memory()
    return rows


def finetune_table(rows: list[dict[str, object]], title: str) -> Table:
    out = Table(title=title)
    for column in ("fine-tune", "preset", "memory", "trained params", "s / step", "peak GPU (GiB)", "steps",
                   "whole fine-tune"):
        out.add_column(column, justify="left" if column in ("fine-tune", "preset", "memory") else "right")
    for r in rows:
        whole = float(r["seconds"]) * int(r["steps"])
        out.add_row(str(r["model"]), str(r["preset"]), str(r["mode"]), f"{int(r['trained']):,}", f"{r['seconds']:.3f}",
                    "n/a (CPU)" if r["peak"] is None else f"{r['peak']:.2f}", f"{int(r['steps']):,}",
                    f"{whole / 3600:.2f} h" if whole >= 3600 else f"{whole / 60:.1f} min")
    return out


def film_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both runs take: the models' size, the film's shots and steps, the memory modes."""
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--random-weights", action="store_true", help="full-size models with random weights (CUDA)")
    size.add_argument("--tiny", action="store_true", help="the tiny test models on the CPU (a smoke run)")
    parser.add_argument("--shots", type=int, default=4, help="shots in the film")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps of every model (default: each "
                        "model's own; tiny: 2)")
    parser.add_argument("--modes", default="default,low-vram", help="comma-separated: default, low-vram")


def prepare(args: argparse.Namespace, prefix: str, video_models: Sequence[str] = ()) -> tuple[Path, float]:
    """A fresh work folder with its own StoryAgent cache (the fine-tunes never touch the user's) and every model's
    weights (tiny or full-size, and each of `video_models`) saved in it, the weights' variables pointing at them;
    (the folder, the seconds building and saving the weights took)."""
    from storyagent.weights import env_var

    if args.random_weights and not torch.cuda.is_available():
        sys.exit("--random-weights builds every model at full size and needs a CUDA GPU; use --tiny on the CPU.")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["STORYAGENT_CACHE"] = str(work / "cache")
    start = time.perf_counter()
    weights = save_tiny_weights(work / "weights") if args.tiny else save_full_weights(work / "weights")
    for model in video_models:
        weights |= save_video_model(model, work / "weights", args.tiny)
    for name, path in weights.items():
        os.environ[env_var(name)] = str(path)
    return work, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="With --video-model A,B,... (or all) it times the film with each video model instead: "
               "python benchmarks/e2e_diffusion.py --tiny --video-model all --help")
    film_arguments(parser)
    parser.add_argument("--anydoor-steps", type=int, default=None, help="StoryAnyDoor training steps (default 20; tiny 1)")
    parser.add_argument("--parts", default="film,finetunes", help="comma-separated: film (the stages of a film), "
                        "finetunes (the fine-tunes' table)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="timed steps per fine-tune (default 3; tiny 2)")
    parser.add_argument("--presets", default="paper,quick", help="comma-separated fine-tune presets: paper, quick")
    args = parser.parse_args()
    from storyagent.config import RunConfig

    work, built = prepare(args, "e2e_diffusion_")

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
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    size = "tiny" if args.tiny else "full-size random-weight"
    parts, modes = args.parts.split(","), args.modes.split(",")
    if "film" in parts:
        rows: dict[str, dict[str, tuple[float, float | None]]] = {}
        for mode in modes:
            cfg = RunConfig.build(prompt="a day at the seaside", subject=media, name="Pip", class_word="fox",
                                  shots=args.shots, fps=8, backend="diffusion", finetune="force",
                                  low_vram=mode == "low-vram", **tiny)
            rows[mode] = run_film(cfg, work / f"run-{mode}")
        Console().print(table(rows, f"{args.shots}-shot film, diffusion backend, {size} models on {device} "
                                    f"(weights built and saved in {built:.0f} s)"))
    if "finetunes" in parts:
        steps = args.finetune_steps or (2 if args.tiny else 3)
        tunes = time_finetunes(args.presets.split(","), modes, steps, work / "finetunes")
        Console(width=max(Console().width, 132)).print(finetune_table(tunes, f"Fine-tunes, {size} models on {device}: {steps} timed steps each after "
                                              f"a warm-up; whole fine-tune = steps x s / step (StoryAnyDoor: the "
                                              f"preset's steps; LoRA-BE: its epochs x {LORA_BE_CLIPS} clips)"))


NATIVE = {"wan2.2-ti2v-5b": (1280, 704), "wan2.1-i2v-14b-480p": (832, 480), "wan2.2-i2v-a14b": (1280, 720)}
"""(width, height) each Wan model's card makes its videos at."""


def save_video_model(name: str, root: Path, tiny: bool) -> dict[str, Path]:
    """The weights of video model `name` beside the others: DynamiCrafter is among them already; a Wan model is
    diffusers' own, tiny (and its settings at the tiny scale) or at its released size with random weights."""
    from storyagent.models.wan import config as wan
    from storyagent.models.wan.testing import full_size_pipeline, save_tiny_wan, tiny_config

    if name not in wan.WAN_VIDEO_MODELS:
        return {}
    if tiny:
        wan.WAN_VIDEO_MODELS[name] = tiny_config(name)
        return {name: save_tiny_wan(root / name, name)}
    full_size_pipeline(name).save_pretrained(root / name)
    return {name: root / name}


def video_table(rows: dict[tuple[str, str], tuple[dict[str, tuple[float, float | None]], float, int]],
                title: str) -> Table:
    """Per video model and memory mode: the video stage's seconds per shot and per second of film, its peak
    GPU memory, and the whole film's seconds."""
    out = Table(title=title)
    for column in ("video model", "mode", "shots", "film (s)", "video s / shot", "video s / s of film",
                   "video peak GPU (GiB)", "whole film (s)"):
        out.add_column(column, justify="left" if column in ("video model", "mode") else "right")
    for (model, mode), (stages, seconds, shots) in rows.items():
        video, peak = stages[STAGES[3]]
        out.add_row(model, mode, str(shots), f"{seconds:.1f}", f"{video / shots:.2f}", f"{video / seconds:.2f}",
                    "n/a (CPU)" if peak is None else f"{peak:.2f}", f"{sum(t for t, _ in stages.values()):.1f}")
    return out


def video_main() -> None:
    """`--video-model A,B,...`: the film made with each video model, default and --low-vram."""
    from storyagent.config import RunConfig
    from storyagent.models.wan.config import VIDEO_MODELS, WAN_VIDEO_MODELS
    from storyagent.tools.story import offline_planner

    parser = argparse.ArgumentParser(description="Seconds per shot and per second of film, and peak GPU memory, "
                                                 "of the diffusion backend's video models")
    film_arguments(parser)
    parser.add_argument("--video-model", required=True, help=f"comma-separated, or all: {', '.join(VIDEO_MODELS)}")
    args = parser.parse_args()
    models = list(VIDEO_MODELS) if args.video_model == "all" else args.video_model.split(",")
    if unknown := [m for m in models if m not in VIDEO_MODELS]:
        sys.exit(f"unknown --video-model {', '.join(unknown)}; known: {', '.join(VIDEO_MODELS)}")
    work, built = prepare(args, "e2e_video_models_", models)
    media = subject_folder(work / "subject", 64 if args.tiny else 512)
    rows = {}
    for model in models:
        wan = WAN_VIDEO_MODELS.get(model)
        if args.tiny:
            film = dict(width=64, height=64, fps=8, storyboard_side=64, steps=2, anydoor_steps=1, lora_be_epochs=1,
                        max_reference_frames=4)
        elif wan is None:  # the paper's film
            film = dict(width=512, height=320, fps=8, storyboard_side=1024, anydoor_steps=20, lora_be_epochs=1)
        else:  # the model's native size (landscape) and frame rate
            width, height = NATIVE[model]
            film = dict(width=width, height=height, fps=wan.fps, storyboard_side=1024, anydoor_steps=20,
                        lora_be_epochs=1)
        if args.steps:
            film["steps"] = args.steps
        for mode in args.modes.split(","):
            cfg = RunConfig.build(prompt="a day at the seaside", subject=media, name="Pip", class_word="fox",
                                  shots=args.shots, backend="diffusion", finetune="force", video_model=model,
                                  low_vram=mode == "low-vram", **film)
            seconds = sum(s.duration for s in offline_planner(cfg).shots)
            rows[(model, mode)] = (run_film(cfg, work / f"run-{model}-{mode}"), seconds, args.shots)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    Console(width=200).print(video_table(rows, f"{args.shots}-shot film per video model, "
                                               f"{'tiny' if args.tiny else 'full-size random-weight'} models on "
                                               f"{device} (weights built and saved in {built:.0f} s)"))


if __name__ == "__main__":
    video_main() if any(a.startswith("--video-model") for a in sys.argv) else main()

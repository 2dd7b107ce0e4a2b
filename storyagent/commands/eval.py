"""`storyagent eval`: score a run, compare runs, or run the paper's dataset protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from storyagent.commands import fail
from storyagent.errors import StoryAgentError
from storyagent.progress import console

app = typer.Typer(
    help="Evaluate films with the paper's metrics (tables as Markdown + CSV, plots as PNG).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SubjectOpt = Annotated[Optional[Path], typer.Option(
    "--subject", "-s", help="Reference subject media to compare against (default: each run's own subject).")]
ClipOpt = Annotated[Optional[Path], typer.Option(
    help="CLIP folder (transformers) for CLIP-score, CLIP-temp, CLIP-I (default: the cached clip-vit-l-14).")]
DinoOpt = Annotated[Optional[Path], typer.Option(help="DINO / DINOv2 folder for subject consistency (default: cached dinov2-vitg14).")]
RaftOpt = Annotated[Optional[Path], typer.Option(help="torchvision RAFT checkpoint (default: OpenCV Farnebäck flow, no weights).")]
RaftSmallOpt = Annotated[bool, typer.Option("--raft-small", help="The --raft checkpoint is RAFT-small.")]
InceptionOpt = Annotated[Optional[Path], typer.Option(help="torchvision Inception-v3 checkpoint for IS.")]
AestheticOpt = Annotated[Optional[Path], typer.Option("--aesthetic-head", help="LAION aesthetic head (.pth / .safetensors).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Use only the weights given by path, not the Hugging Face cache.")]
MaxFramesOpt = Annotated[int, typer.Option(min=2, help="Frames read per clip (evenly spaced).")]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _models(clip, dino, raft, raft_small, inception, aesthetic_head, no_cache, device, max_frames, **extra):
    from storyagent.eval.protocols import EvalModels

    return EvalModels.load(clip=clip, dino=dino, raft=raft, raft_small=raft_small, inception=inception,
                           aesthetic_head=aesthetic_head, use_cache=not no_cache, device=device,
                           max_frames=max_frames, **extra)


def _report(paths: list[Path]) -> None:
    for p in paths:
        console.print(f"  {p}", highlight=False)


@app.command()
def film(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `storyagent run`.")],
    subject: SubjectOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: RUN_DIR/eval).")] = None,
    clip: ClipOpt = None, dino: DinoOpt = None, raft: RaftOpt = None, raft_small: RaftSmallOpt = False,
    inception: InceptionOpt = None, aesthetic_head: AestheticOpt = None, no_cache: NoCacheOpt = False,
    max_frames: MaxFramesOpt = 64, device: DeviceOpt = "cpu", quiet: QuietOpt = False,
) -> None:
    """No-reference metrics of one run, and subject consistency to the reference subject.

    Example: storyagent eval film runs/a-day-at-the-seaside
    """
    from storyagent.eval.protocols import evaluate_film, write_film_report

    try:
        models = _models(clip, dino, raft, raft_small, inception, aesthetic_head, no_cache, device, max_frames)
        result = evaluate_film(run_dir, models, subject, show_progress=not quiet)
        paths = write_film_report(result, out or run_dir / "eval")
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    console.print(f"Evaluated {len(result.shots)} shots of {run_dir}:")
    _report(paths)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders (runs or methods) to compare.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval-compare"),
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated names for the runs (default: folder names).")] = None,
    subject: SubjectOpt = None,
    clip: ClipOpt = None, dino: DinoOpt = None, raft: RaftOpt = None, raft_small: RaftSmallOpt = False,
    inception: InceptionOpt = None, aesthetic_head: AestheticOpt = None, no_cache: NoCacheOpt = False,
    max_frames: MaxFramesOpt = 64, device: DeviceOpt = "cpu", quiet: QuietOpt = False,
) -> None:
    """Compare several runs: one table row per run, per-shot bars and per-frame curves.

    Example: storyagent eval compare runs/ours runs/baseline --subject pip.png --out eval/
    """
    from storyagent.eval.protocols import compare_runs, evaluate_film

    names = [s.strip() for s in labels.split(",")] if labels else [r.name for r in runs]
    if len(names) != len(runs):
        raise fail(f"--labels names {len(names)} runs but {len(runs)} were given.")
    # Folder names can repeat (runs/a/out, runs/b/out): keep every label distinct.
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} ({seen[n]})"
    try:
        models = _models(clip, dino, raft, raft_small, inception, aesthetic_head, no_cache, device, max_frames)
        results = [evaluate_film(r, models, subject, name=n, show_progress=not quiet) for r, n in zip(runs, names)]
        paths = compare_runs(results, out)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    console.print(f"Compared {len(runs)} runs:")
    _report(paths)


@app.command()
def dataset(
    root: Annotated[Path, typer.Argument(help="The dataset folder (PororoSV or FlintstonesSV layout).")],
    format: Annotated[str, typer.Option("--format", help="pororo or flintstones.")] = "pororo",
    character: Annotated[str, typer.Option(help="FlintstonesSV: the character to redraw (fred, wilma, barney ...).")] = "fred",
    subject: SubjectOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N clips.")] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval-dataset"),
    lpips_heads: Annotated[Optional[Path], typer.Option(help="LPIPS linear heads (lpips weights/v0.1/alex.pth).")] = None,
    lpips_backbone: Annotated[Optional[Path], typer.Option(help="torchvision AlexNet checkpoint for LPIPS.")] = None,
    i3d: Annotated[Optional[Path], typer.Option(help="Kinetics-400 I3D checkpoint for FVD.")] = None,
    method: Annotated[str, typer.Option(help="baseline (CPU: inpaint, paste, hold still) or diffusion (AnyDoor + DynamiCrafter weights).")] = "baseline",
    steps: Annotated[Optional[int], typer.Option(help="diffusion: denoising steps of both models.")] = None,
    device: DeviceOpt = "cpu", quiet: QuietOpt = False,
) -> None:
    """The paper's protocol: remove the subject from each clip's first frame, redraw it, animate,
    and compare with the ground-truth clip (FVD, SSIM, PSNR, LPIPS).

    Example: storyagent eval dataset --format flintstones data/flintstones --character fred --limit 100
    """
    from storyagent.eval.datasets import (
        DiffusionGenerator, StillCompositeBaseline, SubjectReference, evaluate_dataset, read_flintstones, read_pororo,
        write_dataset_report)

    if format not in ("pororo", "flintstones"):
        raise fail(f"--format must be pororo or flintstones, got {format!r}.")
    if method not in ("baseline", "diffusion"):
        raise fail(f"--method must be baseline or diffusion, got {method!r}.")
    try:
        if not root.is_dir():
            raise fail(f"{root} is not a folder; give the dataset's root folder.")
        clips = read_pororo(root, limit) if format == "pororo" else read_flintstones(root, character, limit)
        reference = None
        if subject is not None:
            from storyagent.media import load_reference

            ref = load_reference(subject)
            reference = SubjectReference(ref.frames, ref.masks)
        lpips_model = i3d_model = None
        if lpips_heads is not None:
            from storyagent.eval.lpips import LPIPS

            lpips_model = LPIPS("alex").load_weights(lpips_heads, lpips_backbone).to(device)
        if i3d is not None:
            from storyagent.eval.i3d import load_i3d

            i3d_model = load_i3d(i3d).to(device)
        generator = StillCompositeBaseline() if method == "baseline" else DiffusionGenerator(steps=steps, device=device)
        result = evaluate_dataset(clips, generator, generator.name, reference, lpips_model, i3d_model,
                                  show_progress=not quiet, total=limit)
        paths = write_dataset_report(result, out)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    console.print(f"Evaluated {len(result.clips)} clips of {root}:")
    _report(paths)

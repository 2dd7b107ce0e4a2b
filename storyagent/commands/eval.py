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
    "--subject", "-s",
    help="Reference subject media to compare against (default: each run's own subject; a cast's lead, the others "
         "keep the run's own references).")]
ClipOpt = Annotated[Optional[Path], typer.Option(
    help="CLIP folder (transformers) for CLIP-score and CLIP-temp as EvalCrafter computes them (default: the cached clip-vit-b-32).")]
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
    _cast_summary(result)


def _cast_summary(result) -> None:
    """A cast's characters, one line each: own score against the closest other's (the first feature), and any
    shot that lost a character the story names."""
    if not result.cast:
        return
    feat = result.features[0]
    console.print(f"Each character against its own references and the closest other's ({feat}):", highlight=False)
    for who in result.cast:
        mine = [c for c in result.characters if c.name == who and c.scores]
        if not mine:
            console.print(f"  {who}: in no shot", highlight=False)
            continue
        own = sum(c.own(feat) for c in mine) / len(mine)
        margins = [c.margin(feat) for c in mine]
        console.print(f"  {who}: own {own:.3f}, own minus closest other {min(margins):+.3f} at worst, "
                      f"in {len(mine)} shot{'s' if len(mine) != 1 else ''}", highlight=False)
    for note in result.notes:
        if note.startswith("Shot "):
            console.print(f"  [yellow]{note}[/yellow]", highlight=False)


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
    """Compare several runs: one table row per run, per-shot bars and per-frame curves, and the runs
    beside the paper's Table 2 (open domain: table2.md).

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
    method: Annotated[str, typer.Option(help="storyagent (StoryAnyDoor + LoRA-BE per character, the paper's), "
                                        "dc-finetuning (Table 5's baseline: StoryAnyDoor + DynamiCrafter's image "
                                        "injection module fine-tuned, no LoRA-BE), lora-dc (Table 4's LoRA-DC: LoRA "
                                        "without block-wise embeddings; dc is its old name), anydoor (stock AnyDoor + "
                                        "DynamiCrafter) or animatic (CPU: remove, paste, hold still).")] = "storyagent",
    split: Annotated[Optional[Path], typer.Option(help="Split file (default: the one shipped for --format).")] = None,
    characters: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the split's characters.")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Test samples per character (default: the split's, 10).")] = None,
    geometry: Annotated[str, typer.Option(help="letterbox (whole frame, bars not compared) or crop (centre crop).")] = "letterbox",
    size: Annotated[Optional[str], typer.Option(help="Model frame WxH (default: the model's own; animatic: 512x320).")] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval-dataset"),
    lpips_heads: Annotated[Optional[Path], typer.Option(help="LPIPS linear heads (lpips weights/v0.1/alex.pth).")] = None,
    lpips_backbone: Annotated[Optional[Path], typer.Option(help="torchvision AlexNet checkpoint for LPIPS.")] = None,
    i3d: Annotated[Optional[Path], typer.Option(help="Kinetics-400 I3D checkpoint for FVD.")] = None,
    fvd_min_clips: Annotated[Optional[int], typer.Option(min=2, help="Fewest clips FVD is computed on (default 2: "
                                                         "the protocol's 160-200 shots are its N, stated in the "
                                                         "report; 401 demands a full-rank covariance).")] = None,
    preset: Annotated[str, typer.Option(help="The fine-tuned methods' preset, paper or quick.")] = "paper",
    anydoor_steps: Annotated[Optional[int], typer.Option(min=1, help="The fine-tuned methods' StoryAnyDoor training "
                                                         "steps.")] = None,
    lora_be_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs of DynamiCrafter's fine-tune (LoRA-BE, "
                                                          "LoRA-DC or DC-finetuning).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Denoising steps of AnyDoor and DynamiCrafter.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the redraw and the animation.")] = 0,
    device: DeviceOpt = "cpu", quiet: QuietOpt = False,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="auto|ADDRESS",
        help="Run the protocol as Ray tasks (a character's fine-tunes, then each test sample) on a running "
             "cluster: auto (the one `ray start` made here) or its address, e.g. 10.0.0.5:6379. The dataset, "
             "--out, the weights and the StoryAgent cache must be on paths every node sees. Same tables as "
             "without it; needs pip install -e \".\\[ray]\".")] = None,  # `\\[`: a bracket is rich markup in help
) -> None:
    """The paper's protocol (Sec. 4): per character, reference videos from one training episode and
    test samples of 4 shots from others; each shot's first frame, subject removed and redrawn, is
    animated and compared with the ground-truth clip (FVD, SSIM, PSNR, LPIPS), beside the paper's
    Tables 1 and 5 (table1.md, table5.md).

    Example: storyagent eval dataset --format flintstones data/flintstones --method storyagent --device cuda

    On a cluster: storyagent eval dataset data/flintstones --format flintstones --device cuda --ray auto
    """
    from storyagent.eval.dataset_protocol import MetricWeights, evaluate_dataset
    from storyagent.eval.dataset_split import load_split, resolve_split, write_resolved
    from storyagent.eval.datasets import open_dataset
    from storyagent.eval.paper_tables import write_dataset_report

    if method in DEPRECATED_METHODS:
        new = DEPRECATED_METHODS[method]
        console.print(f"[yellow]--method {method} is deprecated: it is {new} (the paper's Table 4 LoRA-DC, LoRA "
                      "without block-wise embeddings); Table 5's baseline is --method dc-finetuning.[/yellow]",
                      highlight=False)
        method = new
    if method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")
    if ray is not None:
        # Ray's workers start in folders of their own: every path they are given is absolute.
        root, out = root.resolve(), out.resolve()
        split, lpips_heads, lpips_backbone, i3d = (p.resolve() if p else None
                                                   for p in (split, lpips_heads, lpips_backbone, i3d))
    try:
        if ray is not None:
            from storyagent.tools.cluster import import_ray

            import_ray()  # says what to install before any work when Ray is missing
        index = open_dataset(root, format)
        chosen = load_split(split, format)
        if characters:
            wanted = [c.strip().lower() for c in characters.split(",") if c.strip()]
            unknown = sorted(set(wanted) - {c.name for c in chosen.characters})
            if unknown:
                raise fail(f"--characters names {unknown[0]!r}, which the split does not hold "
                           f"({', '.join(c.name for c in chosen.characters)}).")
            chosen.characters = [c for c in chosen.characters if c.name in wanted]
        if samples:
            chosen.samples = samples
            for c in chosen.characters:
                c.test = c.test[:samples] if c.test else None
        resolved = resolve_split(chosen, index)
        out.mkdir(parents=True, exist_ok=True)
        split_path = write_resolved(chosen, resolved, out / "split.json")
        generator = _generator(method, out, steps, seed, device, preset, anydoor_steps, lora_be_epochs, quiet)
        metrics = MetricWeights(lpips_heads, lpips_backbone, i3d, device)
        frame = _geometry(geometry, size, generator)
        if ray is not None:
            result = _on_ray(ray, index, resolved, generator, frame, out, metrics, not quiet, fvd_min_clips)
        else:
            result = evaluate_dataset(index, resolved, generator, frame, out, *metrics.load(),
                                      show_progress=not quiet, fvd_min_clips=fvd_min_clips)
        weights = _weights_used(generator, result.finetunes)
        paths = write_dataset_report(result, out, method, split_path, chosen.protocol, chosen.assumptions, weights,
                                     chosen.paper)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    console.print(f"Evaluated {len(result.rows)} shots of {root} ({len(result.trainings)} fine-tunes trained):")
    _report([split_path, *paths])


def _on_ray(address, index, characters, generator, frame, out, metrics, show_progress, fvd_min_clips):
    """The protocol as Ray tasks on the cluster at `address`; this process lets go of the cluster after."""
    from storyagent.eval.dataset_ray import evaluate_dataset_on_ray
    from storyagent.tools.cluster import connect, import_ray

    joined_here = not import_ray().is_initialized()
    ray = connect(address)
    try:
        return evaluate_dataset_on_ray(ray, index, characters, generator, frame, out, metrics,
                                       show_progress=show_progress, fvd_min_clips=fvd_min_clips)
    finally:
        if joined_here:
            ray.shutdown()


METHODS = ("storyagent", "dc-finetuning", "lora-dc", "anydoor", "animatic")
DEPRECATED_METHODS = {"dc": "lora-dc"}
"""Old --method names -> today's (said when used)."""
FINETUNED = {  # method -> (FineTunedGenerator.video, its name in the report)
    "storyagent": ("lora-be", "StoryAgent (StoryAnyDoor + LoRA-BE DynamiCrafter)"),
    "lora-dc": ("lora-dc", "LoRA-DC (StoryAnyDoor + DynamiCrafter LoRA, no block-wise embeddings)"),
    "dc-finetuning": ("dc-finetuning", "DC-finetuning (StoryAnyDoor + DynamiCrafter's image injection module fine-tuned)"),
}


def _generator(method, out, steps, seed, device, preset, anydoor_steps, lora_be_epochs, quiet):
    from storyagent.eval.generators import DiffusionGenerator, FineTunedGenerator, StillCompositeBaseline

    if method == "animatic":
        return StillCompositeBaseline()
    if method == "anydoor":
        return DiffusionGenerator(steps=steps, seed=seed, device=device)
    if preset not in ("paper", "quick"):
        raise fail(f"--preset must be paper or quick, got {preset!r}.")
    video, name = FINETUNED[method]
    return FineTunedGenerator(name=name, video=video, steps=steps, seed=seed, device=device, preset=preset,
                              anydoor_steps=anydoor_steps, lora_be_epochs=lora_be_epochs, work_dir=out / "subjects",
                              show_progress=not quiet)


def _geometry(mode: str, size: str | None, generator):
    from storyagent.eval.geometry import FrameGeometry

    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise fail(f"--size must be WIDTHxHEIGHT, e.g. 512x320, got {size!r}.") from None
        return FrameGeometry(h, w, mode)
    model_size = getattr(generator, "size", None)
    return FrameGeometry(*(model_size or (320, 512)), mode)


def _weights_used(generator, finetunes: dict[str, dict[str, dict[str, object]]]) -> list[str]:
    from storyagent.weights import resolve_weights

    used = []
    for name in getattr(generator, "weights", ()):
        try:
            used.append(f"{name} ({resolve_weights(name)})")
        except StoryAgentError:
            used.append(name)
    for character, tunes in finetunes.items():
        used += [f"{character}'s {m} fine-tune ({t['path']}, {t['steps']} steps)" for m, t in tunes.items()]
    return used

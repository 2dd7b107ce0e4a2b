"""`storyagent finetune storyboard --subject DIR`: StoryAnyDoor, AnyDoor fine-tuned on the subject's frames."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from storyagent.commands import fail
from storyagent.errors import StoryAgentError
from storyagent.progress import console

app = typer.Typer(help="Fine-tune the storyboard's AnyDoor redraw on the subject's reference media.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Fine-tuning commands."""


@app.command("storyboard")
def finetune_storyboard(
    subject: Annotated[Path, typer.Option("--subject", "-s", help="Reference videos/photos of the subject (file or folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for checkpoints and the fine-tuned model (resumes if it has checkpoints).")] = Path("storyanydoor"),
    weights: Annotated[Optional[Path], typer.Option(help="Converted AnyDoor folder (default: the `anydoor` weights).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps (the paper uses 20000).")] = 20_000,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-5,
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters instead of the full ControlNet and decoder.")] = False,
    lora_rank: Annotated[int, typer.Option(min=1, help="LoRA rank (with --lora).")] = 16,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 500,
    max_frames: Annotated[int, typer.Option(min=1, help="Reference frames sampled from the subject media.")] = 16,
    mask: Annotated[Optional[Path], typer.Option(help="Subject mask image for the reference media.")] = None,
    device: Annotated[str, typer.Option(help="cuda or cpu (default: cuda when available).")] = "",
    seed: Annotated[int, typer.Option(help="Seed for pairs, timesteps and noise.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune AnyDoor on pairs drawn from the subject's frames; writes OUT/model for the storyboard."""
    from storyagent.media import load_reference
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
    from storyagent.models.anydoor.training import StoryAnyDoorTrainer
    from storyagent.models.device import default_device

    try:
        reference = load_reference(subject, max_frames=max_frames, mask=mask)
        dev = device or default_device()
        pipe = AnyDoorPipeline.from_pretrained(weights, device=dev)
        config = StoryAnyDoorTrainingConfig(steps=steps, learning_rate=learning_rate, use_lora=lora,
                                            lora_rank=lora_rank, lora_alpha=lora_rank,
                                            checkpoint_every=checkpoint_every, seed=seed)
        trainer = StoryAnyDoorTrainer(pipe, reference.frames, reference.masks, out, config,
                                      sources=reference.sources)
        losses = trainer.train(show_progress=not quiet)
        model_dir = trainer.export(out / "model")
    except StoryAgentError as exc:
        raise fail(str(exc)) from exc
    last = f", last loss {losses[-1]:.4f}" if losses else " (already complete)"
    console.print(f"fine-tuned {trainer.step} steps{last}; model in {model_dir}", highlight=False)

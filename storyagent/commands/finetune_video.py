"""`storyagent finetune video`: train a LoRA-BE adapter that teaches DynamiCrafter the user's subject.

    storyagent finetune video --subject DIR --token "<miffy>" --class-word rabbit [--out miffy.safetensors]

Every photo or video in DIR is one reference clip; subject masks come from the media module's
cut-out (a NAME_mask.png beside a photo, its alpha channel, or GrabCut). Training checkpoints go
to a work folder next to the adapter, so running the same command again resumes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Optional

import numpy as np
import typer

from storyagent.commands import fail
from storyagent.errors import StoryAgentError
from storyagent.progress import console

app = typer.Typer(help="Fine-tune models on your subject.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Fine-tune models on your subject (a group, so more targets can join `video`)."""


def load_subject_clips(subject: Path, frames_per_clip: int = 16, class_word: str | None = None,
                       segmenter: Callable | None = None):
    """One `Clip` per media file in `subject`, with subject masks.

    Masks come from `segmenter` (a LangSAM pipeline: images, text -> results with .found/.mask)
    where it finds the `class_word`, and from the media module's cut-out everywhere else.
    """
    from storyagent.media import load_reference, media_files
    from storyagent.models.lora_be import Clip

    files = media_files(subject)
    ref = load_reference(subject, max_frames=frames_per_clip * len(files))
    masks = list(ref.masks)
    if segmenter is not None and class_word:
        for i, result in enumerate(segmenter(ref.frames, class_word)):
            if result.found and result.mask.shape == masks[i].shape:
                masks[i] = result.mask
    grouped: dict[Path, list[int]] = defaultdict(list)
    for i, source in enumerate(ref.sources):
        grouped[source].append(i)
    clips = []
    for indices in grouped.values():
        shape = ref.frames[indices[0]].shape
        keep = [i for i in indices if ref.frames[i].shape == shape]
        clips.append(Clip(np.stack([ref.frames[i] for i in keep]), np.stack([masks[i] for i in keep])))
    return clips


def pick_segmenter(choice: str, device: str):
    """LangSAM when asked for, or on "auto" when both of its weights are cached; else None (cut-out)."""
    from storyagent.weights import weights_available

    if choice == "cutout":
        return None
    if choice == "auto" and not (weights_available("grounding-dino-base") and weights_available("sam-vit-h")):
        return None
    from storyagent.models.langsam import LangSAMPipeline

    return LangSAMPipeline.from_pretrained(device=device)


@app.command("video")
def finetune_video(
    subject: Annotated[Path, typer.Option("--subject", "-s", help="Folder (or file) of reference photos / short clips of the subject.")],
    token: Annotated[str, typer.Option(help='The new subject token to use in prompts, e.g. "<miffy>".')],
    class_word: Annotated[str, typer.Option("--class-word", help='What the subject is, e.g. "rabbit"; its embedding is the starting point.')],
    out: Annotated[Optional[Path], typer.Option(help="Adapter file to write (default: ./<token>.lora_be.safetensors).")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Converted DynamiCrafter folder (default: the dynamicrafter-512 weights).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the reference clips.")] = 400,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 4,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-4,
    localization_weight: Annotated[float, typer.Option("--lambda", help="Weight of the localization loss.")] = 1.0,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between resumable checkpoints.")] = 100,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Train on the reference backgrounds as they are.")] = False,
    no_checkpointing: Annotated[bool, typer.Option("--no-gradient-checkpointing", help="Faster, more memory.")] = False,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    masks: Annotated[str, typer.Option(help="Subject masks: auto (LangSAM when its weights are cached, else cut-out), "
                                              "langsam, or cutout.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of clips, timesteps, noise and augmentation.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train LoRA-BE on the subject's clips and write one adapter file."""
    import torch

    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.lora_be import LoRABEConfig, LoRABETrainer

    safe_name = "".join(c if c.isalnum() else "_" for c in token).strip("_") or "subject"
    out = out or Path(f"{safe_name}.lora_be.safetensors")
    work = out.parent / f".{out.name}.work"
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if masks not in ("auto", "langsam", "cutout"):
            raise fail(f"--masks must be auto, langsam or cutout, not {masks!r}.")
        clips = load_subject_clips(subject, class_word=class_word, segmenter=pick_segmenter(masks, str(dev)))
        pipe = DynamiCrafterPipeline.from_pretrained(weights).to(dev)
        config = LoRABEConfig(token=token, class_word=class_word, epochs=epochs, rank=rank, alpha=float(rank),
                              learning_rate=learning_rate, localization_weight=localization_weight,
                              checkpoint_every=checkpoint_every, augment=not no_augment,
                              gradient_checkpointing=not no_checkpointing, seed=seed)
        trainer = LoRABETrainer(pipe, config, work)
        if trainer.resume():
            console.print(f"Resuming from step {trainer.step} ({work}).")
        history = trainer.train(clips, show_progress=not quiet)
        trainer.save(out)
    except StoryAgentError as exc:
        raise fail(str(exc)) from None
    last = f", last loss {history[-1].loss:.4f}" if history else ""
    console.print(f"Wrote {out} ({len(clips)} clips, {trainer.step} steps{last}). Use {token} in your prompts.")

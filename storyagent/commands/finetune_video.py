"""`storyagent finetune video`: train a LoRA-BE adapter that teaches DynamiCrafter the user's subject.

    storyagent finetune video --subject DIR --token "<miffy>" --class-word rabbit [--out miffy.safetensors]

Every video in DIR gives up to four clips of consecutive frames at one stride (about two seconds
each) and every photo one still clip, which trains the subject's appearance only (the temporal
LoRA learns motion from videos alone). Subject masks come from a NAME_mask.png beside a file or a
photo's alpha channel, else LangSAM (`--masks`) or the media module's GrabCut cut-out. Training
checkpoints go to a work folder next to the adapter, so running the same command again resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from storyagent.commands import fail
from storyagent.errors import StoryAgentError
from storyagent.progress import console

if TYPE_CHECKING:
    from storyagent.models.lora_be import Segmenter

app = typer.Typer(help="Fine-tune models on your subject.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Fine-tune models on your subject (a group, so more targets can join `video`)."""


def pick_segmenter(choice: str, device: str, class_word: str) -> Segmenter | None:
    """The subject masks' source for `load_subject_clips`: LangSAM when asked for, or on "auto"
    when both of its weights are cached; else None (the media module's cut-out).

    LangSAM looks for `class_word`; in a frame where it finds nothing the frame falls back to the
    GrabCut cut-out, labelled as such ("grabcut (LangSAM found no rabbit)"), as in a diffusion run's
    subject stage (`tools.subject.LangSAMMasks`, the same masks). A mask file beside the media or a
    photo's alpha channel still wins over both (see `storyagent.models.lora_be.data.subject_masks`).
    """
    from storyagent.weights import weights_available

    if choice == "cutout":
        return None
    if choice == "auto" and not (weights_available("grounding-dino-base") and weights_available("sam-vit-h")):
        return None
    from storyagent.tools.subject import LangSAMMasks

    return LangSAMMasks(class_word, device)


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
    localization_weight: Annotated[float, typer.Option(
        "--lambda", help="Weight of the localization loss (its mean over the cross-attention modules).")] = 1.0,
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

    from storyagent.media import media_files
    from storyagent.models.device import default_device
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.lora_be import (
        LoRABEConfig,
        LoRABETrainer,
        load_subject_clips,
    )

    safe_name = "".join(c if c.isalnum() else "_" for c in token).strip("_") or "subject"
    out = out or Path(f"{safe_name}.lora_be.safetensors")
    work = out.parent / f".{out.name}.work"
    dev = torch.device(device or default_device())
    try:
        if masks not in ("auto", "langsam", "cutout"):
            raise fail(f"--masks must be auto, langsam or cutout, not {masks!r}.")
        files = media_files(subject)
        # On the CPU until the clips are cut, so LangSAM and DynamiCrafter never share the GPU.
        pipe = DynamiCrafterPipeline.from_pretrained(weights)
        clips = load_subject_clips(files, frames=pipe.config.sampling.frames,
                                   segment=pick_segmenter(masks, str(dev), class_word))
        pipe.to(dev)
        if stills := sum(c.still for c in clips):
            console.print(f"{stills} of {len(clips)} clips are photos: they train appearance only "
                          "(the temporal LoRA learns motion from the videos).")
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

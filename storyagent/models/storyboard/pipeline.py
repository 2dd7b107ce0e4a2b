"""The storyboard pipeline (paper, Fig. 3): StoryDiffusion draws every shot with one consistent
subject, LangSAM finds that subject, it is removed (the background refilled), StoryAnyDoor redraws
the user's own subject into the hole, and the redrawn subject is pasted over the removal's
background through its own mask.

The models are loaded once (`from_pretrained`) and kept for every call; they wait on the CPU and each
visits the device only while it works (`placement.on_device`), so no two share the GPU. The
pipeline returns pictures and masks: writing files, recording them and retrying a shot that ran
out of GPU memory belong to the caller.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from storyagent.models import placement
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.langsam import LangSAMPipeline, SubjectMask
from storyagent.models.removal import RemovalResult, SubjectRemover
from storyagent.models.storyboard.config import StoryboardConfig
from storyagent.models.storydiffusion import IdentityPass, StoryDiffusionPipeline
from storyagent.progress import make_progress

PathLike = str | os.PathLike[str]


@dataclass
class StoryboardSubject:
    """Who the storyboard shows: how prompts name it, what LangSAM looks for, and (for the redraw) a
    reference picture of the user's own subject with its mask."""

    description: str
    """How the prompts describe the subject, e.g. "Pip, a rabbit"."""
    class_word: str
    """What LangSAM looks for in the drawn and the redrawn pictures, e.g. "rabbit"."""
    image: np.ndarray | None = None
    """H×W×3 uint8 reference frame AnyDoor copies the subject from; None: no redraw."""
    mask: np.ndarray | None = None
    """H×W bool, the subject in `image`."""


@dataclass
class ShotResult:
    """What the pipeline made for one drawn shot; arrays only, nothing written."""

    position: int
    """The shot's position in `shots_text` (0-based)."""
    prompt: str
    """The full prompt StoryDiffusion drew the shot from."""
    seed: int
    """The shot's seed (its noise, its removal's and its redraw's)."""
    initial: np.ndarray
    """Step 1: StoryDiffusion's picture, H×W×3 uint8."""
    found: SubjectMask
    """Step 2: the drawn subject in `initial`, or why it was not found."""
    mask: np.ndarray
    """H×W bool: the subject in the shot's picture (`picture`); all False when it was not found."""
    removal: RemovalResult | None = None
    """Step 3: the picture with the subject removed (`.image`) and the hole that was refilled (`.mask`)."""
    redrawn: np.ndarray | None = None
    """Step 4: AnyDoor's whole output, before the paste."""
    final: np.ndarray | None = None
    """Step 5: the redrawn subject over the removal's background; None without a redraw."""
    reason: str = ""
    """Why the shot needs attention (subject not found, redrawn subject not found); empty when fine."""

    @property
    def picture(self) -> np.ndarray:
        """The shot's storyboard picture: the redrawn one, else the initial one."""
        return self.final if self.final is not None else self.initial


def default_identity(shots_text: Sequence[str], seeds: Sequence[int], num_identity: int) -> IdentityPass:
    """The identity pass StoryDiffusion takes when none is given: the first `num_identity` shots."""
    n = min(num_identity, len(shots_text))
    return IdentityPass(prompts=list(shots_text[:n]), seeds=list(seeds[:n]))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An H×W×3 float picture in [0, 1] as uint8."""
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class StoryboardPipeline:
    """StoryDiffusion + LangSAM + removal + StoryAnyDoor, loaded once, one `__call__` per batch of shots."""

    def __init__(self, story: StoryDiffusionPipeline, langsam: LangSAMPipeline, remover: SubjectRemover,
                 anydoor: AnyDoorPipeline | None = None, config: StoryboardConfig | None = None,
                 device: str | None = None) -> None:
        self.story, self.langsam, self.remover, self.anydoor = story, langsam, remover, anydoor
        self.config = config or StoryboardConfig()
        self.device = device or placement.compute_device()
        """Where each model runs while it works; between steps they all wait on the CPU."""

    @classmethod
    def from_pretrained(
        cls,
        config: StoryboardConfig | None = None,
        *,
        sdxl_path: PathLike | None = None,
        dino_path: PathLike | None = None,
        sam_path: PathLike | None = None,
        anydoor_path: PathLike | None = None,
        anydoor_finetune: PathLike | None = None,
        redraw: bool = True,
        removal: Literal["diffusion", "opencv"] = "diffusion",
        torch_dtype: torch.dtype | None = None,
        device: str | None = None,
    ) -> StoryboardPipeline:
        """Every model, once: SDXL with consistent attention, LangSAM and (with `redraw`) AnyDoor, each
        from its path or the weights registry, all on the CPU until they work.

        `anydoor_finetune` is a StoryAnyDoor fine-tune put onto AnyDoor; `removal` "diffusion" inpaints
        with SDXL's own weights (no second copy), "opencv" with OpenCV's Telea. `torch_dtype` is SDXL's
        (default float16 on CUDA, float32 on the CPU).
        """
        config = config or StoryboardConfig()
        device = device or placement.compute_device()
        dtype = torch_dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        story = StoryDiffusionPipeline.from_pretrained(sdxl_path, config=config.story_config(), torch_dtype=dtype)
        langsam = LangSAMPipeline.from_pretrained(dino_path=dino_path, sam_path=sam_path, config=config.langsam)
        removal_config = config.removal_config()
        remover = (SubjectRemover.from_sdxl(story.sdxl, removal_config) if removal == "diffusion"
                   else SubjectRemover(removal_config))
        anydoor = None
        if redraw:
            anydoor = AnyDoorPipeline.from_pretrained(anydoor_path)
            if anydoor_finetune is not None:
                from storyagent.models.anydoor.finetune import apply_finetune

                anydoor = apply_finetune(anydoor, anydoor_finetune)
            anydoor.config.sampling = config.anydoor_sampling(anydoor.config.sampling)
        return cls(story, langsam, remover, anydoor, config, device)

    def running(self, model, low_vram: bool):
        """`model` on the device for a block (its own CPU offload in low-VRAM mode); see `placement.on_device`."""
        return placement.on_device(model, self.device, low_vram=low_vram)

    def __call__(
        self,
        shots_text: Sequence[str],
        subject_reference: StoryboardSubject,
        seeds: Sequence[int] | None = None,
        identity: IdentityPass | None = None,
        *,
        only: Sequence[int] | None = None,
        backgrounds: Sequence[str] | None = None,
        low_vram: bool | None = None,
        show_progress: bool = True,
    ) -> list[ShotResult]:
        """Draw, mask, clear and redraw the shots at the positions in `only` (default: all), in order.

        `shots_text` holds every shot's text (the identity pass and the positions refer to it);
        `seeds` one seed per shot (default `config.seed + i`); `identity` the identity shots' pass
        the drawn shots share (default: `default_identity`); pass the same one again to redraw a shot
        alone, identical to the first time. `backgrounds` says per shot what belongs where the
        subject was (the diffusion removal's prompt). `low_vram` overrides `config.cpu_offload`.
        A subject that is not found is a result (`reason`), never an error.
        """
        subject = subject_reference
        low_vram = self.config.cpu_offload if low_vram is None else low_vram
        seeds = list(seeds) if seeds is not None else [self.config.seed + i for i in range(len(shots_text))]
        drawn = sorted(set(only)) if only is not None else list(range(len(shots_text)))
        identity = identity or default_identity(shots_text, seeds, self.story.config.num_identity)
        steps = self.story.config.num_inference_steps
        with make_progress(disable=not show_progress) as progress:
            # 1. Initial storyboard: the identity shots together (consistent self-attention fills the
            #    bank), the other drawn shots reading it; an identity member's picture is reused.
            total = steps * (len(identity.prompts) + len(drawn))  # at most: a member drawn is drawn once
            task = progress.add_task("Storyboard (StoryDiffusion)", total=total, status="drawing")
            with self.running(self.story, low_vram):
                story = self.story(list(shots_text), subject.description, seeds=seeds, identity=identity, only=drawn,
                                   output_type="np", on_step=lambda: progress.advance(task))
            progress.update(task, completed=total, status="finding the subject")
            initial = {i: to_uint8(story.images[i]) for i in drawn}

            # 2. Subject masks: LangSAM with the subject's class word in every drawn picture.
            with self.running(self.langsam, low_vram):
                found = dict(zip(drawn, self.langsam([initial[i] for i in drawn], subject.class_word)))

            results: list[ShotResult] = []
            clean = progress.add_task("Storyboard (remove, redraw)", total=len(drawn), status="")
            for i in drawn:
                shot = ShotResult(position=i, prompt=story.prompts[i], seed=seeds[i], initial=initial[i],
                                  found=found[i], mask=found[i].mask)
                results.append(shot)
                progress.advance(clean)
                if not found[i].found:  # nothing to remove: the initial picture stays, and why
                    shot.reason = f"{found[i].reason}; the storyboard keeps the initial picture"
                    continue
                # 3. Removal: the drawn subject's grown mask refilled with the shot's background.
                background = backgrounds[i] if backgrounds is not None else ""
                shot.removal = self.remove(shot, background, subject.description, low_vram)
                if self.anydoor is None or subject.image is None:
                    continue
                # 4. Redraw: StoryAnyDoor draws the user's subject into the hole.
                shot.redrawn = self.redraw(shot, subject, low_vram)
                # 5. Paste: only the redrawn subject (its own mask) over the removal's background.
                shot.final, shot.mask, shot.reason = self.paste(shot, subject.class_word, low_vram)
        return results

    def remove(self, shot: ShotResult, background: str, avoid: str, low_vram: bool) -> RemovalResult:
        """Step 3 for one shot; the diffusion removal inpaints with SDXL's parts, on the device meanwhile."""
        diffusion = self.remover.method == "diffusion"
        with self.running(self.story, low_vram) if diffusion else contextlib.nullcontext():
            return self.remover(shot.initial, shot.found.mask, background=background, avoid=avoid, seed=shot.seed)

    def redraw(self, shot: ShotResult, subject: StoryboardSubject, low_vram: bool) -> np.ndarray:
        """Step 4 for one shot: AnyDoor's full frame with the subject redrawn into the removal's hole."""
        with self.running(self.anydoor, low_vram):
            image = self.anydoor.redraw(subject.image, subject.mask, shot.removal.image, shot.removal.mask,
                                        seed=shot.seed, show_progress=False)
        return np.asarray(image, np.uint8)

    def paste(self, shot: ShotResult, class_word: str, low_vram: bool) -> tuple[np.ndarray, np.ndarray, str]:
        """Step 5 for one shot: (picture, its subject mask, a note).

        AnyDoor regenerates its whole square crop; only the new subject (LangSAM on the redrawn
        picture) is taken from it, so the refilled background survives around a smaller or
        differently posed subject. When the redrawn subject is not found, the hole is the mask.
        """
        with self.running(self.langsam, low_vram):
            (new,) = self.langsam([shot.redrawn], class_word)
        hole = shot.removal.mask
        mask, note = (new.mask, "") if new.found else (
            hole, f"the redrawn subject was not found ({new.reason}); pasted through the removal's hole")
        return np.where(mask[..., None], shot.redrawn, shot.removal.image), mask, note

    def release(self) -> None:
        """Give the device's cached memory back (the models themselves already wait on the CPU)."""
        placement.free_memory()

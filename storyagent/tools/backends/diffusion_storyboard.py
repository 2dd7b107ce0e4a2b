"""Tool: the `diffusion` backend's storyboard (paper, Fig. 3).

Per story: StoryDiffusion draws every shot with one consistent subject; LangSAM finds that subject
in each picture; the subject is removed (the background refilled); and, when a redraw model is
given (AnyDoor, "StoryAnyDoor"), the user's own subject is drawn into the hole. The redrawn
picture keeps the removal's background wherever the new subject is not: it is pasted through the
new subject's own mask (LangSAM on the redrawn picture), not through AnyDoor's whole crop box.

Files per shot: `storyboard/shot_NN_initial.png` (StoryDiffusion), `shot_NN_hole.png` and
`shot_NN_removed.png` (what was refilled, and the result), `shot_NN.png` (the redrawn picture)
and `shot_NN_mask.png` (the subject's mask in the shot's storyboard picture). A shot whose
subject is not found is reported with the reason, never a crash.

The models wait on the CPU and each visits the GPU only while it works (`StoryboardModels.running`);
a step that runs out of GPU memory is tried once more in low-VRAM mode, and a shot that fails
again is skipped while the others are drawn (`ShotFailedError` at the end).

Shots can be drawn a few at a time (`only`): the identity shots' pass is run again from the
`IdentityPass` stored with the first drawing, so a redrawn shot keeps the same subject and the
other shots are not touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from storyagent.fileio import atomic_write_json
from storyagent.models import placement
from storyagent.models.langsam import LangSAMConfig, LangSAMPipeline
from storyagent.models.removal import RemovalConfig, SubjectRemover
from storyagent.models.storydiffusion import (
    ConsistentAttentionConfig,
    IdentityPass,
    StoryDiffusionConfig,
    StoryDiffusionPipeline,
)
from storyagent.progress import make_progress
from storyagent.schemas import Shot, StoryScript, Subject
from storyagent.tools.backends.diffusion_shot import DiffusionShotRecord, Redraw, ShotStep
from storyagent.tools.per_shot import STORYBOARD_DIR
from storyagent.tools.shot_failure import ShotFailedError, with_memory_retry
from storyagent.workspace import Workspace, hash_json

RECORDS = f"{STORYBOARD_DIR}/diffusion_storyboard.json"


class DiffusionStoryboardConfig(BaseModel):
    """Settings of the diffusion storyboard; the defaults follow StoryDiffusion and LangSAM."""

    model_config = ConfigDict(extra="forbid")

    sdxl_path: Path | None = Field(default=None, description="SDXL folder in diffusers layout; default: the HF cache's sdxl-base.")
    dino_path: Path | None = Field(default=None, description="Grounding DINO folder; default: the HF cache's grounding-dino-base.")
    sam_path: Path | None = Field(default=None, description="SAM checkpoint (.pth/.safetensors); default: the HF cache's sam-vit-h.")
    width: int = Field(default=768, ge=16, multiple_of=8, description="Storyboard width in pixels.")
    height: int = Field(default=768, ge=16, multiple_of=8, description="Storyboard height in pixels.")
    steps: int = Field(default=30, ge=1, le=200, description="Denoising steps per shot.")
    guidance_scale: float = Field(default=5.0, ge=0.0, description="Classifier-free guidance scale.")
    seed: int = Field(default=0, ge=0, description="Seed of the token sampling; shot i's noise uses seed + i unless given per shot.")
    style: str = Field(default="cinematic", description="Prompt style shared by all shots.")
    num_identity: int = Field(default=3, ge=1, description="Shots drawn together to fix the subject's look.")
    sampling_ratio: float = Field(default=0.5, ge=0.0, le=1.0, description="Share of the other identity shots' tokens each attends to.")
    subject_description: str | None = Field(default=None, description="How prompts name the subject; default '<name>, a <class word>'.")
    detect_text: str | None = Field(default=None, description="What LangSAM looks for; default the subject's class word.")
    box_threshold: float = Field(default=0.3, ge=0.0, le=1.0, description="Grounding DINO box threshold.")
    text_threshold: float = Field(default=0.25, ge=0.0, le=1.0, description="Grounding DINO text threshold.")
    removal: Literal["auto", "diffusion", "opencv"] = Field(default="auto", description="How the subject is removed; auto = diffusion when SDXL is loaded.")
    device: str | None = Field(default=None, description="torch device; default CUDA when available.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(default="auto", description="Weights dtype; auto = float16 on CUDA, float32 on CPU.")
    cpu_offload: bool = Field(default=False, description="Low-VRAM mode: each model's parts visit the GPU one at a time and the VAE decodes one picture at a time (less GPU memory, slower).")


@dataclass
class StoryboardModels:
    """The loaded models; build once and pass to several calls (loading SDXL takes a while).

    They wait on the CPU; each visits `device` only while it works (`running`), so SDXL, LangSAM
    and the redraw model never share the GPU.
    """

    story: StoryDiffusionPipeline
    langsam: LangSAMPipeline
    remover: SubjectRemover
    device: str = "cpu"
    """Where the models run."""
    low_vram: bool = False
    """Each model's parts visit the device one at a time, and the VAE decodes one picture at a time."""

    @classmethod
    def load(cls, config: DiffusionStoryboardConfig) -> StoryboardModels:
        import torch

        device = config.device or placement.compute_device()
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(
            config.dtype, torch.float16 if device.startswith("cuda") else torch.float32)
        story = StoryDiffusionPipeline.from_pretrained(config.sdxl_path, config=story_config(config),
                                                       torch_dtype=dtype, device="cpu")
        langsam = LangSAMPipeline.from_pretrained(dino_path=config.dino_path, sam_path=config.sam_path,
                                                config=langsam_config(config), device="cpu")
        # The removal's inpainting takes the storyboard's denoising steps too (--steps).
        removal = RemovalConfig(num_inference_steps=config.steps)
        remover = SubjectRemover.from_sdxl(story.sdxl, removal) if config.removal != "opencv" else SubjectRemover(removal)
        return cls(story, langsam, remover, device, config.cpu_offload)

    def running(self, model):
        """`model` (one of these, or the redraw model) on the device for a block; see `placement.on_device`."""
        return placement.on_device(model, self.device, low_vram=self.low_vram)

    def retrying(self, shots: list[int], run):
        """`run()` with these models, once more in low-VRAM mode after a GPU out-of-memory error
        (a `ShotFailedError` naming `shots` when that fails too); (result, retried)."""
        base = self.low_vram

        def attempt(low_vram: bool):
            self.low_vram = low_vram
            try:
                return run()
            finally:
                self.low_vram = base

        return with_memory_retry(shots, attempt, base)


def story_config(config: DiffusionStoryboardConfig) -> StoryDiffusionConfig:
    ratio = config.sampling_ratio
    return StoryDiffusionConfig(
        attention=ConsistentAttentionConfig(default_ratio=ratio, ratios={32: ratio, 16: ratio}),
        num_identity=config.num_identity, num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
        height=config.height, width=config.width, style=config.style,
    )


def langsam_config(config: DiffusionStoryboardConfig) -> LangSAMConfig:
    return LangSAMConfig(box_threshold=config.box_threshold, text_threshold=config.text_threshold)


def shot_text(shot: Shot, notes: Mapping[int, str] | None = None) -> str:
    """The image prompt of a shot: its text, led by the reviewer's words for it that the story could not
    take in (`notes`, by shot number; see `per_shot.shot_feedback`)."""
    text = f"{shot.subject_action}, {shot.description}, {shot.background}, {shot.shot_type.value} shot"
    note = (notes or {}).get(shot.index, "")
    return f"{note}, {text}" if note else text


def subject_words(subject: Subject, config: DiffusionStoryboardConfig) -> tuple[str, str]:
    """(how prompts describe the subject, what the detector looks for)."""
    described = config.subject_description or f"{subject.name}, a {subject.class_word}"
    return described, config.detect_text or subject.class_word


def reference_for_redraw(subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """The reference frame whose subject mask is largest: the most of the subject for AnyDoor to copy."""
    if not subject.frames or not subject.masks:
        raise ValueError("the subject has no prepared frames and masks to redraw from")
    masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in subject.masks]
    best = int(np.argmax([m.sum() for m in masks]))
    return np.asarray(Image.open(subject.frames[best]).convert("RGB")), masks[best]


@dataclass
class DiffusionStoryboard:
    """What one call drew."""

    records: list[DiffusionShotRecord]
    """One record per drawn shot, in shot order."""
    identity: IdentityPass
    """The identity shots' pass the drawn shots share; pass it back to redraw some shots later."""


def generate_storyboard_diffusion(
    script: StoryScript,
    subject: Subject,
    run_dir: str | os.PathLike[str],
    config: DiffusionStoryboardConfig | None = None,
    *,
    models: StoryboardModels | None = None,
    redraw: Redraw | Callable[..., np.ndarray] | None = None,
    workspace: Workspace | None = None,
    only: Sequence[int] | None = None,
    seeds: Mapping[int, int] | None = None,
    identity: IdentityPass | None = None,
    frame_hash: Callable[[Shot], str] | None = None,
    notes: Mapping[int, str] | None = None,
    show_progress: bool = True,
) -> DiffusionStoryboard:
    """Draw, mask, clear (and optionally redraw) the shots numbered in `only` (default: all).

    `seeds` maps a shot number to its seed (default `config.seed + number`); `identity` is the
    identity shots' pass to share (default: the first `num_identity` shots as they are now).
    `workspace`, when given, gets every written picture recorded in its manifest, once: the
    intermediate pictures under `storyboard/shot_NN_initial` and `..._removed`, and the shot's
    storyboard frame (the redrawn picture, else the initial one) under `storyboard/shot_NN`, with
    `frame_hash(shot)` when given (the caller's cache key) or else the shot's own settings hash.
    `notes` are a reviewer's words per shot number that lead that shot's prompt (`shot_text`).
    """
    config = config or DiffusionStoryboardConfig()
    root = Path(run_dir)
    (root / STORYBOARD_DIR).mkdir(parents=True, exist_ok=True)
    models = models or StoryboardModels.load(config)
    described, detect = subject_words(subject, config)
    shots = script.shots
    drawn = [i for i, s in enumerate(shots) if only is None or s.index in only]
    shot_seeds = [seeds[s.index] if seeds is not None else config.seed + s.index for s in shots]
    settings = config.model_dump(mode="json", exclude={"device", "cpu_offload"})

    with make_progress(disable=not show_progress) as progress:
        # 1. Initial storyboard: the identity shots' pass, then the asked-for shots reading its subject.
        passes = len(identity.prompts) if identity is not None else min(config.num_identity, len(shots))
        total = config.steps * (passes + len(drawn))  # at most: identity shots asked for are drawn once
        task = progress.add_task("Storyboard (StoryDiffusion)", total=total, status="drawing")
        numbers = [shots[i].index for i in drawn]

        def draw():
            progress.update(task, completed=0)
            with models.running(models.story):
                return models.story([shot_text(s, notes) for s in shots], described, seed=config.seed, seeds=shot_seeds,
                                    identity=identity, only=drawn, output_type="np",
                                    on_step=lambda: progress.advance(task))

        story, _ = models.retrying(numbers, draw)
        progress.update(task, completed=total)
        initial = {i: (np.clip(story.images[i], 0, 1) * 255).round().astype(np.uint8) for i in drawn}

        # 2. The subject's mask in every drawn picture.
        progress.update(task, status="finding the subject")

        def find():
            with models.running(models.langsam):
                return models.langsam([initial[i] for i in drawn], detect)

        found = dict(zip(drawn, models.retrying(numbers, find)[0]))

        # 3. Per shot: remove the drawn subject and redraw the user's own.
        shot_step = ShotStep(root, models, described, detect, workspace,
                             reference_for_redraw(subject) if redraw is not None else None, redraw)
        records: list[DiffusionShotRecord] = []
        failed: list[ShotFailedError] = []
        clean = progress.add_task("Storyboard (remove, redraw)", total=len(drawn), status="")
        for i in drawn:
            shot = shots[i]
            h = hash_json({"settings": settings, "shot": shot.model_dump(mode="json"), "subject": described,
                           "seed": shot_seeds[i]})
            args = (shot, initial[i], found[i], story.prompts[i], shot_seeds[i], h, frame_hash(shot) if frame_hash else h)
            try:
                # A shot out of GPU memory twice is skipped; the others are still drawn and recorded.
                records.append(shot_step.retrying(*args))
            except ShotFailedError as exc:
                failed.append(exc)
            progress.advance(clean)

    _save_records(root, records)
    if failed:
        raise ShotFailedError.combine(failed)
    return DiffusionStoryboard(records, story.identity_pass)


def _save_records(root: Path, records: list[DiffusionShotRecord]) -> None:
    """Merge the drawn shots' records into `RECORDS` (shots drawn earlier keep theirs)."""
    path = root / RECORDS
    try:
        kept = {r["shot"]: r for r in json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError, TypeError, KeyError):
        kept = {}
    kept.update({r.shot: r.model_dump(mode="json") for r in records})
    atomic_write_json(path, [kept[k] for k in sorted(kept)])

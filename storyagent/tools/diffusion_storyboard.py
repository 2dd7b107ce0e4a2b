"""Tool: the `diffusion` backend's storyboard (paper, Fig. 3).

Per story: StoryDiffusion draws every shot with one consistent subject; LangSAM finds that subject
in each picture; the subject is removed (the background refilled); and, when a redraw model is
given (AnyDoor, "StoryAnyDoor"), the user's own subject is drawn back into the hole. Files:
`storyboard/shot_NN_initial.png`, `shot_NN_mask.png`, `shot_NN_removed.png` and, after a redraw,
`shot_NN.png`. A shot whose subject is not found is reported with the reason, never a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from storyagent.fileio import atomic_write_json
from storyagent.media import write_png
from storyagent.models.langsam import LangSAMConfig, LangSAMPipeline, SubjectMask
from storyagent.models.removal import SubjectRemover
from storyagent.models.storydiffusion import ConsistentAttentionConfig, StoryDiffusionConfig, StoryDiffusionPipeline
from storyagent.progress import make_progress
from storyagent.schemas import Shot, StoryboardFrame, StoryScript, Subject
from storyagent.tools.per_shot import STORYBOARD_DIR, shot_key
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
    seed: int = Field(default=0, ge=0, description="Seed of every shot's noise and of the token sampling.")
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
    cpu_offload: bool = Field(default=False, description="Keep SDXL's parts on the CPU until used (less GPU memory, slower).")


class Redraw(Protocol):
    """The redraw step's shape (AnyDoor's `AnyDoorPipeline.redraw` fits): the full frame with the
    reference subject drawn into `target_mask`."""

    def __call__(self, reference_image: np.ndarray, reference_mask: np.ndarray, target_image: np.ndarray,
                 target_mask: np.ndarray, seed: int | None = 0) -> np.ndarray: ...


class DiffusionShotRecord(BaseModel):
    """What the storyboard made for one shot; paths are relative to the run folder."""

    shot: int
    initial: str
    mask: str | None = None
    removed: str | None = None
    final: str | None = None
    found: bool
    box: tuple[float, float, float, float] | None = None
    score: float = 0.0
    reason: str = Field(default="", description="Why the shot needs attention (e.g. subject not found); empty when fine.")


@dataclass
class StoryboardModels:
    """The loaded models; build once and pass to several calls (loading SDXL takes a while)."""

    story: StoryDiffusionPipeline
    langsam: LangSAMPipeline
    remover: SubjectRemover

    @classmethod
    def load(cls, config: DiffusionStoryboardConfig) -> StoryboardModels:
        import torch

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(
            config.dtype, torch.float16 if device.startswith("cuda") else torch.float32)
        story = StoryDiffusionPipeline.from_pretrained(
            config.sdxl_path, config=story_config(config), torch_dtype=dtype, device=device,
            cpu_offload=config.cpu_offload)
        langsam = LangSAMPipeline.from_pretrained(dino_path=config.dino_path, sam_path=config.sam_path,
                                                config=langsam_config(config), device=device)
        remover = SubjectRemover.from_sdxl(story.sdxl) if config.removal != "opencv" else SubjectRemover()
        return cls(story, langsam, remover)


def story_config(config: DiffusionStoryboardConfig) -> StoryDiffusionConfig:
    ratio = config.sampling_ratio
    return StoryDiffusionConfig(
        attention=ConsistentAttentionConfig(default_ratio=ratio, ratios={32: ratio, 16: ratio}),
        num_identity=config.num_identity, num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
        height=config.height, width=config.width, style=config.style,
    )


def langsam_config(config: DiffusionStoryboardConfig) -> LangSAMConfig:
    return LangSAMConfig(box_threshold=config.box_threshold, text_threshold=config.text_threshold)


def shot_text(shot: Shot) -> str:
    return f"{shot.subject_action}, {shot.description}, {shot.background}, {shot.shot_type.value} shot"


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


def generate_storyboard_diffusion(
    script: StoryScript,
    subject: Subject,
    run_dir: str | os.PathLike[str],
    config: DiffusionStoryboardConfig | None = None,
    *,
    models: StoryboardModels | None = None,
    redraw: Redraw | Callable[..., np.ndarray] | None = None,
    workspace: Workspace | None = None,
    input_hash: str | None = None,
    show_progress: bool = True,
) -> list[DiffusionShotRecord]:
    """Draw, mask, clear (and optionally redraw) every shot; return one record per shot.

    `workspace`, when given, gets every written picture recorded in its manifest, once: the
    intermediate pictures under `storyboard/shot_NN_initial` and `..._removed`, and the shot's
    storyboard frame (the redrawn picture, else the initial one) under `storyboard/shot_NN`, with
    `input_hash` when given (the caller's cache key) or else the shot's own settings hash.
    """
    config = config or DiffusionStoryboardConfig()
    root = Path(run_dir)
    (root / STORYBOARD_DIR).mkdir(parents=True, exist_ok=True)
    models = models or StoryboardModels.load(config)
    described, detect = subject_words(subject, config)
    shots = script.shots
    settings = config.model_dump(mode="json", exclude={"device", "cpu_offload"})

    with make_progress(disable=not show_progress) as progress:
        # 1. Initial storyboard: every shot at once, one consistent subject.
        task = progress.add_task("Storyboard (StoryDiffusion)", total=config.steps * len(shots), status="drawing")
        drawn = models.story([shot_text(s) for s in shots], described, seed=config.seed, output_type="np",
                             on_step=lambda: progress.advance(task))
        initial = [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in drawn.images]

        # 2. The subject's mask in every picture.
        progress.update(task, status="finding the subject")
        masks = models.langsam(initial, detect)

        # 3. Per shot: remove the drawn subject and redraw the user's own.
        shot_step = _ShotStep(root, models, config, described, workspace,
                              reference_for_redraw(subject) if redraw is not None else None, redraw)
        records: list[DiffusionShotRecord] = []
        clean = progress.add_task("Storyboard (remove, redraw)", total=len(shots), status="")
        for shot, image, found, prompt in zip(shots, initial, masks, drawn.prompts):
            h = hash_json({"settings": settings, "shot": shot.model_dump(mode="json"), "subject": described})
            records.append(shot_step(shot, image, found, prompt, h, input_hash or h))
            progress.advance(clean)

    atomic_write_json(root / RECORDS, [r.model_dump(mode="json") for r in records])
    return records


@dataclass
class _ShotStep:
    """Steps 3a-4 of `generate_storyboard_diffusion` for one shot: write, remove, redraw, record."""

    root: Path
    models: StoryboardModels
    config: DiffusionStoryboardConfig
    described: str
    workspace: Workspace | None
    reference: tuple[np.ndarray, np.ndarray] | None
    redraw: Redraw | Callable[..., np.ndarray] | None

    def __call__(self, shot: Shot, image: np.ndarray, found: SubjectMask, prompt: str, h: str,
                 frame_hash: str) -> DiffusionShotRecord:
        name = shot_key(STORYBOARD_DIR, shot.index)
        write_png(self.root / f"{name}_initial.png", image)
        record = DiffusionShotRecord(shot=shot.index, initial=f"{name}_initial.png", found=found.found,
                                     box=found.box, score=found.score)
        if not found.found:
            # 3a. Nothing to remove: keep the initial picture, tell the Observer why.
            record.reason = f"shot {shot.index}: {found.reason}; the storyboard keeps the initial picture"
            self._record(f"{name}_initial", StoryboardFrame(path=record.initial, input_hash=h, shot=shot.index,
                                                            meta={"found": False, "reason": record.reason}))
        else:
            # 3b. Remove the drawn subject, keep the grown mask and box for the redraw.
            removed = self.models.remover(image, found.mask, background=shot.background, avoid=self.described,
                                          seed=self.config.seed)
            write_png(self.root / f"{name}_mask.png", removed.mask.astype(np.uint8) * 255)
            write_png(self.root / f"{name}_removed.png", removed.image)
            record.mask, record.removed = f"{name}_mask.png", f"{name}_removed.png"
            self._record(f"{name}_initial", StoryboardFrame(
                path=record.initial, mask_path=record.mask, input_hash=h, shot=shot.index,
                meta={"found": True, "box": list(found.box), "score": found.score, "prompt": prompt}))
            self._record(f"{name}_removed", StoryboardFrame(
                path=record.removed, mask_path=record.mask, input_hash=h, shot=shot.index,
                meta={"method": removed.method, "subject_box": list(removed.box)}))
            # 4. Redraw the user's subject into the hole (AnyDoor), when a redraw step is given.
            if self.redraw is not None:
                final = self.redraw(self.reference[0], self.reference[1], removed.image, removed.mask,
                                    seed=self.config.seed + shot.index)
                record.final = f"{name}.png"
                write_png(self.root / record.final, np.asarray(final, dtype=np.uint8))
        # The shot's storyboard frame, recorded once.
        meta = {"found": record.found, "reason": record.reason} | ({"redraw": True} if record.final else {})
        self._record(name, StoryboardFrame(path=record.final or record.initial, mask_path=record.mask,
                                           input_hash=frame_hash, shot=shot.index, meta=meta))
        return record

    def _record(self, key: str, artifact: StoryboardFrame) -> None:
        if self.workspace is not None:
            self.workspace.record(key, artifact)

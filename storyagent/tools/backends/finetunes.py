"""The subject's fine-tunes (paper, Fig. 3, Secs. 3.2-3.3): StoryAnyDoor and LoRA-BE, trained on
the user's reference media once per subject and kept in the StoryAgent cache.

Each fine-tune lives in `cache_dir("subjects", "<model>-<key>")`, where the key hashes what it was
trained from: the reference media's contents, how their masks were made, the base weights'
fingerprint and the training settings. Any later run of the same subject, from any run folder,
reuses it; an interrupted training (Ctrl-C, a crash) continues from its last checkpoint there.
`--finetune off` uses the stock models, `--finetune force` trains again from scratch.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from storyagent.config import RunConfig
from storyagent.fileio import atomic_write_json
from storyagent.hashing import hash_json
from storyagent.models import placement
from storyagent.progress import console
from storyagent.tools.subject import LangSAMMasks, PreparedSubject
from storyagent.weights import cache_dir, resolve_weights, weights_fingerprint
from storyagent.workspace import Workspace

Model = Literal["story_anydoor", "lora_be"]
FILES: dict[str, str] = {"story_anydoor": "story_anydoor.safetensors", "lora_be": "lora_be.safetensors"}
BASE_WEIGHTS: dict[str, str] = {"story_anydoor": "anydoor", "lora_be": "dynamicrafter-512"}

LORA_BE_PRESETS: dict[str, dict[str, float | int]] = {
    # The paper's LoRA-BE: Adam, learning rate 1e-4, 400 epochs over the reference clips.
    "paper": {"learning_rate": 1e-4, "epochs": 400},
    # A first look in a tenth of the time: the embeddings and LoRA move enough to carry the subject.
    "quick": {"learning_rate": 1e-4, "epochs": 40},
}


class FineTune(BaseModel):
    """One fine-tune a run uses, as the manifest names it."""

    model: Model
    path: str
    """The fine-tune's file in the StoryAgent cache."""
    key: str
    """Hash of the reference media, masks, base weights and settings it was trained from."""
    trained_now: bool
    """Trained by this run (False: found in the cache)."""
    steps: int
    """Optimizer steps it was trained for."""
    seconds: float
    """Time this run spent on it (training, or finding it)."""


def subject_token(name: str) -> str:
    """The LoRA-BE token that stands for the subject in video prompts: "<pip>" for Pip."""
    return "<" + ("".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "subject") + ">"


def story_anydoor_config(cfg: RunConfig):
    from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig

    overrides = {"seed": cfg.seed} | ({"steps": cfg.anydoor_steps} if cfg.anydoor_steps else {})
    return StoryAnyDoorTrainingConfig.preset(cfg.finetune_preset, **overrides)


def lora_be_config(cfg: RunConfig):
    from storyagent.models.lora_be import LoRABEConfig

    preset = LORA_BE_PRESETS[cfg.finetune_preset] | ({"epochs": cfg.lora_be_epochs} if cfg.lora_be_epochs else {})
    return LoRABEConfig(token=subject_token(cfg.name), class_word=cfg.class_word, seed=cfg.seed, **preset)


class SubjectFineTunes:
    """Finds or trains the subject's StoryAnyDoor and LoRA-BE fine-tunes for one run."""

    def __init__(self, cfg: RunConfig, subject: PreparedSubject, masks: LangSAMMasks,
                 show_progress: bool = True) -> None:
        self.cfg, self.subject, self.masks, self.show_progress = cfg, subject, masks, show_progress
        self.device = placement.compute_device()

    def folder(self, model: Model, settings: dict[str, object]) -> tuple[Path, str]:
        # The subject's input hash is already the media's contents, their masks and how many frames
        # were read: the same files under another path share fine-tunes.
        key = hash_json({"model": model, "subject": self.subject.input_hash,
                         "base": weights_fingerprint(resolve_weights(BASE_WEIGHTS[model])), "settings": settings})
        return cache_dir("subjects", f"{model}-{key}"), key

    def __call__(self, ws: Workspace, models: tuple[Model, ...] = ("story_anydoor", "lora_be")) -> dict[str, FineTune]:
        """The fine-tunes in `models`, trained where the cache has none; recorded in the manifest."""
        found: dict[str, FineTune] = {}
        for model in models:
            ws.manifest.set_stage("subject", "running", f"fine-tuning {model}")
            found[model] = self.ensure(model)
        ws.manifest.set_finetunes({k: v.model_dump(mode="json") for k, v in found.items()})
        ws.manifest.set_stage("subject", "done")
        return found

    def ensure(self, model: Model) -> FineTune:
        start = time.perf_counter()
        config = story_anydoor_config(self.cfg) if model == "story_anydoor" else lora_be_config(self.cfg)
        folder, key = self.folder(model, asdict(config))
        final, record = folder / FILES[model], folder / "finetune.json"
        if self.cfg.finetune == "force" and folder.exists():
            shutil.rmtree(folder)
        trained_now = not (final.exists() and record.exists())
        if trained_now:
            folder.mkdir(parents=True, exist_ok=True)
            if (folder / "work").exists():
                console.print(f"Resuming the {model} fine-tune from its last checkpoint in {folder / 'work'}.")
            train = self.train_story_anydoor if model == "story_anydoor" else self.train_lora_be
            steps = train(config, folder / "work", final)
            # Written last: a folder without it holds an unfinished training, resumed next time.
            atomic_write_json(record, {
                "model": model, "key": key, "steps": steps, "name": self.cfg.name, "class_word": self.cfg.class_word,
                "media": [str(f) for f in self.subject.subject.reference_media], "settings": asdict(config)})
        steps = int(json.loads(record.read_text(encoding="utf-8"))["steps"])
        return FineTune(model=model, path=str(final), key=key, trained_now=trained_now, steps=steps,
                        seconds=round(time.perf_counter() - start, 3))

    # ---- the two trainers ------------------------------------------------------------------

    def train_story_anydoor(self, config, work: Path, final: Path) -> int:
        """StoryAnyDoor (Sec. 3.2): AnyDoor fine-tuned on pairs of the subject's reference frames."""
        from storyagent.models.anydoor import AnyDoorPipeline
        from storyagent.models.anydoor.training import StoryAnyDoorTrainer

        ref = self.subject.reference
        # On the GPU for its training only, so the next model finds the memory free.
        with placement.on_device(AnyDoorPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = StoryAnyDoorTrainer(pipe, list(ref.frames), list(ref.masks), work, config,
                                          sources=[str(s) for s in ref.sources])
            trainer.train(show_progress=self.show_progress)
            trainer.save_finetune(final)
            return trainer.step

    def train_lora_be(self, config, work: Path, final: Path) -> int:
        """LoRA-BE (Sec. 3.3): DynamiCrafter's LoRA and block-wise embeddings on the subject's clips."""
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline
        from storyagent.models.lora_be import LoRABETrainer, load_subject_clips

        clips = load_subject_clips(list(self.subject.subject.reference_media), segment=self.masks)
        self.masks.release()
        with placement.on_device(DynamiCrafterPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = LoRABETrainer(pipe, config, work)
            trainer.train(clips, show_progress=self.show_progress)
            trainer.save(final)
            return trainer.step

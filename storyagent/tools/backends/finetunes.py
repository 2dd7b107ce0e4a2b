"""The cast's fine-tunes (paper, Fig. 3, Secs. 3.2-3.3): StoryAnyDoor and LoRA-BE, trained on the
user's reference media and kept in the StoryAgent cache.

Each fine-tune lives in `cache_dir("subjects", "<model>-<key>")`, where the key hashes what it was
trained from: the reference media's contents, how their masks were made, the base weights'
fingerprint and the training settings. Any later run, from any run folder, reuses it; an
interrupted training (Ctrl-C, a crash) continues from its last checkpoint there.
`--finetune off` uses the stock models, `--finetune force` trains again from scratch.

One character (`SubjectFineTunes`): its StoryAnyDoor and its LoRA-BE, keyed by its own media. A
cast of several (`CastFineTunes`): every character's own StoryAnyDoor, keyed by that character's
media alone (so a character trained for one film is found again in every film it is in), and ONE
LoRA-BE for the whole cast (one LoRA, one token with its 16 block-wise embeddings per character),
keyed by the cast's contents: every character's media, name and class word, and the settings.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, model_serializer

from storyagent.cast import CastMember
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
    character: str | None = None
    """A cast's StoryAnyDoor: whose it is (None: the one character's, or the cast's LoRA-BE)."""
    tokens: dict[str, str] | None = None
    """A cast's LoRA-BE: each character's token in video prompts, by name (None: one character's)."""

    @model_serializer(mode="wrap")
    def _without_cast_fields(self, handler) -> dict[str, Any]:
        # A one-character film's manifest names its fine-tunes as before casts: no null cast fields.
        return {k: v for k, v in handler(self).items() if v is not None}


def anydoor_entry(name: str, cast_size: int) -> str:
    """The manifest's name of a character's StoryAnyDoor: "story_anydoor" for a film of one character,
    "story_anydoor/<name>" in a cast's (where "lora_be" is the cast's one LoRA-BE)."""
    return "story_anydoor" if cast_size == 1 else f"story_anydoor/{name}"


def subject_token(name: str) -> str:
    """The LoRA-BE token that stands for the subject in video prompts: "<pip>" for Pip."""
    return "<" + ("".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "subject") + ">"


def story_anydoor_config(cfg: RunConfig):
    from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig

    overrides = {"seed": cfg.seed} | ({"steps": cfg.anydoor_steps} if cfg.anydoor_steps else {})
    return StoryAnyDoorTrainingConfig.preset(cfg.finetune_preset, **overrides)


def lora_be_config(cfg: RunConfig, cast: list[CastMember] | None = None):
    """The LoRA-BE settings for `cast` (default: the lead alone): one subject's `LoRABEConfig`, or for
    several characters a `LoRABECastConfig` with one token per character (`lora_be.cast_config`)."""
    from storyagent.models.lora_be import CastToken, cast_config

    preset = LORA_BE_PRESETS[cfg.finetune_preset] | ({"epochs": cfg.lora_be_epochs} if cfg.lora_be_epochs else {})
    cast = cast if cast is not None else cfg.cast[:1]
    return cast_config([CastToken(subject_token(m.name), m.class_word, m.name) for m in cast], seed=cfg.seed, **preset)


def cached(model: Model, folder: Path, key: str, force: bool, train: Callable[[Path, Path], int],
           record: dict[str, object]) -> FineTune:
    """The fine-tune in `folder` (`FILES[model]` with its `finetune.json`), trained first by
    `train(work folder, final file) -> steps` when the folder holds none (or `force`); an interrupted
    training resumes from its checkpoints in `folder/work`."""
    start = time.perf_counter()
    final, done = folder / FILES[model], folder / "finetune.json"
    if force and folder.exists():
        shutil.rmtree(folder)
    trained_now = not (final.exists() and done.exists())
    if trained_now:
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "work").exists():
            console.print(f"Resuming the {model} fine-tune from its last checkpoint in {folder / 'work'}.")
        steps = train(folder / "work", final)
        # Written last: a folder without it holds an unfinished training, resumed next time.
        atomic_write_json(done, {"model": model, "key": key, "steps": steps} | record)
    steps = int(json.loads(done.read_text(encoding="utf-8"))["steps"])
    return FineTune(model=model, path=str(final), key=key, trained_now=trained_now, steps=steps,
                    seconds=round(time.perf_counter() - start, 3))


class SubjectFineTunes:
    """Finds or trains one character's StoryAnyDoor and LoRA-BE fine-tunes (default: the lead's)."""

    def __init__(self, cfg: RunConfig, subject: PreparedSubject, masks: LangSAMMasks,
                 show_progress: bool = True, member: CastMember | None = None) -> None:
        self.cfg, self.subject, self.masks, self.show_progress = cfg, subject, masks, show_progress
        self.member = member or cfg.cast[0]
        """The character these are; its media are `subject`'s."""
        self.device = placement.compute_device()

    def folder(self, model: Model, settings: dict[str, object]) -> tuple[Path, str]:
        # The subject's input hash is already the media's contents, their masks and how many frames
        # were read: the same files under another path share fine-tunes. The name is not in the
        # key: the same media under another name draw the same character.
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
        config = story_anydoor_config(self.cfg) if model == "story_anydoor" else lora_be_config(self.cfg, [self.member])
        folder, key = self.folder(model, asdict(config))
        train = self.train_story_anydoor if model == "story_anydoor" else self.train_lora_be
        return cached(model, folder, key, self.cfg.finetune == "force", lambda work, final: train(config, work, final),
                      {"name": self.member.name, "class_word": self.member.class_word,
                       "media": [str(f) for f in self.subject.subject.reference_media], "settings": asdict(config)})

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


class CastFineTunes:
    """Finds or trains a cast's fine-tunes: each character's own StoryAnyDoor (its `SubjectFineTunes`,
    keyed by its own media) and one LoRA-BE for the whole cast (keyed by the cast's contents)."""

    def __init__(self, cfg: RunConfig, cast: list[PreparedSubject],
                 masks_for: Callable[[CastMember], LangSAMMasks], show_progress: bool = True) -> None:
        if len(cast) < 2:
            raise ValueError("CastFineTunes is for a cast of two or more; one character's are SubjectFineTunes")
        self.cfg, self.cast, self.show_progress = cfg, cast, show_progress
        self.members = cfg.cast
        self.characters = [SubjectFineTunes(cfg, prepared, masks_for(member), show_progress, member)
                           for member, prepared in zip(self.members, cast)]
        self.device = placement.compute_device()

    def __call__(self, ws: Workspace, models: tuple[Model, ...] = ("story_anydoor", "lora_be")) -> dict[str, FineTune]:
        """The fine-tunes in `models` (StoryAnyDoor: one per character), trained where the cache has none;
        recorded in the manifest."""
        found: dict[str, FineTune] = {}
        for entry, work in self.work(models):
            ws.manifest.set_stage("subject", "running", f"fine-tuning {entry}")
            found[entry] = work()
        ws.manifest.set_finetunes({k: v.model_dump(mode="json") for k, v in found.items()})
        ws.manifest.set_stage("subject", "done")
        return found

    def ensure(self, models: tuple[Model, ...] = ("story_anydoor", "lora_be")) -> dict[str, FineTune]:
        """The fine-tunes in `models` by manifest name, trained where the cache has none; nothing recorded."""
        return {entry: work() for entry, work in self.work(models)}

    def work(self, models: tuple[Model, ...]) -> list[tuple[str, Callable[[], FineTune]]]:
        """(manifest name, what finds or trains it) for every fine-tune of `models`, in the order they are made."""
        out: list[tuple[str, Callable[[], FineTune]]] = []
        if "story_anydoor" in models:
            for tunes in self.characters:
                name = tunes.member.name
                out.append((anydoor_entry(name, len(self.members)),
                            lambda t=tunes, n=name: t.ensure("story_anydoor").model_copy(update={"character": n})))
        if "lora_be" in models:
            out.append(("lora_be", self.lora_be))
        return out

    def lora_be(self) -> FineTune:
        """The cast's one LoRA-BE: one LoRA, and per character one token with its own block-wise embeddings,
        trained on every character's own clips (each token localized on its own masks)."""
        config = lora_be_config(self.cfg, self.members)
        # What the cast is: every character's media (input hash), name and class word, in cast order
        # (the lead's token first); the settings hold the tokens too.
        cast = [{"name": m.name, "class_word": m.class_word, "subject": p.input_hash}
                for m, p in zip(self.members, self.cast)]
        key = hash_json({"model": "lora_be", "cast": cast,
                         "base": weights_fingerprint(resolve_weights(BASE_WEIGHTS["lora_be"])), "settings": asdict(config)})
        tune = cached("lora_be", cache_dir("subjects", f"lora_be-{key}"), key, self.cfg.finetune == "force",
                      lambda work, final: self.train_lora_be(config, work, final),
                      {"cast": [c | {"media": [str(f) for f in p.subject.reference_media]}
                                for c, p in zip(cast, self.cast)], "settings": asdict(config)})
        return tune.model_copy(update={"tokens": {c.name: c.token for c in config.characters}})

    def train_lora_be(self, config, work: Path, final: Path) -> int:
        """LoRA-BE (Sec. 3.3) for the cast: DynamiCrafter's LoRA and every character's block-wise
        embeddings on all the characters' clips, each labelled with its own token."""
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline
        from storyagent.models.lora_be import (
            LoRABETrainer,
            cast_clips,
            load_subject_clips,
        )

        by_token = {}
        for token, tunes in zip(config.tokens, self.characters):
            by_token[token] = load_subject_clips(list(tunes.subject.subject.reference_media), segment=tunes.masks)
            tunes.masks.release()
        clips = cast_clips(by_token)
        with placement.on_device(DynamiCrafterPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = LoRABETrainer(pipe, config, work)
            trainer.train(clips, show_progress=self.show_progress)
            trainer.save(final)
            return trainer.step

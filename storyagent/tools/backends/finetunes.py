"""The cast's fine-tunes (paper, Fig. 3, Secs. 3.2-3.3): StoryAnyDoor and LoRA-BE, trained on the
user's reference media and kept in the StoryAgent cache.

Each fine-tune lives in `cache_dir("subjects", "<model>-<key>")`, where the key hashes what it was
trained from: the reference media's contents, how their masks were made, the base weights'
fingerprint and the training settings. Any later run, from any run folder, reuses it; an
interrupted training (Ctrl-C, a crash) continues from its last checkpoint there.
`--finetune off` uses the stock models, `--finetune force` trains again from scratch.

When they train (paper, Fig. 3): at the storyboard stage, after the story is written and approved
(`DiffusionBackend.train_subject`), so a reviewer never waits hours for the story; what is left to
train, and about how long it will take, is printed when the run opens (`estimate`).

Memory: each training runs in the run's setting (`--low-vram` or not; `models/training_memory.py`:
gradient checkpointing, bf16 autocast and fused Adam on CUDA, frozen weights in bf16 in the low-VRAM
setting), and after a CUDA out-of-memory error once more in the low-VRAM setting, from its last
checkpoint; `finetune.json` and the manifest's `finetunes` say so (`out_of_memory_retry`).

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
from storyagent.errors import StoryAgentError
from storyagent.fileio import atomic_write_json
from storyagent.hashing import hash_json
from storyagent.models import placement
from storyagent.models.wan.config import WAN_TARGET_MODULES, is_wan, wan_config
from storyagent.models.training_memory import TrainingMemory
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
LABELS: dict[str, str] = {"story_anydoor": "StoryAnyDoor", "lora_be": "LoRA-BE"}
ASSUMED_STEP_SECONDS: dict[str, float] = {"story_anydoor": 0.5, "lora_be": 1.5}
"""Seconds per training step on one A100/H100-class GPU, used for the estimate printed before a run trains
while this machine has measured none of that kind: the project's assumption (README, "How long";
`benchmarks/protocol_wall_time.py`), not a measurement. Every training records the figure it measured in
its `finetune.json` (`seconds_per_step`, `device`, `kind`); later estimates on the same device use the
latest such record (`step_seconds`)."""


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
    seconds_per_step: float | None = None
    """Trained now: the seconds each step took here (None: found in the cache, or no step was left)."""
    out_of_memory_retry: str | None = None
    """It ran out of GPU memory and was trained on in the low-VRAM setting (this run or the one that trained
    it); None: it did not."""

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
    if is_wan(cfg.video_model):
        # LoRA-BE on Wan: LoRA on every block's attention projections, clips of the model's own length
        # (4k+1 frames) and size; the config names the Wan model it is for (and so keys its cache entry).
        wan = wan_config(cfg.video_model)
        preset |= {"target_modules": WAN_TARGET_MODULES, "frames": wan.train_frames, "height": wan.train_height,
                   "width": wan.train_width, "extra": {"video_model": cfg.video_model}}
    return cast_config([CastToken(subject_token(m.name), m.class_word, m.name) for m in cast], seed=cfg.seed, **preset)


def base_weights(cfg: RunConfig, model: Model) -> str:
    """The weights `model` is fine-tuned from: AnyDoor, or the video model of `--video-model` for LoRA-BE."""
    return cfg.video_model if model == "lora_be" else BASE_WEIGHTS[model]


def train_wan_lora_be(cfg: RunConfig, config, media: dict[str, tuple[list[Path], LangSAMMasks]], work: Path,
                      final: Path, device: str, show_progress: bool) -> tuple[int, tuple[int, float]]:
    """LoRA-BE (Sec. 3.3) on the Wan model of `--video-model`: its LoRA and block-wise embeddings (one per
    transformer block) from each character's clips (`media`: token -> (files, masks)), at the model's own
    frame rate; bf16 and gradient checkpointing on a GPU. (steps in all, (steps taken now, their seconds))."""
    from storyagent.models.lora_be import cast_clips, load_subject_clips
    from storyagent.models.wan import WanLoRABETrainer, load_wan

    wan = wan_config(cfg.video_model)
    by_token = {}
    for token, (files, masks) in media.items():
        by_token[token] = load_subject_clips(files, frames=config.frames, segment=masks,
                                             max_side=max(config.height, config.width),
                                             seconds=(config.frames - 1) / wan.fps)
        masks.release()
    clips = by_token[config.token] if len(by_token) == 1 else cast_clips(by_token)
    trainer = WanLoRABETrainer(load_wan(cfg.video_model), config, work, device=device)
    try:
        trainer.resume()
        start, begun = trainer.step, time.perf_counter()
        trainer.train(clips, show_progress=show_progress)
        measured = (trainer.step - start, time.perf_counter() - begun)
        trainer.save(final)
        return trainer.step, measured
    finally:
        trainer.release()
        placement.free_memory()


def cached(model: Model, folder: Path, key: str, force: bool, train: Callable[[Path, Path], int],
           record: dict[str, object]) -> FineTune:
    """The fine-tune in `folder` (`FILES[model]` with its `finetune.json`), trained first by
    `train(work folder, final file) -> steps` when the folder holds none (or `force`); an interrupted
    training resumes from its checkpoints in `folder/work`. `record` goes into `finetune.json`, with what
    `train` added to it while training (`Trainings.with_memory`: the memory setting, the step time)."""
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
    written = json.loads(done.read_text(encoding="utf-8"))
    return FineTune(model=model, path=str(final), key=key, trained_now=trained_now, steps=int(written["steps"]),
                    seconds=round(time.perf_counter() - start, 3),
                    seconds_per_step=written.get("seconds_per_step") if trained_now else None,
                    out_of_memory_retry=written.get("out_of_memory_retry"))


class FineTuneOutOfMemoryError(StoryAgentError):
    """A fine-tune ran out of GPU memory in the low-VRAM setting too; what it trained is kept in its checkpoints."""

    def __init__(self, label: str, work: Path) -> None:
        super().__init__(f"The {label} fine-tune ran out of GPU memory, also with --low-vram settings; what it "
                         f"trained is kept in {work} and goes on from there: run again with --resume on a GPU with "
                         "more memory, or with --finetune-preset quick (LoRA: far less memory).")


def device_name(device: str) -> str:
    """The name step times are recorded under: the GPU's model ("NVIDIA H100 80GB HBM3"), or "cpu"."""
    import torch

    return torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else "cpu"


def step_kind(model: Model, config: Any) -> str:
    """What a step's time depends on besides the device: StoryAnyDoor full or LoRA, LoRA-BE."""
    if model == "story_anydoor":
        return "story_anydoor-lora" if config.use_lora else "story_anydoor-full"
    return "lora_be"


def step_seconds(model: Model, kind: str, device: str) -> tuple[float | None, str]:
    """(seconds per step, where the figure comes from) for an estimate: the latest step time measured on this
    device for this kind of training (any subject's `finetune.json` in the cache), else on a GPU the
    assumed `ASSUMED_STEP_SECONDS`, else None."""
    name = device_name(device)
    best: tuple[float, float] | None = None
    for done in cache_dir("subjects").glob("*/finetune.json"):
        try:
            written = json.loads(done.read_text(encoding="utf-8"))
            if written.get("kind") == kind and written.get("device") == name and written.get("seconds_per_step"):
                when = done.stat().st_mtime
                if best is None or when > best[0]:
                    best = (when, float(written["seconds_per_step"]))
        except (OSError, ValueError):
            continue
    if best is not None:
        return best[1], f"measured by an earlier training on this {name}"
    if device == "cuda":
        return ASSUMED_STEP_SECONDS[model], "assumed for an A100/H100-class GPU (README, How long), not yet measured here"
    return None, "no step time known for the CPU yet"


def checkpoint_step(model: Model, work: Path) -> int:
    """The step an interrupted training in `work` goes on from (0: none)."""
    states = [work / "checkpoint" / "state.json"] if model == "lora_be" else list(work.glob("checkpoint-*/state.json"))
    steps = []
    for state in states:
        try:
            steps.append(int(json.loads(state.read_text(encoding="utf-8"))["step"]))
        except (OSError, ValueError, KeyError):
            continue
    return max(steps, default=0)


def count_clips(files: list[Path], frames: int = 16) -> int:
    """How many LoRA-BE training clips `load_subject_clips` makes of these media (a photo: one; a video: its
    windows), from the videos' headers alone: an epoch is one step per clip."""
    from storyagent.media import VIDEO_SUFFIXES
    from storyagent.media.reading import probe_video
    from storyagent.models.lora_be.data import plan_windows, target_stride

    count = 0
    for file in map(Path, files):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            length, fps = probe_video(file)
            count += len(plan_windows(length, frames, target_stride(fps, frames), 4)[1])
        else:
            count += 1
    return count


class Planned(BaseModel):
    """A fine-tune this run will train (none in the cache yet): what is left of it and its expected time."""

    entry: str
    """Its manifest name (`story_anydoor`, `story_anydoor/<name>`, `lora_be`)."""
    model: Model
    steps: int
    """Steps still to take (an interrupted training goes on from its checkpoint)."""
    seconds_per_step: float | None
    source: str
    """Where the step time comes from (`step_seconds`)."""

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_step is None else self.steps * self.seconds_per_step


def counted(steps: int) -> str:
    return f"{steps:,} step" + ("" if steps == 1 else "s")


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{max(1, round(seconds / 60))} min"


def estimate(plans: list[Planned]) -> str | None:
    """The sentence printed when the run opens: what will train at the storyboard stage and about how long it
    takes (steps x seconds per step, each figure's source named); None when nothing is left to train."""
    if not plans:
        return None
    parts, total, known = [], 0.0, True
    for plan in plans:
        label = LABELS[plan.model] + (f" ({plan.entry.split('/', 1)[1]})" if "/" in plan.entry else "")
        if plan.seconds is None:
            known = False
            parts.append(f"{label}: {counted(plan.steps)} ({plan.source})")
        else:
            total += plan.seconds
            parts.append(f"{label}: {counted(plan.steps)} x {plan.seconds_per_step:g} s = {hours(plan.seconds)} "
                         f"({plan.source})")
    head = f"about {hours(total)}" if known else "time unknown"
    return (f"Fine-tuning at the storyboard stage, once the story is approved, {head}: " + "; ".join(parts) + ".")


class Trainings:
    """What both kinds of fine-tunes share: the memory setting each training runs in, its retry after a GPU
    out-of-memory error, and the step time it measured."""

    cfg: RunConfig
    device: str
    memory: TrainingMemory
    """The setting the training now running uses (`with_memory` sets it for each attempt)."""
    measured: tuple[int, float] | None
    """(steps taken, seconds they took) by the last training, as the trainer ran them."""

    def with_memory(self, label: str, kind: str, train: Callable[[Path, Path], int],
                    record: dict[str, object]) -> Callable[[Path, Path], int]:
        """`train`, run in the run's memory setting and, after a CUDA out-of-memory error, once more in the
        low-VRAM setting from its last checkpoint (`placement.retry_out_of_memory`, as shots are); what it ran
        in, the retry and the measured step time are added to `record` (the fine-tune's `finetune.json`)."""
        from storyagent.models.placement import StillOutOfMemory, retry_out_of_memory

        def run(work: Path, final: Path) -> int:
            tries: list[bool] = []

            def attempt(low_vram: bool) -> int:
                if tries:
                    console.print(f"The {label} fine-tune ran out of GPU memory; training on from its last checkpoint "
                                  f"with low-VRAM settings ({TrainingMemory(low_vram=True).describe()}).")
                tries.append(low_vram)
                self.memory, self.measured = TrainingMemory(low_vram=low_vram), None
                return train(work, final)

            try:
                steps, retried = retry_out_of_memory(attempt, self.cfg.low_vram)
            except StillOutOfMemory:
                raise FineTuneOutOfMemoryError(label, work) from None
            record["memory"] = self.memory.describe()
            if retried:
                record["out_of_memory_retry"] = (f"ran out of GPU memory; trained on from its last checkpoint "
                                                 f"with low-VRAM settings ({self.memory.describe()})")
            if self.measured is not None and self.measured[0] > 0:
                taken, seconds = self.measured
                record.update(seconds_per_step=round(seconds / taken, 4), device=device_name(self.device), kind=kind)
            return steps

        return run


class SubjectFineTunes(Trainings):
    """Finds or trains one character's StoryAnyDoor and LoRA-BE fine-tunes (default: the lead's)."""

    def __init__(self, cfg: RunConfig, subject: PreparedSubject, masks: LangSAMMasks,
                 show_progress: bool = True, member: CastMember | None = None) -> None:
        self.cfg, self.subject, self.masks, self.show_progress = cfg, subject, masks, show_progress
        self.member = member or cfg.cast[0]
        """The character these are; its media are `subject`'s."""
        self.device = placement.compute_device()
        self.memory, self.measured = TrainingMemory(low_vram=cfg.low_vram), None

    def folder(self, model: Model, settings: dict[str, object]) -> tuple[Path, str]:
        # The subject's input hash is already the media's contents, their masks and how many frames
        # were read: the same files under another path share fine-tunes. The name is not in the
        # key: the same media under another name draw the same character.
        key = hash_json({"model": model, "subject": self.subject.input_hash,
                         "base": weights_fingerprint(resolve_weights(base_weights(self.cfg, model))), "settings": settings})
        return cache_dir("subjects", f"{model}-{key}"), key

    def __call__(self, ws: Workspace, models: tuple[Model, ...] = ("story_anydoor", "lora_be")) -> dict[str, FineTune]:
        """The fine-tunes in `models`, trained where the cache has none; recorded in the manifest."""
        found: dict[str, FineTune] = {}
        for model in models:
            ws.manifest.set_stage("storyboard", "running", f"fine-tuning {model}")
            found[model] = self.ensure(model)
        ws.manifest.set_finetunes({k: v.model_dump(mode="json") for k, v in found.items()})
        ws.manifest.set_stage("storyboard", "running")
        return found

    def config(self, model: Model) -> Any:
        return story_anydoor_config(self.cfg) if model == "story_anydoor" else lora_be_config(self.cfg, [self.member])

    def ensure(self, model: Model) -> FineTune:
        config = self.config(model)
        folder, key = self.folder(model, asdict(config))
        train = self.train_story_anydoor if model == "story_anydoor" else self.train_lora_be
        record: dict[str, object] = {"name": self.member.name, "class_word": self.member.class_word,
                                     "media": [str(f) for f in self.subject.subject.reference_media],
                                     "settings": asdict(config)}
        return cached(model, folder, key, self.cfg.finetune == "force",
                      self.with_memory(LABELS[model], step_kind(model, config),
                                       lambda work, final: train(config, work, final), record), record)

    def plan(self, model: Model, entry: str | None = None) -> Planned | None:
        """This character's `model` as this run will train it, or None when the cache has it (and no `force`)."""
        config = self.config(model)
        folder, _ = self.folder(model, asdict(config))
        if self.cfg.finetune != "force" and (folder / FILES[model]).exists() and (folder / "finetune.json").exists():
            return None
        if model == "story_anydoor":
            total = config.steps
        else:
            total = config.epochs * count_clips(list(self.subject.subject.reference_media))
        done = 0 if self.cfg.finetune == "force" else checkpoint_step(model, folder / "work")
        seconds, source = step_seconds(model, step_kind(model, config), self.device)
        return Planned(entry=entry or model, model=model, steps=max(0, total - done), seconds_per_step=seconds,
                       source=source)

    def plans(self, models: tuple[Model, ...]) -> list[Planned]:
        """Every fine-tune of `models` this run will train (`plan`)."""
        return [p for m in models if (p := self.plan(m)) is not None]

    # ---- the two trainers ------------------------------------------------------------------

    def train_story_anydoor(self, config, work: Path, final: Path) -> int:
        """StoryAnyDoor (Sec. 3.2): AnyDoor fine-tuned on pairs of the subject's reference frames."""
        from storyagent.models.anydoor import AnyDoorPipeline
        from storyagent.models.anydoor.training import StoryAnyDoorTrainer

        ref = self.subject.reference
        # On the GPU for its training only, so the next model finds the memory free.
        with placement.on_device(AnyDoorPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = StoryAnyDoorTrainer(pipe, list(ref.frames), list(ref.masks), work, config,
                                          sources=[str(s) for s in ref.sources], memory=self.memory)
            trainer.resume()
            start, begun = trainer.step, time.perf_counter()
            trainer.train(resume=False, show_progress=self.show_progress)
            self.measured = (trainer.step - start, time.perf_counter() - begun)
            trainer.save_finetune(final)
            return trainer.step

    def train_lora_be(self, config, work: Path, final: Path) -> int:
        """LoRA-BE (Sec. 3.3): DynamiCrafter's LoRA and block-wise embeddings on the subject's clips."""
        if is_wan(self.cfg.video_model):
            steps, self.measured = train_wan_lora_be(self.cfg, config, {config.token: (
                list(self.subject.subject.reference_media), self.masks)}, work, final, self.device, self.show_progress)
            return steps
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline
        from storyagent.models.lora_be import LoRABETrainer, load_subject_clips

        clips = load_subject_clips(list(self.subject.subject.reference_media), segment=self.masks)
        self.masks.release()
        with placement.on_device(DynamiCrafterPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = LoRABETrainer(pipe, config, work, memory=self.memory)
            self.measured = train_timed(trainer, clips, self.show_progress)
            trainer.save(final)
            return trainer.step


def train_timed(trainer, clips, show_progress: bool) -> tuple[int, float]:
    """`LoRABETrainer.train` on `clips`; (steps it took now, seconds they took)."""
    trainer.resume()  # where it goes on from (train resumes again: an adapter's worth of reading)
    start, begun = trainer.step, time.perf_counter()
    trainer.train(clips, show_progress=show_progress)
    return trainer.step - start, time.perf_counter() - begun


class CastFineTunes(Trainings):
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
        self.memory, self.measured = TrainingMemory(low_vram=cfg.low_vram), None

    def __call__(self, ws: Workspace, models: tuple[Model, ...] = ("story_anydoor", "lora_be")) -> dict[str, FineTune]:
        """The fine-tunes in `models` (StoryAnyDoor: one per character), trained where the cache has none;
        recorded in the manifest."""
        found: dict[str, FineTune] = {}
        for entry, work in self.work(models):
            ws.manifest.set_stage("storyboard", "running", f"fine-tuning {entry}")
            found[entry] = work()
        ws.manifest.set_finetunes({k: v.model_dump(mode="json") for k, v in found.items()})
        ws.manifest.set_stage("storyboard", "running")
        return found

    def plans(self, models: tuple[Model, ...]) -> list[Planned]:
        """Every fine-tune of `models` this run will train: each character's StoryAnyDoor the cache lacks, and
        the cast's LoRA-BE (one step per clip of every character, per epoch)."""
        out = []
        if "story_anydoor" in models:
            out += [p for t in self.characters
                    if (p := t.plan("story_anydoor", anydoor_entry(t.member.name, len(self.members)))) is not None]
        if "lora_be" in models:
            config = lora_be_config(self.cfg, self.members)
            folder, _ = self.lora_be_folder(config)
            if self.cfg.finetune == "force" or not (folder / FILES["lora_be"]).exists():
                total = config.epochs * sum(count_clips(list(p.subject.reference_media)) for p in self.cast)
                done = 0 if self.cfg.finetune == "force" else checkpoint_step("lora_be", folder / "work")
                seconds, source = step_seconds("lora_be", "lora_be", self.device)
                out.append(Planned(entry="lora_be", model="lora_be", steps=max(0, total - done),
                                   seconds_per_step=seconds, source=source))
        return out

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
        folder, key = self.lora_be_folder(config)
        cast = [{"name": m.name, "class_word": m.class_word, "subject": p.input_hash}
                for m, p in zip(self.members, self.cast)]
        record: dict[str, object] = {"cast": [c | {"media": [str(f) for f in p.subject.reference_media]}
                                              for c, p in zip(cast, self.cast)], "settings": asdict(config)}
        tune = cached("lora_be", folder, key, self.cfg.finetune == "force",
                      self.with_memory(LABELS["lora_be"], "lora_be",
                                       lambda work, final: self.train_lora_be(config, work, final), record), record)
        return tune.model_copy(update={"tokens": {c.name: c.token for c in config.characters}})

    def lora_be_folder(self, config) -> tuple[Path, str]:
        """The cast's LoRA-BE's cache folder and key."""
        # What the cast is: every character's media (input hash), name and class word, in cast order
        # (the lead's token first); the settings hold the tokens too.
        cast = [{"name": m.name, "class_word": m.class_word, "subject": p.input_hash}
                for m, p in zip(self.members, self.cast)]
        key = hash_json({"model": "lora_be", "cast": cast,
                         "base": weights_fingerprint(resolve_weights(base_weights(self.cfg, "lora_be"))), "settings": asdict(config)})
        return cache_dir("subjects", f"lora_be-{key}"), key

    def train_lora_be(self, config, work: Path, final: Path) -> int:
        """LoRA-BE (Sec. 3.3) for the cast: DynamiCrafter's LoRA and every character's block-wise
        embeddings on all the characters' clips, each labelled with its own token."""
        if is_wan(self.cfg.video_model):
            steps, self.measured = train_wan_lora_be(self.cfg, config, {
                token: (list(t.subject.subject.reference_media), t.masks) for token, t in zip(config.tokens, self.characters)
            }, work, final, self.device, self.show_progress)
            return steps
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
            trainer = LoRABETrainer(pipe, config, work, memory=self.memory)
            self.measured = train_timed(trainer, clips, self.show_progress)
            trainer.save(final)
            return trainer.step

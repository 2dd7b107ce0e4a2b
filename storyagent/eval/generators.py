"""The methods `storyagent eval dataset` compares, each a generator of one shot.

A generator works in two steps per character, so that the dataset protocol can run them as tasks
on different machines (`dataset_ray.py`): `finetune(character, media)` finds or trains what the
character needs and returns it as a picklable record (nothing for the methods that train nothing),
and `use(character, record)` readies the generator for that character's shots. Then a call gets the aligned first ground-truth frame (already in the model's frame, see
`geometry.py`), its subject mask there, the character's reference (from the training episode, never
a test clip), the shot's caption and the number of frames, and returns that many frames of the
same size. Steps: (1) remove the subject, the initial storyboard; (2) redraw the reference subject
into the freed region; (3) animate.

- `animatic`: `StillCompositeBaseline`, CPU and no weights (Telea removal, the reference cut-out
  pasted into the subject's box, held still): a floor, not the paper's method.
- `anydoor`: stock AnyDoor redraw and stock DynamiCrafter (`DiffusionGenerator`).
- `storyagent`: the paper's pipeline (`FineTunedGenerator`): StoryAnyDoor and LoRA-BE fine-tuned
  per character on the training episode (`tools/backends/finetunes.py`, cached by content), the
  caption naming the character by its LoRA-BE token. The paper's Tables 1 and 5 row "StoryAgent".
- `dc-finetuning`: the paper's Table 5 baseline: the same StoryAnyDoor storyboard, animated by
  DynamiCrafter whose image injection module (image context projector and the image branch of
  cross-attention) is fine-tuned on the reference videos, without LoRA-BE
  (`models/dynamicrafter/finetune_image.py`); the caption as it is (no token).
- `lora-dc`: the paper's Table 4 "LoRA-DC" (a user-study row only): as `storyagent`, but
  DynamiCrafter's fine-tune learns no block-wise token embeddings
  (`LoRABEConfig.blockwise_embeddings=False`). `dc` is its deprecated name.

Reference masks (paper, Figs. 2-3: LangSAM finds the subject by its class word): the diffusion
methods mask the reference with LangSAM (`masks_for`: `ProtocolMasks`), every frame of every clip
(LoRA-BE per frame, StoryAnyDoor's frames from the first frame carried through the clip), PororoSV
included. A clip's first frame is the one frame whose mask the dataset knows: there the dataset's
mask stands in where LangSAM misses (finds nothing, no cut-out, or another character: no pixel in
common with the dataset's), labelled so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from storyagent.eval.datasets import SubjectReference
from storyagent.eval.frames import crop_to_box
from storyagent.media import write_png
from storyagent.media.segmentation import cutout_problem
from storyagent.tools.backends.finetunes import SubjectFineTunes
from storyagent.tools.subject import LangSAMMasks

HINTS_FOLDER = "dataset_masks"
"""Beside a character's reference media (a folder the media reader does not list): the dataset's mask
of each clip's first frame, `<clip>.png`, for `ProtocolMasks`."""
HINT_SIDE = 16
"""Frames are matched to a hint on a 16×16 area-averaged thumbnail: noise and compression average out."""
HINT_MATCH = 8.0
"""Largest mean absolute difference (0-255) of the thumbnails at which a frame is taken for a hint's
frame where LangSAM misses it: a decoded first frame differs by its compression (about 1 on real
footage, 4 on the tests' tiny noisy frames); another clip's first frame by far more."""
HINT_SAME = 2.0
"""At most this difference a frame is the hint's frame itself, and the dataset's mask overrides a
LangSAM mask that has no pixel in common with it (another character of the same class word)."""


@dataclass
class ProtocolMasks(LangSAMMasks):
    """LangSAM with the character's class word on every frame, as a run masks its reference; on a
    reference clip's first frame (`hints`: the one frame whose mask the dataset knows) the dataset's
    mask where LangSAM misses it: nothing found or no cut-out (`cutout_problem`), or on that very
    frame another character (no pixel in common with the dataset's)."""

    hints: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    """(frame, its dataset mask) of each reference clip's first frame."""

    @property
    def name(self) -> str:
        """How the masks are made, for the reference's cache key: the class word and the dataset's masks
        name the character (two characters of the same clips differ by them)."""
        import hashlib

        digest = hashlib.sha256(self.class_word.encode())
        for frame, mask in self.hints:
            digest.update(np.ascontiguousarray(frame).tobytes())
            digest.update(np.packbits(mask).tobytes())
        return f"langsam, dataset first-frame masks where it misses ({digest.hexdigest()[:16]})"

    @classmethod
    def for_media(cls, class_word: str, device: str, media: Path | None) -> ProtocolMasks:
        """The masks for a character's reference in `media`, with the hints `write_hints` left there."""
        from storyagent.media import read_image, read_mask

        hints = []
        folder = media / HINTS_FOLDER if media is not None else None
        if folder is not None and folder.is_dir():
            for mask_file in sorted(folder.glob("*.png")):
                frame = media / mask_file.name
                if frame.exists():
                    rgb, _ = read_image(frame)
                    hints.append((rgb, read_mask(mask_file, rgb.shape[:2])))
        return cls(class_word, device=device, hints=hints)

    @staticmethod
    def write_hints(media: Path, first_frames: dict[str, np.ndarray]) -> None:
        """The dataset's first-frame masks by clip stem (each `<stem>.png` beside them in `media`)."""
        folder = media / HINTS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        for stem, mask in first_frames.items():
            write_png(folder / f"{stem}.png", (mask * 255).astype(np.uint8))

    def hint(self, frame: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(the dataset's mask of `frame` at its size, how far the frame is from the hint's), for the
        nearest hint within `HINT_MATCH`; None when no hint's frame is this one."""

        def thumb(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image.astype(np.float32), (HINT_SIDE, HINT_SIDE), interpolation=cv2.INTER_AREA)

        seen = thumb(frame)
        best, mask = HINT_MATCH, None
        for known, known_mask in self.hints:
            diff = float(np.abs(seen - thumb(known)).mean())
            if diff < best:
                best, mask = diff, known_mask
        if mask is None:
            return None
        if mask.shape != frame.shape[:2]:
            mask = cv2.resize(mask.astype(np.uint8), frame.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
        return mask, best

    def __call__(self, frames, fallback=None):
        found = super().__call__(frames, fallback)
        out = []
        for frame, (mask, how) in zip(frames, found):
            known = self.hint(np.asarray(frame)[..., :3]) if self.hints else None
            if known is not None and known[0].any():
                problem = (f"LangSAM found no {self.class_word}" if how != "langsam"
                           else cutout_problem(frame, mask, how))
                if problem is None and known[1] <= HINT_SAME and not (mask & known[0]).any():
                    problem = f"LangSAM's {self.class_word} is another"
                if problem:
                    out.append((known[0], f"dataset mask ({problem})"))
                    continue
            out.append((mask, how))
        return out


@dataclass
class StillCompositeBaseline:
    """Remove (Telea inpainting), redraw (paste the reference cut-out into the subject's box), hold still."""

    name: str = "animatic (CPU: remove, paste, hold still)"
    dilate: int = field(default=3, metadata={"help": "Pixels the removal mask grows by, to take the outline too."})
    weights: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    """(height, width) of the model's frame; None: the protocol's default."""

    def finetune(self, character, media: Path) -> dict[str, dict[str, object]]:
        """Nothing to train."""
        return {}

    def use(self, character, finetunes: dict[str, dict[str, object]]) -> None:
        """Nothing to load."""

    def prepare(self, character, reference: SubjectReference | None, media: Path) -> None:
        self.use(character, self.finetune(character, media))

    def masks_for(self, character, media: Path | None = None) -> None:
        """None: the reference's masks are the dataset's (nothing is trained on them)."""

    def __call__(self, first: np.ndarray, mask: np.ndarray, reference: SubjectReference, text: str,
                 num_frames: int, character: str = "") -> list[np.ndarray]:
        # 1. Remove the subject: the initial storyboard.
        hole = cv2.dilate(mask.astype(np.uint8), np.ones((2 * self.dilate + 1,) * 2, np.uint8))
        board = cv2.inpaint(first, hole, 5, cv2.INPAINT_TELEA)
        # 2. Redraw the reference subject into the subject's box, keeping its aspect ratio.
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sprite = crop_to_box(reference.frames[0], reference.masks[0], 0.0)
        alpha = crop_to_box(reference.masks[0].astype(np.float32), reference.masks[0], 0.0)
        scale = min((x1 - x0) / sprite.shape[1], (y1 - y0) / sprite.shape[0])
        size = (max(1, round(sprite.shape[1] * scale)), max(1, round(sprite.shape[0] * scale)))
        sprite, alpha = cv2.resize(sprite, size, interpolation=cv2.INTER_AREA), cv2.resize(alpha, size)[..., None]
        px, py = x0 + ((x1 - x0) - size[0]) // 2, y1 - size[1]
        region = board[py:py + size[1], px:px + size[0]].astype(np.float32)
        board[py:py + size[1], px:px + size[0]] = (region * (1 - alpha) + sprite * alpha).astype(np.uint8)
        # 3. "Animate": hold the storyboard for the clip's length.
        return [board.copy() for _ in range(num_frames)]


@dataclass
class DiffusionGenerator:
    """Remove the subject (OpenCV inpainting), redraw the reference into the hole (AnyDoor), animate
    the storyboard with the caption (DynamiCrafter). Stock weights from `storyagent.weights`."""

    name: str = "AnyDoor + DynamiCrafter (stock)"
    steps: int | None = field(default=None, metadata={"help": "Denoising steps of both models (default: their own)."})
    seed: int = field(default=0, metadata={"help": "Seed of the redraw and the animation."})
    device: str = field(default="cpu", metadata={"help": "torch device for both models."})
    weights: tuple[str, ...] = ("anydoor", "dynamicrafter-512", "grounding-dino-base", "sam-vit-h")
    """What it loads: the two models, and LangSAM for the reference's masks."""
    trains = False  # a class attribute, not a field: whether `finetune` trains on the GPU

    def __post_init__(self) -> None:
        from storyagent.models.removal import SubjectRemover

        # The models load on first use, not here: a Ray driver builds the generator only to send it
        # to the workers, which may be the only machines with a GPU.
        self.remover = SubjectRemover()
        self.token: str | None = None
        self.fs: int | None = None
        """The fs to sample at when a fine-tune pinned one; None: the pipeline's own."""

    def masks_for(self, character, media: Path | None = None) -> ProtocolMasks:
        """LangSAM with the character's class word: the reference's masks, as the run makes them (with
        the dataset's first-frame masks left in `media` by the protocol)."""
        return ProtocolMasks.for_media(character.class_word, self.device, media)

    def load(self) -> None:
        from storyagent.models.anydoor import AnyDoorPipeline
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline

        self.anydoor = AnyDoorPipeline.from_pretrained(device=self.device)
        self.animator = DynamiCrafterPipeline.from_pretrained().to(self.device)

    @property
    def size(self) -> tuple[int, int]:
        """The base DynamiCrafter's frame (height, width), read from its config when the models are not loaded."""
        if hasattr(self, "animator"):
            s = self.animator.config.sampling
            return s.height, s.width
        from storyagent.models.dynamicrafter import DynamiCrafterConfig
        from storyagent.weights import resolve_weights

        config = resolve_weights("dynamicrafter-512") / "config.json"
        s = DynamiCrafterConfig.from_json(config).sampling if config.exists() else DynamiCrafterConfig().sampling
        return s.height, s.width

    def finetune(self, character, media: Path) -> dict[str, dict[str, object]]:
        """The stock models train nothing per character."""
        return {}

    def use(self, character, finetunes: dict[str, dict[str, object]]) -> None:
        if not hasattr(self, "animator"):
            self.load()

    def prepare(self, character, reference: SubjectReference | None, media: Path) -> None:
        """Find or train what the character needs (`finetune`) and load the models with it (`use`)."""
        self.use(character, self.finetune(character, media))

    def prompt(self, text: str, character: str = "") -> str:
        text = text or "a cartoon scene"
        if self.token is None:
            return text
        # The caption names the character; LoRA-BE's token stands for it.
        pattern = re.compile(rf"\b{re.escape(character)}\b", re.IGNORECASE) if character else None
        return pattern.sub(self.token, text) if pattern and pattern.search(text) else f"{self.token}, {text}"

    def __call__(self, first: np.ndarray, mask: np.ndarray, reference: SubjectReference, text: str,
                 num_frames: int, character: str = "") -> list[np.ndarray]:
        import torch

        if not hasattr(self, "animator"):
            self.load()
        # 1. Remove the subject: the initial storyboard.
        removed = self.remover(first, mask, seed=self.seed)
        # 2. Redraw the reference subject into the hole.
        board = self.anydoor.redraw(reference.frames[0], reference.masks[0], removed.image, removed.mask,
                                    seed=self.seed, num_inference_steps=self.steps, show_progress=False)
        # 3. Animate; pick the ground truth's number of frames, evenly spaced.
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        video = self.animator(image=board, prompt=self.prompt(text, character), num_inference_steps=self.steps or 50,
                              fs=self.fs, generator=generator, output_type="np", show_progress=False).frames[0]
        h, w = first.shape[:2]
        picks = np.linspace(0, len(video) - 1, num_frames).round().astype(int)
        frames = [np.asarray(video[i], dtype=np.uint8) for i in picks]
        # Same size already when `first` is in the model's frame; a no-op then.
        return [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]


VIDEO_FINETUNES = ("lora-be", "lora-dc", "dc-finetuning")
"""How `FineTunedGenerator` fine-tunes DynamiCrafter: LoRA-BE (the paper's), LoRA without block-wise
embeddings (Table 4's LoRA-DC), or the image injection module alone (Table 5's DC-finetuning)."""
IMAGE_INJECTION = "dc_image_injection"
"""The DC-finetuning fine-tune's name in a character's fine-tunes (beside story_anydoor)."""


@dataclass
class FineTunedGenerator(DiffusionGenerator):
    """The paper's pipeline with the character's own StoryAnyDoor and a DynamiCrafter fine-tune
    (`video`), trained once per character on its training episode (and found in the StoryAgent
    cache afterwards)."""

    name: str = "StoryAgent (StoryAnyDoor + LoRA-BE DynamiCrafter)"
    video: str = field(default="lora-be", metadata={"help": "DynamiCrafter's fine-tune: lora-be (the paper's), lora-dc "
                                                   "(LoRA alone, no block-wise embeddings: Table 4's LoRA-DC) or "
                                                   "dc-finetuning (the image injection module alone: Table 5's baseline)."})
    preset: str = field(default="paper", metadata={"help": "Fine-tune preset: paper or quick (tools/backends/finetunes.py)."})
    anydoor_steps: int | None = field(default=None, metadata={"help": "StoryAnyDoor training steps (default: the preset's)."})
    lora_be_epochs: int | None = field(default=None, metadata={"help": "LoRA-BE epochs (default: the preset's; "
                                                               "also DC-finetuning's)."})
    work_dir: Path = field(default=Path("eval-dataset/subjects"), metadata={"help": "Where each character's subject folder goes."})
    show_progress: bool = field(default=True, metadata={"help": "Progress bars of the trainings."})
    trains = True

    def __post_init__(self) -> None:
        from storyagent.models.removal import SubjectRemover

        if self.video not in VIDEO_FINETUNES:
            raise ValueError(f"video must be one of {VIDEO_FINETUNES}, not {self.video!r}")
        self.remover = SubjectRemover()
        self.token = None
        self.fs = None
        self.character: str | None = None
        self.trainings: list[tuple[str, str]] = []
        """(character, model) of every fine-tune trained by this generator (not found in the cache)."""
        self.finetunes: dict[str, dict[str, object]] = {}

    @property
    def video_model(self) -> str:
        """The name of the DynamiCrafter fine-tune in a character's fine-tunes."""
        return IMAGE_INJECTION if self.video == "dc-finetuning" else "lora_be"

    def finetune(self, character, media: Path) -> dict[str, dict[str, object]]:
        """Find or train the character's fine-tunes on the media in `media`: {model: its `FineTune` record}."""
        from storyagent.config import RunConfig
        from storyagent.tools.subject import prepare_subject
        from storyagent.workspace import Workspace

        cfg = RunConfig.build(prompt=f"the {character.name} evaluation", subject=media, name=character.name,
                              class_word=character.class_word, backend="diffusion", seed=self.seed, steps=self.steps,
                              finetune_preset=self.preset, anydoor_steps=self.anydoor_steps,
                              lora_be_epochs=self.lora_be_epochs)
        masks = self.masks_for(character, media)
        with Workspace.open(self.work_dir / character.name, cfg.inputs_record(), resume=True) as ws:
            subject = prepare_subject(ws, cfg, masks)
        tunes = _EvalFineTunes(cfg, subject, masks, self.show_progress, self.video != "lora-dc")
        tunes.device = self.device
        found = {"story_anydoor": tunes.ensure("story_anydoor").model_dump(mode="json")}
        found[self.video_model] = (tunes.image_injection() if self.video == "dc-finetuning"
                                   else tunes.ensure("lora_be").model_dump(mode="json"))
        self.trainings += [(character.name, m) for m, f in found.items() if f["trained_now"]]
        self.finetunes[character.name] = found
        return found

    def use(self, character, finetunes: dict[str, dict[str, object]]) -> None:
        """Load the models with the character's fine-tunes (files on a path every node of a cluster sees)."""
        from storyagent.models.anydoor.finetune import apply_finetune

        self.finetunes.setdefault(character.name, finetunes)
        # Fresh base models per character: a fine-tune is merged into the weights it is applied to.
        self.load()
        self.anydoor = apply_finetune(self.anydoor, finetunes["story_anydoor"]["path"])
        if self.video == "dc-finetuning":
            from storyagent.models.dynamicrafter.finetune_image import (
                apply_image_injection,
            )

            # No subject token: the caption is the prompt, as the paper's baseline has no LoRA-BE.
            self.token = None
            self.fs = apply_image_injection(self.animator, finetunes[IMAGE_INJECTION]["path"]).sample_fs
        else:
            from storyagent.models.lora_be import load_adapter

            self.token = load_adapter(self.animator, finetunes["lora_be"]["path"]).token
        self.character = character.name


class _EvalFineTunes(SubjectFineTunes):
    """The run's fine-tunes, with LoRA-BE's block-wise embeddings switchable (Table 4's LoRA-DC, cached
    under a key of their own when switched off) and DC-finetuning's image injection fine-tune."""

    def __init__(self, cfg, subject, masks, show_progress: bool, blockwise: bool) -> None:
        super().__init__(cfg, subject, masks, show_progress)
        self.blockwise = blockwise

    def folder(self, model, settings):
        if model == "lora_be":
            settings = settings | {"blockwise_embeddings": self.blockwise}
        return super().folder(model, settings)

    def train_lora_be(self, config, work, final):
        return super().train_lora_be(replace(config, blockwise_embeddings=self.blockwise), work, final)

    def image_injection_config(self):
        """DC-finetuning's settings: LoRA-BE's preset (learning rate, epochs), so the two differ only in
        what they train."""
        from storyagent.models.dynamicrafter.finetune_image import ImageInjectionConfig
        from storyagent.tools.backends.finetunes import LORA_BE_PRESETS

        preset = LORA_BE_PRESETS[self.cfg.finetune_preset]
        epochs = self.cfg.lora_be_epochs or int(preset["epochs"])
        return ImageInjectionConfig(class_word=self.member.class_word, learning_rate=float(preset["learning_rate"]),
                                    epochs=epochs, seed=self.cfg.seed)

    def image_injection(self) -> dict[str, object]:
        """The character's DC-finetuning fine-tune (a `FineTune` record as JSON), trained when the cache has
        none; cached as the others are, by the reference media, the base weights and the settings."""
        import json
        import shutil
        import time
        from dataclasses import asdict

        from storyagent.fileio import atomic_write_json
        from storyagent.hashing import hash_json
        from storyagent.tools.backends.finetunes import BASE_WEIGHTS
        from storyagent.weights import cache_dir, resolve_weights, weights_fingerprint

        start = time.perf_counter()
        config = self.image_injection_config()
        key = hash_json({"model": IMAGE_INJECTION, "subject": self.subject.input_hash,
                         "base": weights_fingerprint(resolve_weights(BASE_WEIGHTS["lora_be"])),
                         "settings": asdict(config)})
        folder = cache_dir("subjects", f"{IMAGE_INJECTION}-{key}")
        final, done = folder / f"{IMAGE_INJECTION}.safetensors", folder / "finetune.json"
        if self.cfg.finetune == "force" and folder.exists():
            shutil.rmtree(folder)
        trained_now = not (final.exists() and done.exists())
        if trained_now:
            folder.mkdir(parents=True, exist_ok=True)
            steps = self.train_image_injection(config, folder / "work", final)
            # Written last: a folder without it holds an unfinished training, resumed next time.
            atomic_write_json(done, {"model": IMAGE_INJECTION, "key": key, "steps": steps, "name": self.member.name,
                                     "media": [str(f) for f in self.subject.subject.reference_media],
                                     "settings": asdict(config)})
        steps = int(json.loads(done.read_text(encoding="utf-8"))["steps"])
        return {"model": IMAGE_INJECTION, "path": str(final), "key": key, "trained_now": trained_now, "steps": steps,
                "seconds": round(time.perf_counter() - start, 3)}

    def train_image_injection(self, config, work: Path, final: Path) -> int:
        """DC-finetuning: DynamiCrafter's image injection module on the character's reference clips."""
        from storyagent.models import placement
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline
        from storyagent.models.dynamicrafter.finetune_image import ImageInjectionTrainer
        from storyagent.models.lora_be import load_subject_clips

        # No localization loss and no augmentation: the subject's masks are not used, so none is made.
        segment = self.masks if config.augment else _whole_frames
        clips = load_subject_clips(list(self.subject.subject.reference_media), segment=segment)
        self.masks.release()
        with placement.on_device(DynamiCrafterPipeline.from_pretrained(device="cpu"), self.device) as pipe:
            trainer = ImageInjectionTrainer(pipe, config, work)
            trainer.train(clips, show_progress=self.show_progress)
            trainer.save(final)
            return trainer.step


def _whole_frames(frames: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    """A stand-in segmenter for training that uses no mask."""
    return [(np.ones(f.shape[:2], bool), "not used (DC-finetuning has no localization loss)") for f in frames]

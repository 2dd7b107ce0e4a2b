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
  per character on the training episode (`tools/finetunes.py`, cached by content), the caption
  naming the character by its LoRA-BE token.
- `dc`: the "DC-lora-only" ablation of the authors' comparison page: as `storyagent`, but DynamiCrafter's fine-tune learns no
  block-wise token embeddings (`LoRABEConfig.blockwise_embeddings=False`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from storyagent.eval.datasets import SubjectReference
from storyagent.eval.frames import crop_to_box
from storyagent.tools.backends.finetunes import SubjectFineTunes


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
    weights: tuple[str, ...] = ("anydoor", "dynamicrafter-512")
    trains = False  # a class attribute, not a field: whether `finetune` trains on the GPU

    def __post_init__(self) -> None:
        from storyagent.models.removal import SubjectRemover

        # The models load on first use, not here: a Ray driver builds the generator only to send it
        # to the workers, which may be the only machines with a GPU.
        self.remover = SubjectRemover()
        self.token: str | None = None

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
                              generator=generator, output_type="np", show_progress=False).frames[0]
        h, w = first.shape[:2]
        picks = np.linspace(0, len(video) - 1, num_frames).round().astype(int)
        frames = [np.asarray(video[i], dtype=np.uint8) for i in picks]
        # Same size already when `first` is in the model's frame; a no-op then.
        return [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]


@dataclass
class FineTunedGenerator(DiffusionGenerator):
    """The paper's pipeline with the character's own StoryAnyDoor and LoRA-BE, trained once per
    character on its training episode (and found in the StoryAgent cache afterwards)."""

    name: str = "StoryAgent (StoryAnyDoor + LoRA-BE DynamiCrafter)"
    blockwise_embeddings: bool = field(default=True, metadata={"help": "False: the DC-lora-only ablation (LoRA alone, no block-wise embeddings)."})
    preset: str = field(default="paper", metadata={"help": "Fine-tune preset: paper or quick (tools/finetunes.py)."})
    anydoor_steps: int | None = field(default=None, metadata={"help": "StoryAnyDoor training steps (default: the preset's)."})
    lora_be_epochs: int | None = field(default=None, metadata={"help": "LoRA-BE epochs (default: the preset's)."})
    work_dir: Path = field(default=Path("eval-dataset/subjects"), metadata={"help": "Where each character's subject folder goes."})
    show_progress: bool = field(default=True, metadata={"help": "Progress bars of the trainings."})
    trains = True

    def __post_init__(self) -> None:
        from storyagent.models.removal import SubjectRemover

        self.remover = SubjectRemover()
        self.token = None
        self.character: str | None = None
        self.trainings: list[tuple[str, str]] = []
        """(character, model) of every fine-tune trained by this generator (not found in the cache)."""
        self.finetunes: dict[str, dict[str, object]] = {}

    def finetune(self, character, media: Path) -> dict[str, dict[str, object]]:
        """Find or train the character's fine-tunes on the media in `media`: {model: its `FineTune` record}."""
        from storyagent.config import RunConfig
        from storyagent.tools.subject import LangSAMMasks, prepare_subject
        from storyagent.workspace import Workspace

        cfg = RunConfig.build(prompt=f"the {character.name} evaluation", subject=media, name=character.name,
                              class_word=character.class_word, backend="diffusion", seed=self.seed, steps=self.steps,
                              finetune_preset=self.preset, anydoor_steps=self.anydoor_steps,
                              lora_be_epochs=self.lora_be_epochs)
        masks = LangSAMMasks(character.class_word, device=self.device)
        with Workspace.open(self.work_dir / character.name, cfg.inputs_record(), resume=True) as ws:
            subject = prepare_subject(ws, cfg, masks)
        tunes = _EvalFineTunes(cfg, subject, masks, self.show_progress, self.blockwise_embeddings)
        tunes.device = self.device
        found = {m: tunes.ensure(m) for m in ("story_anydoor", "lora_be")}
        self.trainings += [(character.name, m) for m, f in found.items() if f.trained_now]
        self.finetunes[character.name] = {m: f.model_dump(mode="json") for m, f in found.items()}
        return self.finetunes[character.name]

    def use(self, character, finetunes: dict[str, dict[str, object]]) -> None:
        """Load the models with the character's fine-tunes (files on a path every node of a cluster sees)."""
        from storyagent.models.anydoor.finetune import apply_finetune
        from storyagent.models.lora_be import load_adapter

        self.finetunes.setdefault(character.name, finetunes)
        # Fresh base models per character: a fine-tune is merged into the weights it is applied to.
        self.load()
        self.anydoor = apply_finetune(self.anydoor, finetunes["story_anydoor"]["path"])
        self.token = load_adapter(self.animator, finetunes["lora_be"]["path"]).token
        self.character = character.name


class _EvalFineTunes(SubjectFineTunes):
    """The run's fine-tunes, with LoRA-BE's block-wise embeddings switchable (the DC-lora-only ablation),
    cached under a key of their own when switched off."""

    def __init__(self, cfg, subject, masks, show_progress: bool, blockwise: bool) -> None:
        super().__init__(cfg, subject, masks, show_progress)
        self.blockwise = blockwise

    def folder(self, model, settings):
        if model == "lora_be":
            settings = settings | {"blockwise_embeddings": self.blockwise}
        return super().folder(model, settings)

    def train_lora_be(self, config, work, final):
        return super().train_lora_be(replace(config, blockwise_embeddings=self.blockwise), work, final)

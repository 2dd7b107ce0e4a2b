"""StoryAnyDoor: fine-tune AnyDoor on the user's reference frames (StoryAgent, Sec. 3.2).

Each step draws a pair from the reference frames: the subject cut from one frame is the
reference, another frame (with its mask) is the target, as AnyDoor trains on video datasets
(upstream `datasets/base.py`, `process_pairs`). The loss is the eps-prediction MSE of the latent
diffusion model. What trains follows upstream `ControlLDM.configure_optimizers` with
`sd_locked=False`: the whole ControlNet, the UNet decoder (up blocks and output head) and the
DINOv2 projector; DINOv2, the VAE and the UNet encoder/middle stay frozen. The LoRA option trains
rank-r adapters on the attention projections of those same parts instead (plus the small
projector), for a fraction of the optimizer memory.

Upstream's per-sample training recipe, kept here: the reference margin and target box/crop
ratios drawn in tenths, a horizontal flip and brightness/contrast change of the reference (the
collage's high-frequency map is computed from the augmented reference), the hint's mask channel
replaced by a perturbed target mask for 70 % of samples, and the timestep drawn per sample with a
bias that depends on how far apart the two frames are (`sample_timestep`). Upstream never drops
the reference during training (no `ucg_training` in its config), so neither does this trainer.

`save_finetune` writes only what trained (one safetensors file); `apply_finetune` puts it onto a
freshly loaded base pipeline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from storyagent.errors import InputError
from storyagent.models.anydoor.pipeline import AnyDoorPipeline
from storyagent.models.anydoor.preprocessing import (
    PreprocessConfig,
    augment_reference,
    perturb_mask,
    prepare_reference,
    prepare_target,
)
from storyagent.progress import make_progress

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)$")
FINETUNE_FORMAT = "storyagent.story_anydoor/1"
"""`format` entry of a fine-tune file's metadata; `apply_finetune` refuses other files."""
LORA_TARGETS = {
    "controlnet": r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
    "unet": r"up_blocks\..*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
}
"""Modules that get LoRA adapters: every attention projection of the ControlNet, those of the UNet decoder."""
LORA_KEY = re.compile(r"^(.*)\.lora_([AB])\.default\.weight$")
MODULES = ("controlnet", "unet", "image_encoder", "vae")

PairKind = Literal["video", "still", "multiview"]
"""How the two frames of a pair relate, after upstream's `dynamic` flag of each dataset:
two frames of one clip ("video", upstream 1: coarse videos), one photo with itself ("still",
upstream 0: static images), two different files of the subject ("multiview", upstream 2: fine
multi-view images)."""

TIMESTEP_RANGES: dict[str, tuple[float, float]] = {"video": (0.5, 1.0), "still": (0.0, 0.5),
                                                   "multiview": (0.0, 1.0)}
"""Share of the schedule each pair kind's biased timesteps come from (upstream `sample_timestep`)."""

Preset = Literal["paper", "quick"]


@dataclass
class StoryAnyDoorTrainingConfig:
    """Fine-tuning settings (defaults: the paper's StoryAnyDoor on upstream AnyDoor's recipe)."""

    steps: int = 20_000
    """Optimizer steps in total (the paper uses 20 000)."""
    learning_rate: float = 1e-5
    """Adam learning rate (the paper's and upstream AnyDoor's)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay. Upstream's `configure_optimizers` builds `torch.optim.AdamW`
    with torch's default, 0.01; at 1e-5 it shrinks weights by 0.2 % over 20 000 steps."""
    batch_size: int = 1
    """Pairs per step. Upstream pretrains with 16 per GPU on 2 GPUs; the paper gives no batch
    for StoryAnyDoor, and 1 keeps a full fine-tune on one GPU with a handful of frames."""
    use_lora: bool = False
    """Train LoRA adapters on the attention projections instead of the full ControlNet and decoder."""
    lora_rank: int = 16
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / rank)."""
    checkpoint_every: int = 500
    """Save a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Older checkpoints beyond this many are deleted."""
    seed: int = 0
    """Seeds pair sampling, augmentation, timesteps, noise and the LoRA initialisation; with it a
    resumed run matches an uninterrupted one."""
    reference_margin: tuple[float, float] = (1.1, 1.5)
    """White margin around the reference subject, drawn like upstream (`randint(11, 15) / 10`): a
    multiple of 0.1 in [low, high), i.e. 1.1 to 1.4."""
    target_box_expand: tuple[float, float] = (1.1, 1.2)
    """Target box growth, drawn in tenths in [low, high) as upstream's `expand_bbox(ratio=[1.1, 1.2])`
    does, which makes it always 1.1."""
    target_crop_expand: tuple[float, float] = (1.3, 3.0)
    """Crop-around-box factor, drawn in tenths in [low, high) as upstream's
    `expand_bbox(ratio=[1.3, 3.0])`: 1.3 to 2.9."""
    flip_probability: float = 0.5
    """Chance of mirroring the reference (upstream `aug_data_mask`: HorizontalFlip p=0.5). Upstream's
    rotation there is commented out, so there is none here."""
    brightness_contrast_probability: float = 0.5
    """Chance of a brightness/contrast change of the reference (upstream `aug_data_mask`:
    albumentations RandomBrightnessContrast, p=0.5)."""
    brightness_limit: float = 0.2
    """Brightness shift drawn in [-limit, limit] times 255 (albumentations' default, upstream's)."""
    contrast_limit: float = 0.2
    """Contrast factor drawn in [1 - limit, 1 + limit] (albumentations' default, upstream's)."""
    perturbed_mask_probability: float = 0.7
    """Chance that the hint's mask channel is a perturbed target mask instead of the box (upstream
    `process_pairs`), so the model also follows loose, hand-drawn-like regions."""
    perturbed_mask_iou: tuple[float, float] = (0.3, 0.99)
    """Range of the aimed IoU between perturbed and true target mask (upstream `perturb_mask`)."""
    uniform_timestep_probability: float = 0.3
    """Share of timesteps drawn uniformly over the schedule; the rest come from the pair kind's
    range in `TIMESTEP_RANGES` (upstream `sample_timestep`)."""
    mixed_precision: bool = True
    """bfloat16 autocast on CUDA (upstream trains in fp16 AMP; bf16 needs no loss scaling); ignored on CPU."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Crop sizes; target_size and reference_size are set from the model."""

    @classmethod
    def preset(cls, name: Preset, **overrides: Any) -> StoryAnyDoorTrainingConfig:
        """Named settings, with `overrides` on top.

        - `paper`: the paper's StoryAnyDoor, a full fine-tune (ControlNet, UNet decoder, projector)
          with Adam at 1e-5 for 20 000 steps.
        - `quick`: LoRA rank 16 (alpha 16) at 1e-4 for 1 000 steps, checkpoints every 250. A
          low-rank update moves the weights far less per step than a full fine-tune, so it takes
          the 10x learning rate usual for diffusion LoRAs (e.g. diffusers' DreamBooth-LoRA
          example); 1 000 steps is still dozens of passes over a subject's handful of frames, at a
          twentieth of the paper's steps, and the optimizer holds state for the adapters only.
          It is a first look, not evaluated against the paper's setting.
        """
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            "quick": {"use_lora": True, "lora_rank": 16, "lora_alpha": 16, "learning_rate": 1e-4,
                      "steps": 1_000, "checkpoint_every": 250},
        }
        if name not in presets:
            raise InputError(f"Unknown StoryAnyDoor preset {name!r}; use one of {', '.join(presets)}.")
        return cls(**(presets[name] | overrides))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples as lists)."""
        return _jsonable(asdict(self))


def sample_timestep(rng: np.random.Generator, kind: PairKind, num_timesteps: int = 1000,
                    uniform_probability: float = 0.3) -> int:
    """One training timestep for a pair of `kind`: uniform over the schedule with
    `uniform_probability`, otherwise uniform over the kind's range (`TIMESTEP_RANGES`).

    Upstream states no reason; in effect video pairs, whose reference and target differ in pose,
    train mostly at the noisy steps that settle the layout, and still pairs (reference = target)
    at the clean steps that settle detail.
    """
    if rng.random() < uniform_probability:
        return int(rng.integers(num_timesteps))
    low, high = TIMESTEP_RANGES[kind]
    return int(rng.integers(int(num_timesteps * low), int(num_timesteps * high)))


def draw_ratio(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A crop ratio from `bounds` as upstream draws them (`randint(low * 10, high * 10) / 10`): a
    multiple of 0.1 in [low, high), or `low` when the range holds no other."""
    low, high = round(bounds[0] * 10), round(bounds[1] * 10)
    return (int(rng.integers(low, high)) if high > low else low) / 10


def _named_parameters(pipe: AnyDoorPipeline) -> dict[str, torch.nn.Parameter]:
    """Every parameter, prefixed by its module (controlnet., unet., image_encoder., vae.)."""
    return {f"{name}.{key}": param for name in MODULES for key, param in getattr(pipe, name).named_parameters()}


def trainable_parameters(pipe: AnyDoorPipeline) -> dict[str, torch.nn.Parameter]:
    """Named parameters that require grad, prefixed by module (controlnet., unet., image_encoder.)."""
    return {key: param for key, param in _named_parameters(pipe).items() if param.requires_grad}


def add_lora(pipe: AnyDoorPipeline, rank: int, alpha: int, seed: int = 0) -> None:
    """Add LoRA adapters at `LORA_TARGETS`; their random start comes from `seed`, not the global RNG."""
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, pattern in LORA_TARGETS.items():
            getattr(pipe, name).add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                                       target_modules=pattern))


def mark_trainable(pipe: AnyDoorPipeline, config: StoryAnyDoorTrainingConfig) -> None:
    """Freeze everything, then unfreeze (or add LoRA to) the parts AnyDoor fine-tunes."""
    for name in MODULES:
        getattr(pipe, name).requires_grad_(False)
    pipe.image_encoder.projector.requires_grad_(True)
    if config.use_lora:
        add_lora(pipe, config.lora_rank, config.lora_alpha, config.seed)
        return
    pipe.controlnet.requires_grad_(True)
    # Upstream's ControlNet never applies its first conv to the latent (see convert.py); keep it zero.
    pipe.controlnet.conv_in.requires_grad_(False)
    pipe.unet.up_blocks.requires_grad_(True)
    pipe.unet.conv_norm_out.requires_grad_(True)
    pipe.unet.conv_out.requires_grad_(True)


class PairSampler:
    """Reference/target pairs from one subject's frames and masks, as model-ready tensors.

    `sources` names each frame's file. A frame from a file with several frames (a video) is paired
    with another frame of that file; a frame that is its file's only one (a photo) is paired with
    any frame, itself included: with itself it is a still pair, with another file's frame a
    multi-view pair (see `PairKind`). Without `sources` all frames count as one clip and every
    pair is two different frames of it (one frame: itself). Upstream's video datasets also pair a
    frame with a later one at least a tenth of the clip away; with the few frames sampled from
    each of the user's clips, any other frame is that far, and the order makes no difference to
    the model. Upstream's dataset filters (mask area, connectivity, box size) are not applied: the
    user's frames are all there is to learn from.
    """

    def __init__(self, frames: list[np.ndarray], masks: list[np.ndarray], config: StoryAnyDoorTrainingConfig,
                 target_size: int, reference_size: int, sources: Sequence[str | os.PathLike[str]] | None = None,
                 num_timesteps: int = 1000) -> None:
        if len(frames) == 0 or len(frames) != len(masks):
            raise InputError("Fine-tuning needs at least one reference frame with a subject mask per frame.")
        if sources is not None and len(sources) != len(frames):
            raise InputError(f"Fine-tuning got {len(sources)} frame sources for {len(frames)} frames; "
                             "give one source file per frame.")
        self.frames, self.masks, self.config, self.num_timesteps = frames, masks, config, num_timesteps
        self.settings = replace(config.preprocess, target_size=target_size, reference_size=reference_size)
        keys = [os.fspath(s) for s in sources] if sources is not None else [""] * len(frames)
        files: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            files.setdefault(key, []).append(i)
        self.clip = [np.array(files[key]) for key in keys]  # the frames of frame i's file
        self.by_source = sources is not None

    def pair(self, rng: np.random.Generator) -> tuple[int, int, PairKind]:
        """(reference frame, target frame, kind) of one training pair."""
        i = int(rng.integers(len(self.frames)))
        clip = self.clip[i]
        if len(clip) > 1:
            others = clip[clip != i]
            return i, int(others[rng.integers(len(others))]), "video"
        if not self.by_source:
            return i, i, "still"
        j = int(rng.integers(len(self.frames)))
        return i, j, "still" if j == i else "multiview"

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        i, j, kind = self.pair(rng)
        settings = replace(self.settings, reference_margin=draw_ratio(rng, c.reference_margin))
        reference = prepare_reference(self.frames[i], self.masks[i], settings)
        flip = rng.random() < c.flip_probability
        alpha, beta = 1.0, 0.0
        if rng.random() < c.brightness_contrast_probability:
            alpha = 1.0 + rng.uniform(-c.contrast_limit, c.contrast_limit)
            beta = rng.uniform(-c.brightness_limit, c.brightness_limit)
        reference = augment_reference(reference, settings, flip=flip, alpha=alpha, beta=beta)
        region = None
        if rng.random() < c.perturbed_mask_probability:
            region = partial(perturb_mask, rng=rng, iou_range=c.perturbed_mask_iou)
        target = prepare_target(self.frames[j], self.masks[j], reference, settings,
                                box_expand=draw_ratio(rng, c.target_box_expand),
                                crop_expand=draw_ratio(rng, c.target_crop_expand), region_from_mask=region)
        t = sample_timestep(rng, kind, self.num_timesteps, c.uniform_timestep_probability)
        return {
            "reference": torch.from_numpy(reference.image).permute(2, 0, 1).float() / 255.0,  # (3, 224, 224)
            "hint": torch.from_numpy(target.hint).permute(2, 0, 1),  # (4, S, S)
            "target": torch.from_numpy(target.image).permute(2, 0, 1),  # (3, S, S) in [-1, 1]
            "timestep": torch.tensor(t, dtype=torch.long),
        }

    def batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, step])  # per-step stream: resume-exact
        items = [self.sample(rng) for _ in range(batch_size)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class StoryAnyDoorTrainer:
    """Fine-tunes an `AnyDoorPipeline` in place; checkpoints into `output_dir/checkpoint-STEP/`.

    `sources` is frame i's source file (e.g. `ReferenceMedia.sources`); it decides which frames
    pair up and the timestep range of each pair (see `PairSampler`). Without it the frames are
    taken as one clip.
    """

    def __init__(self, pipe: AnyDoorPipeline, frames: list[np.ndarray], masks: list[np.ndarray],
                 output_dir: str | os.PathLike[str], config: StoryAnyDoorTrainingConfig | None = None,
                 sources: Sequence[str | os.PathLike[str]] | None = None) -> None:
        self.pipe, self.config = pipe, config or StoryAnyDoorTrainingConfig()
        self.output_dir = Path(output_dir)
        self.sampler = PairSampler(frames, masks, self.config, target_size=pipe.config.image_size,
                                   reference_size=pipe.config.dinov2.input_size, sources=sources,
                                   num_timesteps=pipe.scheduler.config.num_train_timesteps)
        mark_trainable(pipe, self.config)
        self.params = trainable_parameters(pipe)
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=self.config.learning_rate,
                                           weight_decay=self.config.weight_decay)
        self.step = 0

    # ------------------------------------------------------------------ one step
    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        pipe, device = self.pipe, self.pipe.device
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed * 1_000_003 + step)
        target, hint, reference, t = (batch[k].to(device) for k in ("target", "hint", "reference", "timestep"))
        with torch.no_grad():
            posterior = pipe.vae.encode(target.to(pipe.vae.dtype)).latent_dist
            eps_sample = torch.randn(posterior.mean.shape, generator=gen).to(device, posterior.mean.dtype)
            latents = (posterior.mean + posterior.std * eps_sample) * pipe.config.diffusion.scale_factor
            features = pipe.image_encoder.features(reference)  # DINOv2 is frozen
        context = pipe.image_encoder.projector(features)
        noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
        noisy = pipe.scheduler.add_noise(latents, noise, t)
        eps = pipe.predict_noise(noisy, t, context, hint.to(latents.dtype))
        return F.mse_loss(eps.float(), noise.float())

    def train_step(self) -> float:
        for name in ("controlnet", "unet"):
            getattr(self.pipe, name).train()
        batch = self.sampler.batch(self.step, self.config.batch_size)
        autocast = self.config.mixed_precision and self.pipe.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = self.loss(batch, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    # ------------------------------------------------------------------ loop, checkpoints, resume
    def train(self, steps: int | None = None, resume: bool = True, show_progress: bool = True) -> list[float]:
        """Train up to `steps` (default: the config's) in total; returns this call's losses.

        The pipeline is left in eval mode, ready to redraw with what was trained.
        """
        total = steps or self.config.steps
        if resume:
            self.resume()
        losses: list[float] = []
        with make_progress(disable=not show_progress) as progress:
            task = progress.add_task("StoryAnyDoor fine-tuning", total=total, completed=self.step, status="")
            while self.step < total:
                losses.append(self.train_step())
                progress.update(task, completed=self.step, status=f"loss {losses[-1]:.4f}")
                if self.step % self.config.checkpoint_every == 0 or self.step == total:
                    self.save_checkpoint()
        for name in MODULES:
            getattr(self.pipe, name).eval()
        return losses

    def _trained_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.params.items()}

    def save_checkpoint(self) -> Path:
        from storyagent.fileio import atomic_path, atomic_save_safetensors, atomic_write_json

        folder = self.output_dir / f"checkpoint-{self.step}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(folder / "trainable.safetensors", self._trained_tensors())
        with atomic_path(folder / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)
        # written last: a folder without state.json is an interrupted save and is ignored
        atomic_write_json(folder / "state.json", {"step": self.step, "config": self.config.to_dict()})
        self._prune()
        return folder

    def latest_checkpoint(self) -> Path | None:
        found = [(int(m.group(1)), p) for p in self.output_dir.glob("checkpoint-*")
                 if (m := CHECKPOINT_PATTERN.search(p.name)) and (p / "state.json").is_file()]
        return max(found)[1] if found else None

    def resume(self, folder: str | os.PathLike[str] | None = None) -> bool:
        """Load the latest (or given) checkpoint; returns False when there is none."""
        from safetensors.torch import load_file

        from storyagent.weights import load_pickled_state_dict

        path = Path(folder) if folder is not None else self.latest_checkpoint()
        if path is None:
            return False
        saved = load_file(str(path / "trainable.safetensors"))
        if set(saved) != set(self.params):
            raise InputError(f"Checkpoint {path} was made with other trainable parts (LoRA on/off?); "
                             "start a new output folder or match the settings.")
        _copy_into(self.params, saved)
        self.optimizer.load_state_dict(load_pickled_state_dict(path / "optimizer.pt"))
        self.step = int(json.loads((path / "state.json").read_text())["step"])
        return True

    def _prune(self) -> None:
        import shutil

        found = sorted((int(m.group(1)), p) for p in self.output_dir.glob("checkpoint-*")
                       if (m := CHECKPOINT_PATTERN.search(p.name)))
        for _, path in found[:-self.config.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)

    def save_finetune(self, path: str | os.PathLike[str]) -> Path:
        """Write what was trained, and nothing else, to the safetensors file `path` (atomically).

        The file's metadata says how to put it back (`apply_finetune`): LoRA or not, rank, alpha,
        the step and the training settings.
        """
        from storyagent.fileio import atomic_save_safetensors

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {"format": FINETUNE_FORMAT, "step": self.step, "use_lora": self.config.use_lora,
                "lora_rank": self.config.lora_rank, "lora_alpha": self.config.lora_alpha,
                "config": self.config.to_dict()}
        atomic_save_safetensors(path, self._trained_tensors(), metadata={"storyagent": json.dumps(info)})
        return path

    def export(self, folder: str | os.PathLike[str]) -> Path:
        """Save the fine-tuned pipeline (LoRA merged) where `AnyDoorPipeline.from_pretrained` reads it."""
        if self.config.use_lora:
            for module in (self.pipe.controlnet, self.pipe.unet):
                _merge_lora(module)
        self.pipe.save_pretrained(folder)
        return Path(folder)


def apply_finetune(pipe: AnyDoorPipeline, path: str | os.PathLike[str]) -> AnyDoorPipeline:
    """Put a fine-tune written by `StoryAnyDoorTrainer.save_finetune` onto `pipe` (a freshly loaded
    base pipeline of the same shape) and return it, LoRA merged, in eval mode, nothing requiring grad.

    A file that is not such a fine-tune, or was made for another model shape, is refused with an
    `InputError` before `pipe` is touched.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("storyagent", "{}"))
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable StoryAnyDoor fine-tune ({exc}).") from exc
    if info.get("format") != FINETUNE_FORMAT:
        raise InputError(f"{path} is not a StoryAnyDoor fine-tune (written by StoryAnyDoorTrainer.save_finetune).")
    _check_fits(pipe, tensors, info["lora_rank"] if info["use_lora"] else None, path)
    if info["use_lora"]:
        add_lora(pipe, info["lora_rank"], info["lora_alpha"])
    _copy_into(_named_parameters(pipe), tensors)
    if info["use_lora"]:
        for module in (pipe.controlnet, pipe.unet):
            _merge_lora(module)
    for name in MODULES:
        getattr(pipe, name).eval().requires_grad_(False)
    return pipe


def _check_fits(pipe: AnyDoorPipeline, tensors: dict[str, torch.Tensor], lora_rank: int | None, path: Path) -> None:
    """Every tensor of the fine-tune has a parameter of its shape in `pipe` (LoRA ones: a base layer
    they fit); raises InputError naming the first that does not."""
    shapes = {key: tuple(param.shape) for key, param in _named_parameters(pipe).items()}
    for key, tensor in tensors.items():
        lora = LORA_KEY.match(key) if lora_rank is not None else None
        want = shapes.get(lora.group(1) + ".weight" if lora else key)
        if lora and want is not None:  # A is (rank, in), B is (out, rank) of the base (out, in) weight
            want = (lora_rank, want[1]) if lora.group(2) == "A" else (want[0], lora_rank)
        if want != tuple(tensor.shape):
            raise InputError(f"{path} was made for another AnyDoor model shape ({key}: "
                             f"{tuple(tensor.shape)} in the file, {'absent' if want is None else want} here).")


def _copy_into(params: dict[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor.to(params[key].device, params[key].dtype))


def _merge_lora(module: torch.nn.Module) -> None:
    """Fold the LoRA deltas into the base weights and drop the adapter layers."""
    from peft.tuners.lora import LoraLayer

    for name, child in list(module.named_modules()):
        if isinstance(child, LoraLayer):
            child.merge()
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], child.get_base_layer())


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_jsonable(v) for v in obj]
    return obj

"""StoryAnyDoor: fine-tune AnyDoor on the user's reference frames (StoryAgent, Sec. 3.2).

Each step draws a pair from the reference frames: the subject cut from one frame is the
reference, another frame (with its mask) is the target, exactly as AnyDoor trains on video
datasets. The loss is the eps-prediction MSE of the latent diffusion model. What trains follows
upstream `ControlLDM.configure_optimizers` with `sd_locked=False`: the whole ControlNet, the UNet
decoder (up blocks and output head) and the DINOv2 projector; DINOv2, the VAE and the UNet
encoder/middle stay frozen. The LoRA option trains rank-r adapters on the attention projections
of those same parts instead (plus the small projector), for a fraction of the optimizer memory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from storyagent.errors import InputError
from storyagent.models.anydoor.pipeline import AnyDoorPipeline
from storyagent.models.anydoor.preprocessing import PreprocessConfig, prepare_reference, prepare_target
from storyagent.progress import make_progress

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)$")


@dataclass
class StoryAnyDoorTrainingConfig:
    """Fine-tuning settings (defaults: the paper's StoryAnyDoor)."""

    steps: int = 20_000
    """Optimizer steps in total (the paper uses 20 000)."""
    learning_rate: float = 1e-5
    """Adam learning rate (upstream AnyDoor's)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay; 0 is plain Adam."""
    batch_size: int = 1
    """Pairs per step."""
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
    """Seeds pair sampling, timesteps and noise; with it a resumed run matches an uninterrupted one."""
    reference_margin: tuple[float, float] = (1.1, 1.5)
    """Range of the white margin around the reference subject (upstream training draws 1.1 to 1.5)."""
    target_box_expand: tuple[float, float] = (1.1, 1.2)
    """Range of the target box growth."""
    target_crop_expand: tuple[float, float] = (1.3, 3.0)
    """Range of the crop-around-box factor."""
    flip_probability: float = 0.5
    """Chance of mirroring the reference crop (upstream augmentation)."""
    mixed_precision: bool = True
    """bfloat16 autocast on CUDA; ignored on CPU."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Crop sizes; target_size is set from the model."""


def trainable_parameters(pipe: AnyDoorPipeline) -> dict[str, torch.nn.Parameter]:
    """Named parameters that require grad, prefixed by module (controlnet., unet., image_encoder.)."""
    named = {}
    for name in ("controlnet", "unet", "image_encoder", "vae"):
        for key, param in getattr(pipe, name).named_parameters():
            if param.requires_grad:
                named[f"{name}.{key}"] = param
    return named


def mark_trainable(pipe: AnyDoorPipeline, config: StoryAnyDoorTrainingConfig) -> None:
    """Freeze everything, then unfreeze (or add LoRA to) the parts AnyDoor fine-tunes."""
    for module in (pipe.unet, pipe.controlnet, pipe.vae, pipe.image_encoder):
        module.requires_grad_(False)
    pipe.image_encoder.projector.requires_grad_(True)
    if config.use_lora:
        from peft import LoraConfig

        def lora(pattern: str) -> LoraConfig:
            return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, init_lora_weights="gaussian",
                              target_modules=pattern)

        pipe.controlnet.add_adapter(lora(r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)"))
        pipe.unet.add_adapter(lora(r"up_blocks\..*attn[12]\.(to_q|to_k|to_v|to_out\.0)"))
        return
    pipe.controlnet.requires_grad_(True)
    # Upstream's ControlNet never applies its first conv to the latent (see convert.py); keep it zero.
    pipe.controlnet.conv_in.requires_grad_(False)
    pipe.unet.up_blocks.requires_grad_(True)
    pipe.unet.conv_norm_out.requires_grad_(True)
    pipe.unet.conv_out.requires_grad_(True)


class PairSampler:
    """Reference/target pairs from one subject's frames and masks, as model-ready tensors."""

    def __init__(self, frames: list[np.ndarray], masks: list[np.ndarray], config: StoryAnyDoorTrainingConfig,
                 target_size: int, reference_size: int) -> None:
        if len(frames) == 0 or len(frames) != len(masks):
            raise InputError("Fine-tuning needs at least one reference frame with a subject mask per frame.")
        self.frames, self.masks, self.config = frames, masks, config
        self.settings = PreprocessConfig(**{**asdict(config.preprocess), "target_size": target_size,
                                              "reference_size": reference_size})

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        i = int(rng.integers(len(self.frames)))
        # another frame when there is one: the subject seen from a different pose/light
        j = int(rng.integers(len(self.frames) - 1)) if len(self.frames) > 1 else i
        j = j + (j >= i) if len(self.frames) > 1 else i
        settings = PreprocessConfig(**{**asdict(self.settings), "reference_margin": rng.uniform(*c.reference_margin)})
        reference = prepare_reference(self.frames[i], self.masks[i], settings)
        if rng.random() < c.flip_probability:
            reference.image, reference.mask = reference.image[:, ::-1].copy(), reference.mask[:, ::-1].copy()
            reference.detail = reference.detail[:, ::-1].copy()
        target = prepare_target(self.frames[j], self.masks[j], reference, settings,
                                box_expand=rng.uniform(*c.target_box_expand),
                                crop_expand=rng.uniform(*c.target_crop_expand))
        return {
            "reference": torch.from_numpy(reference.image).permute(2, 0, 1).float() / 255.0,  # (3, 224, 224)
            "hint": torch.from_numpy(target.hint).permute(2, 0, 1),  # (4, S, S)
            "target": torch.from_numpy(target.image).permute(2, 0, 1),  # (3, S, S) in [-1, 1]
        }

    def batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, step])  # per-step stream: resume-exact
        items = [self.sample(rng) for _ in range(batch_size)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class StoryAnyDoorTrainer:
    """Fine-tunes an `AnyDoorPipeline` in place; checkpoints into `output_dir/checkpoint-STEP/`."""

    def __init__(self, pipe: AnyDoorPipeline, frames: list[np.ndarray], masks: list[np.ndarray],
                 output_dir: str | os.PathLike[str], config: StoryAnyDoorTrainingConfig | None = None) -> None:
        self.pipe, self.config = pipe, config or StoryAnyDoorTrainingConfig()
        self.output_dir = Path(output_dir)
        self.sampler = PairSampler(frames, masks, self.config, target_size=pipe.config.image_size,
                                   reference_size=pipe.config.dinov2.input_size)
        mark_trainable(pipe, self.config)
        self.params = trainable_parameters(pipe)
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=self.config.learning_rate,
                                           weight_decay=self.config.weight_decay)
        self.step = 0

    # ------------------------------------------------------------------ one step
    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        pipe, device = self.pipe, self.pipe.device
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed * 1_000_003 + step)
        target, hint, reference = (batch[k].to(device) for k in ("target", "hint", "reference"))
        with torch.no_grad():
            posterior = pipe.vae.encode(target.to(pipe.vae.dtype)).latent_dist
            eps_sample = torch.randn(posterior.mean.shape, generator=gen).to(device, posterior.mean.dtype)
            latents = (posterior.mean + posterior.std * eps_sample) * pipe.config.diffusion.scale_factor
            features = pipe.image_encoder.features(reference)  # DINOv2 is frozen
        context = pipe.image_encoder.projector(features)
        noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
        t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen).to(device)
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
        return losses

    def save_checkpoint(self) -> Path:
        from storyagent.fileio import atomic_path, atomic_save_safetensors, atomic_write_json

        folder = self.output_dir / f"checkpoint-{self.step}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(folder / "trainable.safetensors",
                                {k: v.detach().cpu() for k, v in self.params.items()})
        with atomic_path(folder / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)
        # written last: a folder without state.json is an interrupted save and is ignored
        atomic_write_json(folder / "state.json", {"step": self.step, "config": _jsonable(asdict(self.config))})
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
        with torch.no_grad():
            for key, param in self.params.items():
                param.copy_(saved[key].to(param.device, param.dtype))
        self.optimizer.load_state_dict(load_pickled_state_dict(path / "optimizer.pt"))
        self.step = int(json.loads((path / "state.json").read_text())["step"])
        return True

    def _prune(self) -> None:
        import shutil

        found = sorted((int(m.group(1)), p) for p in self.output_dir.glob("checkpoint-*")
                       if (m := CHECKPOINT_PATTERN.search(p.name)))
        for _, path in found[:-self.config.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)

    def export(self, folder: str | os.PathLike[str]) -> Path:
        """Save the fine-tuned pipeline (LoRA merged) where `AnyDoorPipeline.from_pretrained` reads it."""
        if self.config.use_lora:
            for module in (self.pipe.controlnet, self.pipe.unet):
                _merge_lora(module)
        self.pipe.save_pretrained(folder)
        return Path(folder)


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

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

The pairs and their augmentation are drawn in `pairs.py`; `save_finetune` writes only what
trained (one safetensors file), and `finetune.apply_finetune` puts it onto a freshly loaded base
pipeline.

Memory (`models/training_memory.py`): the ControlNet and the UNet checkpoint their activations while
training, steps run under bfloat16 autocast on CUDA, AdamW is fused on CUDA, and in the low-VRAM
setting every frozen weight (DINOv2-g, the VAE, the UNet's encoder; with LoRA the whole base) is held
in bfloat16. At the paper's preset about 0.85 B parameters train in float32 (weights, gradients and
two AdamW moments: ~13.6 GB) beside the frozen DINOv2-g (~4.4 GB in float32, half in bfloat16).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from storyagent.errors import InputError
from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.models.anydoor.finetune import (
    FINETUNE_FORMAT,
    MODULES,
    copy_into,
    mark_trainable,
    merge_lora,
    trainable_parameters,
)
from storyagent.models.anydoor.pairs import PairSampler
from storyagent.models.anydoor.pipeline import AnyDoorPipeline
from storyagent.models.training_memory import (
    TrainingMemory,
    adam,
    autocast,
    hold_frozen_in_bfloat16,
)
from storyagent.progress import make_progress

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)$")


class StoryAnyDoorTrainer:
    """Fine-tunes an `AnyDoorPipeline` in place; checkpoints into `output_dir/checkpoint-STEP/`.

    `sources` is frame i's source file (e.g. `ReferenceMedia.sources`); it decides which frames
    pair up and the timestep range of each pair (see `PairSampler`). Without it the frames are
    taken as one clip. `memory` is how the training spends GPU memory (`TrainingMemory`; default: gradient
    checkpointing, bf16 autocast and fused AdamW on CUDA); it changes nothing of what is trained.
    """

    def __init__(self, pipe: AnyDoorPipeline, frames: list[np.ndarray], masks: list[np.ndarray],
                 output_dir: str | os.PathLike[str], config: StoryAnyDoorTrainingConfig | None = None,
                 sources: Sequence[str | os.PathLike[str]] | None = None, memory: TrainingMemory | None = None) -> None:
        self.pipe, self.config = pipe, config or StoryAnyDoorTrainingConfig()
        self.memory = memory or TrainingMemory()
        self.output_dir = Path(output_dir)
        self.sampler = PairSampler(frames, masks, self.config, target_size=pipe.config.image_size,
                                   reference_size=pipe.config.dinov2.input_size, sources=sources,
                                   num_timesteps=pipe.scheduler.config.num_train_timesteps)
        mark_trainable(pipe, self.config)
        self.params = trainable_parameters(pipe)
        self.autocast = self.memory.autocast(pipe.device, self.config.mixed_precision)
        if self.memory.frozen_bfloat16(pipe.device, self.config.mixed_precision):
            hold_frozen_in_bfloat16(getattr(pipe, name) for name in MODULES)
        self.optimizer = adam(self.params.values(), self.config.learning_rate, self.config.weight_decay)
        self.step = 0

    # ------------------------------------------------------------------ one step
    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        pipe, device = self.pipe, self.pipe.device
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed * 1_000_003 + step)
        target, hint, reference, t = (batch[k].to(device) for k in ("target", "hint", "reference", "timestep"))
        with torch.no_grad():
            posterior = pipe.vae.encode(target.to(pipe.vae.dtype)).latent_dist
            # Latents and noise in float32 whatever the VAE is held in (a no-op for a float32 VAE).
            mean, std = posterior.mean.float(), posterior.std.float()
            eps_sample = torch.randn(mean.shape, generator=gen).to(device, mean.dtype)
            latents = (mean + std * eps_sample) * pipe.config.diffusion.scale_factor
            features = pipe.image_encoder.features(reference)  # DINOv2 is frozen
        context = pipe.image_encoder.projector(features)
        noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
        noisy = pipe.scheduler.add_noise(latents, noise, t)
        eps = pipe.predict_noise(noisy, t, context, hint.to(latents.dtype))
        return F.mse_loss(eps.float(), noise.float())

    def checkpointing(self, on: bool) -> None:
        """Gradient checkpointing of the ControlNet and the UNet (diffusers' own, active only while grad is on)."""
        for name in ("controlnet", "unet"):
            module = getattr(self.pipe, name)
            module.enable_gradient_checkpointing() if on else module.disable_gradient_checkpointing()

    def train_step(self) -> float:
        for name in ("controlnet", "unet"):
            getattr(self.pipe, name).train()
        self.checkpointing(self.memory.gradient_checkpointing)
        batch = self.sampler.batch(self.step, self.config.batch_size)
        with autocast(self.pipe.device, self.autocast):
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
        self.checkpointing(False)
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
        copy_into(self.params, saved)
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
                merge_lora(module)
        self.pipe.save_pretrained(folder)
        return Path(folder)

"""How a fine-tune spends accelerator memory (StoryAnyDoor and LoRA-BE alike).

Nothing here changes what a fine-tune trains, on what, for how long or with which optimizer: the
settings a fine-tune is cached under (`StoryAnyDoorTrainingConfig`, `LoRABEConfig`) stay the same,
and a fine-tune trained in either setting is the same fine-tune up to bfloat16 rounding.

- Always: bfloat16 autocast on CUDA (the configs' `mixed_precision`), gradient checkpointing of the
  trained networks (a second forward per step instead of keeping every activation), and Adam/AdamW
  fused into one kernel on CUDA (`torch.optim` `fused=True`: no per-parameter temporaries, and faster;
  the same update). An 8-bit optimizer (bitsandbytes) would halve the optimizer state again but is a
  different optimizer from the paper's Adam and is not installed with StoryAgent, so it is not used.
- `low_vram` (`--low-vram`, and the retry after a CUDA out-of-memory error): in addition every frozen
  weight is held in bfloat16 where autocast runs (StoryAnyDoor: DINOv2-g, the VAE and the UNet's
  frozen encoder; LoRA-BE: the whole DynamiCrafter under its float32 LoRA and embeddings; autocast
  computes in bfloat16 anyway, so only the stored copy shrinks), and LoRA-BE encodes a clip's frames
  through the VAE one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainingMemory:
    """How one fine-tune's training spends memory (see the module docstring); not part of its cache key."""

    low_vram: bool = False
    """The smaller setting: frozen weights held in bfloat16 where autocast runs; LoRA-BE's VAE a frame at a time."""
    gradient_checkpointing: bool = True
    """Recompute the trained networks' activations in the backward pass instead of keeping them."""
    autocast_cpu: bool = False
    """bfloat16 autocast on the CPU as well (CUDA has it whenever the config's `mixed_precision` is on): how the
    GPU's memory settings are run, and tested, on a machine without one. Slower than float32 on most CPUs."""

    def autocast(self, device: torch.device, mixed_precision: bool) -> bool:
        """Whether a step on `device` runs under bfloat16 autocast."""
        return mixed_precision and (device.type == "cuda" or (device.type == "cpu" and self.autocast_cpu))

    def frozen_bfloat16(self, device: torch.device, mixed_precision: bool) -> bool:
        """Whether frozen weights are held in bfloat16: the low-VRAM setting, where autocast computes in it anyway."""
        return self.low_vram and self.autocast(device, mixed_precision)

    def describe(self) -> str:
        """The setting in words, for the manifest and the terminal."""
        parts = ["gradient checkpointing" if self.gradient_checkpointing else "no gradient checkpointing",
                 "bf16 autocast on CUDA", "fused Adam on CUDA"]
        if self.low_vram:
            parts.append("frozen weights held in bf16")
        return ("low-VRAM: " if self.low_vram else "") + ", ".join(parts)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on `device` (CUDA or CPU) when `enabled`; a no-op context otherwise."""
    return torch.autocast(device.type if device.type in ("cuda", "cpu") else "cpu", dtype=torch.bfloat16,
                          enabled=enabled)


def hold_frozen_in_bfloat16(modules: Iterable[torch.nn.Module]) -> int:
    """Store every parameter of `modules` that does not train (requires_grad False) in bfloat16, in place;
    returns how many bytes that frees. Buffers are left as they are (normalisation statistics, schedules)."""
    freed = 0
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad and param.dtype == torch.float32:
                param.data = param.data.to(torch.bfloat16)
                freed += param.numel() * 2
    return freed


def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """Adam (weight_decay None: LoRA-BE, as the paper trains it) or AdamW (StoryAnyDoor, as upstream AnyDoor),
    fused into one kernel when every parameter is on CUDA; on the CPU torch's default implementation, as before."""
    params = list(params)
    fused = {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}
    if weight_decay is None:
        return torch.optim.Adam(params, lr=lr, **fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)

"""A StoryAnyDoor fine-tune as a file: which parameters train, LoRA on or off, and how the trained
ones are put back onto a freshly loaded base AnyDoor (`apply_finetune`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from storyagent.errors import InputError
from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.models.anydoor.pipeline import AnyDoorPipeline

FINETUNE_FORMAT = "storyagent.story_anydoor/1"
"""`format` entry of a fine-tune file's metadata; `apply_finetune` refuses other files."""
LORA_TARGETS = {
    "controlnet": r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
    "unet": r"up_blocks\..*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
}
"""Modules that get LoRA adapters: every attention projection of the ControlNet, those of the UNet decoder."""
LORA_KEY = re.compile(r"^(.*)\.lora_([AB])\.default\.weight$")
MODULES = ("controlnet", "unet", "image_encoder", "vae")


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
    copy_into(_named_parameters(pipe), tensors)
    if info["use_lora"]:
        for module in (pipe.controlnet, pipe.unet):
            merge_lora(module)
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


def copy_into(params: dict[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor.to(params[key].device, params[key].dtype))


def merge_lora(module: torch.nn.Module) -> None:
    """Fold the LoRA deltas into the base weights and drop the adapter layers."""
    from peft.tuners.lora import LoraLayer

    for name, child in list(module.named_modules()):
        if isinstance(child, LoraLayer):
            child.merge()
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], child.get_base_layer())

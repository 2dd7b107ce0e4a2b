"""Read the published aesthetic head (`.pth`, weights-only) or its safetensors copy, and convert one to the other."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from storyagent.errors import InputError
from storyagent.fileio import atomic_save_safetensors
from storyagent.models.aesthetic.head import AestheticHead, AestheticHeadConfig
from storyagent.weights import load_pickled_state_dict


def load_head_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The head's tensors from a `.safetensors` file or a pickled `.pth` (loaded with weights_only=True)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_pickled_state_dict(path)
    # Checkpoints saved from a wrapping module sometimes carry a `model.` or `module.` prefix.
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def head_config_from_state_dict(state: dict[str, torch.Tensor]) -> AestheticHeadConfig:
    """Recover the layer widths from the tensors, so tiny test heads and the real one load alike."""
    linear_ids = sorted(int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight"))
    if not linear_ids:
        raise InputError("This file holds no aesthetic head (no `layers.N.weight` tensors).")
    shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in linear_ids]
    hidden = tuple(s[0] for s in shapes[:-1])
    # A gap of two indices between Linear layers means a Dropout sat between them.
    n_dropouts = sum(1 for a, b in zip(linear_ids, linear_ids[1:]) if b - a == 2)
    return AestheticHeadConfig(embed_dim=shapes[0][1], hidden_dims=hidden, dropouts=(0.0,) * n_dropouts)


def load_head(path: str | os.PathLike[str]) -> AestheticHead:
    state = load_head_state_dict(path)
    head = AestheticHead(head_config_from_state_dict(state))
    missing, unexpected = head.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"{Path(path).name} does not match the aesthetic head layout "
            f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}).")
    return head.eval()


def convert_head_to_safetensors(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a safetensors copy of the published `.pth` head, so later loads need no unpickling."""
    head = load_head(src)
    atomic_save_safetensors(dst, head.state_dict(), metadata={"source": Path(src).name})
    return Path(dst)

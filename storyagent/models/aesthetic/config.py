"""Configuration of the LAION aesthetic head: the widths of its MLP."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storyagent.errors import InputError


@dataclass
class AestheticHeadConfig:
    """The MLP over CLIP image embeddings; the defaults are the published ViT-L/14 head."""

    embed_dim: int = 768
    """CLIP image embedding size (768 for ViT-L/14)."""
    hidden_dims: tuple[int, ...] = (1024, 128, 64, 16)
    """Widths of the hidden Linear layers, in order."""
    dropouts: tuple[float, ...] = (0.2, 0.2, 0.1)
    """Dropout after each of the first hidden layers (training only; kept for the key layout)."""

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> AestheticHeadConfig:
        """Recover the layer widths from the tensors, so tiny test heads and the real one load alike."""
        linear_ids = sorted(int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight"))
        if not linear_ids:
            raise InputError("This file holds no aesthetic head (no `layers.N.weight` tensors).")
        shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in linear_ids]
        hidden = tuple(s[0] for s in shapes[:-1])
        # A gap of two indices between Linear layers means a Dropout sat between them.
        n_dropouts = sum(1 for a, b in zip(linear_ids, linear_ids[1:]) if b - a == 2)
        return cls(embed_dim=shapes[0][1], hidden_dims=hidden, dropouts=(0.0,) * n_dropouts)

"""The LAION improved aesthetic predictor head: a 5-layer MLP over L2-normalised CLIP embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# The published `sac+logos+ava1-l14-linearMSE.pth` (improved-aesthetic-predictor): five Linear
# layers interleaved with three Dropouts inside one `nn.Sequential` called `layers`, so the
# Linear layers sit at indices 0, 2, 4, 6 and 7. The "linear" head has no activations.
PUBLISHED_HEAD_SHAPES: dict[str, tuple[int, ...]] = {
    "layers.0.weight": (1024, 768), "layers.0.bias": (1024,),
    "layers.2.weight": (128, 1024), "layers.2.bias": (128,),
    "layers.4.weight": (64, 128), "layers.4.bias": (64,),
    "layers.6.weight": (16, 64), "layers.6.bias": (16,),
    "layers.7.weight": (1, 16), "layers.7.bias": (1,),
}


@dataclass
class AestheticHeadConfig:
    embed_dim: int = field(default=768, metadata={"help": "CLIP image embedding size (768 for ViT-L/14)."})
    hidden_dims: tuple[int, ...] = field(
        default=(1024, 128, 64, 16), metadata={"help": "Widths of the hidden Linear layers, in order."})
    dropouts: tuple[float, ...] = field(
        default=(0.2, 0.2, 0.1),
        metadata={"help": "Dropout after each of the first hidden layers (training only; kept for the key layout)."})


class AestheticHead(nn.Module):
    """Maps a unit-length CLIP image embedding to a score on the AVA 1..10 scale."""

    def __init__(self, config: AestheticHeadConfig | None = None) -> None:
        super().__init__()
        self.config = config or AestheticHeadConfig()
        cfg = self.config
        if len(cfg.dropouts) > len(cfg.hidden_dims):
            raise ValueError("one dropout per hidden layer at most")
        modules: list[nn.Module] = []
        width = cfg.embed_dim
        for i, hidden in enumerate(cfg.hidden_dims):
            modules.append(nn.Linear(width, hidden))
            if i < len(cfg.dropouts):
                modules.append(nn.Dropout(cfg.dropouts[i]))
            width = hidden
        modules.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*modules)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) unit-length embeddings -> (B,) scores."""
        return self.layers(embeddings).squeeze(-1)

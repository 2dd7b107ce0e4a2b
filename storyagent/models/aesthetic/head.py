"""The LAION improved aesthetic predictor head: a 5-layer MLP over L2-normalised CLIP embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from storyagent.errors import InputError
from storyagent.models.aesthetic.config import AestheticHeadConfig
from storyagent.weights import load_state_dict, resolve_weights_file

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


def load_head_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The head's tensors from a `.safetensors` file or a pickled `.pth` (loaded with weights_only=True)."""
    state = load_state_dict(path)
    # Checkpoints saved from a wrapping module sometimes carry a `model.` or `module.` prefix.
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


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

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> AestheticHead:
        """A head file (the published `.pth`, loaded weights-only, or `.safetensors`) or a folder holding one;
        default the cached "laion-aesthetic-v2". The layer widths are read off the tensors."""
        file = resolve_weights_file("laion-aesthetic-v2", path, what="aesthetic head")
        state = load_head_state_dict(file)
        head = cls(AestheticHeadConfig.from_state_dict(state))
        missing, unexpected = head.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{file.name} does not match the aesthetic head layout "
                f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}).")
        return head.to(device=device, dtype=torch_dtype).eval()

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """`path`/model.safetensors, which `from_pretrained(path)` reads back."""
        from storyagent.fileio import atomic_save_safetensors

        folder = Path(path)
        atomic_save_safetensors(folder / "model.safetensors", {k: v.detach().cpu() for k, v in self.state_dict().items()})
        return folder

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) unit-length embeddings -> (B,) scores."""
        return self.layers(embeddings).squeeze(-1)

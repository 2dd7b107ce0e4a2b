"""The identity encoder: DINOv2 tokens of the reference crop, projected to the UNet's context width."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from transformers import Dinov2Config

from storyagent.models.anydoor.config import ImageEncoderConfig
from storyagent.models.anydoor.dinov2 import AnyDoorDinov2Model


def dinov2_config(settings: ImageEncoderConfig) -> Dinov2Config:
    """A transformers config for the DINOv2 the settings describe (ViT-g/14 for the real model)."""
    if settings.ffn_layer not in ("swiglufused", "swiglu", "mlp"):
        raise ValueError(f"Unsupported DINOv2 ffn_layer {settings.ffn_layer!r}.")
    return Dinov2Config(
        hidden_size=settings.embed_dim,
        num_hidden_layers=settings.depth,
        num_attention_heads=settings.num_heads,
        mlp_ratio=int(settings.mlp_ratio),
        image_size=settings.img_size,
        patch_size=settings.patch_size,
        layerscale_value=settings.init_values,
        use_swiglu_ffn=settings.ffn_layer.startswith("swiglu"),
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )


class AnyDoorImageEncoder(nn.Module):
    """Reference crop in [0, 1] (B, 3, 224, 224) -> identity tokens (B, 1 + patches, context_dim).

    The tokens are the final-LayerNorm class token followed by the final-LayerNorm patch tokens,
    then one Linear layer. The unconditional context is the encoding of an all-zero crop.
    """

    def __init__(self, settings: ImageEncoderConfig) -> None:
        super().__init__()
        self.settings = settings
        self.dinov2 = AnyDoorDinov2Model(dinov2_config(settings))
        self.projector = nn.Linear(*settings.projector)
        self.register_buffer("image_mean", torch.tensor(settings.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(settings.image_std).view(1, 3, 1, 1), persistent=False)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm DINOv2 tokens (class, then patches) of [0, 1] images: (B, 257, embed_dim)."""
        pixels = (image - self.image_mean) / self.image_std
        return self.dinov2(pixel_values=pixels.to(self.projector.weight.dtype)).last_hidden_state

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(image))

    @torch.no_grad()
    def unconditional(self, batch_size: int = 1) -> torch.Tensor:
        """Context of the zero image AnyDoor uses for classifier-free guidance."""
        side = self.settings.input_size
        zeros = torch.zeros(1, 3, side, side, device=self.image_mean.device)
        return self(zeros).expand(batch_size, -1, -1)

    # Saving mirrors diffusers' folder layout: config.json + one safetensors file.
    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        from dataclasses import asdict

        from storyagent.fileio import atomic_save_safetensors, atomic_write_json

        folder = Path(path)
        atomic_write_json(folder / "config.json", asdict(self.settings))
        atomic_save_safetensors(folder / "model.safetensors", {k: v.detach().cpu() for k, v in self.state_dict().items()})
        return folder

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> AnyDoorImageEncoder:
        from safetensors.torch import load_file

        from storyagent.models.configuration import config_from_dict

        folder = Path(path)
        encoder = cls(config_from_dict(ImageEncoderConfig, json.loads((folder / "config.json").read_text())))
        encoder.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return encoder.to(device, torch_dtype).eval()

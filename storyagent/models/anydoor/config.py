"""AnyDoor settings, spelled the way upstream `configs/anydoor.yaml` spells them.

The same `config.json` layout serves three purposes: the parity fixtures describe their tiny
models with it, the converter writes it next to the converted weights, and the model builders in
`components.py` read it. Keeping the upstream names (model_channels, channel_mult,
num_head_channels, ddconfig ...) means a config copied from an upstream YAML needs no renaming.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from storyagent.errors import InputError


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from `data`, ignoring upstream-only keys (use_checkpoint, legacy, ...)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names})


@dataclass
class UNetSettings:
    """Upstream `openaimodel.UNetModel` / `cldm.ControlNet` arguments (SD 2.1 shape by default)."""

    in_channels: int = 4
    """Latent channels the UNet reads."""
    out_channels: int = 4
    """Latent channels the UNet predicts (the noise, eps-parameterisation)."""
    model_channels: int = 320
    """Width of the first resolution level; level i has model_channels * channel_mult[i]."""
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    """Downsampling factors (1 = full latent size) whose blocks carry a spatial transformer."""
    num_res_blocks: int = 2
    """Residual blocks per level on the way down (the way up has one more)."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier of each resolution level."""
    num_head_channels: int = 64
    """Channels per attention head; the number of heads is the block width divided by this."""
    transformer_depth: int = 1
    """Transformer blocks inside each spatial transformer."""
    context_dim: int = 1024
    """Width of the cross-attention context (the projected DINOv2 tokens)."""
    use_linear_in_transformer: bool = True
    """Spatial transformers project in and out with Linear layers (SD 2.x) instead of 1x1 convs."""
    hint_channels: int = 4
    """ControlNet only: channels of the hint image (collage RGB + mask)."""

    def heads_per_level(self) -> list[int]:
        return [self.model_channels * m // self.num_head_channels for m in self.channel_mult]

    def level_has_attention(self, level: int) -> bool:
        return 2**level in self.attention_resolutions


@dataclass
class VAESettings:
    """Upstream `AutoencoderKL` `ddconfig`."""

    z_channels: int = 4
    """Latent channels."""
    in_channels: int = 3
    """Image channels in."""
    out_ch: int = 3
    """Image channels out."""
    ch: int = 128
    """Width of the first level."""
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier of each level; the latent is 2**(len-1) times smaller than the image."""
    num_res_blocks: int = 2
    """Residual blocks per encoder level (the decoder has one more)."""
    resolution: int = 256
    """Training resolution; informational only, the VAE is fully convolutional."""
    double_z: bool = True
    """The encoder predicts mean and log-variance."""


@dataclass
class DinoV2Settings:
    """The identity encoder: a DINOv2 ViT (ViT-g/14 for the real model) and the linear projector."""

    img_size: int = 518
    """Image size the positional embeddings were trained for (37 x 37 patches)."""
    patch_size: int = 14
    """Patch size in pixels."""
    embed_dim: int = 1536
    """Token width."""
    depth: int = 40
    """Transformer blocks."""
    num_heads: int = 24
    """Attention heads."""
    mlp_ratio: int = 4
    """Feed-forward width ratio before the SwiGLU 2/3 shrink."""
    init_values: float = 1.0
    """Layer-scale initial value; any non-zero value means layer scale is present."""
    ffn_layer: str = "swiglufused"
    """`swiglufused` (ViT-g) or `mlp`."""
    projector: tuple[int, int] = (1536, 1024)
    """Projector Linear (in, out): DINOv2 width to the UNet context width."""
    input_size: int = 224
    """Side of the square reference crop fed to DINOv2 (AnyDoor uses 224, i.e. 16 x 16 patches)."""
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """ImageNet mean used to normalise the [0, 1] reference crop."""
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """ImageNet std used to normalise the [0, 1] reference crop."""


@dataclass
class DiffusionSettings:
    """The DDPM schedule of `ldm.models.diffusion.ddpm.LatentDiffusion`."""

    linear_start: float = 0.00085
    """First beta; betas are spaced linearly in sqrt(beta) (upstream "linear" schedule)."""
    linear_end: float = 0.012
    """Last beta."""
    timesteps: int = 1000
    """Training timesteps."""
    scale_factor: float = 0.18215
    """Latents are multiplied by this after encoding and divided by it before decoding."""
    conditioning_key: str = "crossattn"
    """Only cross-attention conditioning is used by AnyDoor."""


@dataclass
class SamplingSettings:
    """Inference defaults (upstream `run_inference.py`)."""

    ddim_steps: int = 50
    """DDIM steps ("uniform" spacing, offset 1)."""
    eta: float = 0.0
    """DDIM eta; 0 makes sampling deterministic given the starting noise."""
    cfg_scale: float = 5.0
    """Classifier-free guidance scale; the unconditional branch encodes a zero image."""
    control_scale: float = 1.0
    """Multiplier of the 13 ControlNet residuals."""
    probe_timestep: int = 0
    """Parity fixtures only: the timestep at which single model calls are compared."""
    latent_hw: tuple[int, int] = (64, 64)
    """Latent size; the image is 8x larger (512 px for AnyDoor)."""


@dataclass
class AnyDoorConfig:
    """Everything needed to build the AnyDoor modules; defaults are the released model's."""

    unet: UNetSettings = field(default_factory=UNetSettings)
    controlnet: UNetSettings = field(default_factory=UNetSettings)
    vae_ddconfig: VAESettings = field(default_factory=VAESettings)
    dinov2: DinoV2Settings = field(default_factory=DinoV2Settings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnyDoorConfig:
        sections = {
            "unet": UNetSettings, "controlnet": UNetSettings, "vae_ddconfig": VAESettings,
            "dinov2": DinoV2Settings, "diffusion": DiffusionSettings, "sampling": SamplingSettings,
        }
        return cls(**{name: _from_dict(kind, data.get(name, {})) for name, kind in sections.items()})

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> AnyDoorConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"Cannot read the AnyDoor config {path}: {exc}.") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def image_size(self) -> int:
        """Side of the square image the VAE decodes from `sampling.latent_hw`."""
        return self.sampling.latent_hw[0] * 2 ** (len(self.vae_ddconfig.ch_mult) - 1)


def tiny_config(width: int = 32, dino_width: int = 48, context: int = 32) -> AnyDoorConfig:
    """A CPU-sized AnyDoor (same topology as the real one) for tests and `--tiny` benchmarks."""
    unet = UNetSettings(model_channels=width, channel_mult=(1, 2, 2, 2), num_head_channels=8,
                        context_dim=context)
    return AnyDoorConfig(
        unet=unet,
        controlnet=UNetSettings(**{**asdict(unet), "channel_mult": unet.channel_mult}),
        vae_ddconfig=VAESettings(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, resolution=64),
        dinov2=DinoV2Settings(embed_dim=dino_width, depth=2, num_heads=4, projector=(dino_width, context)),
        sampling=SamplingSettings(ddim_steps=5, latent_hw=(16, 16)),
    )

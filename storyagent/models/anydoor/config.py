"""AnyDoor settings, spelled the way upstream `configs/anydoor.yaml` spells them.

The same `config.json` layout serves three purposes: the parity fixtures describe their tiny
models with it, the converter writes it next to the converted weights, and the model builders in
`components.py` read it. Keeping the upstream names (model_channels, channel_mult,
num_head_channels, ddconfig ...) means a config copied from an upstream YAML needs no renaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from storyagent.models.configuration import ConfigFileMixin, config_from_dict


@dataclass
class UNetConfig:
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
class VAEConfig:
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
class ImageEncoderConfig:
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
class DiffusionConfig:
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
class SamplingConfig:
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
class AnyDoorConfig(ConfigFileMixin):
    """Everything needed to build the AnyDoor modules; defaults are the released model's."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    """The denoising UNet."""
    controlnet: UNetConfig = field(default_factory=UNetConfig)
    """The ControlNet (same trunk as the UNet, reading the 4-channel hint)."""
    vae: VAEConfig = field(default_factory=VAEConfig)
    """The autoencoder (upstream `ddconfig`; written as `vae_ddconfig` in config.json)."""
    dinov2: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """The identity encoder and its projector."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """The DDPM schedule."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Inference defaults."""

    json_names: ClassVar[dict[str, str]] = {"vae": "vae_ddconfig"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnyDoorConfig:
        sections = {"unet": UNetConfig, "controlnet": UNetConfig, "vae": VAEConfig, "dinov2": ImageEncoderConfig,
                    "diffusion": DiffusionConfig, "sampling": SamplingConfig}
        data = cls.field_data(data)
        return cls(**{name: config_from_dict(kind, data.get(name, {})) for name, kind in sections.items()})

    @property
    def image_size(self) -> int:
        """Side of the square image the VAE decodes from `sampling.latent_hw`."""
        return self.sampling.latent_hw[0] * 2 ** (len(self.vae.ch_mult) - 1)

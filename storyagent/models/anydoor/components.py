"""Build the diffusers / transformers modules that make up AnyDoor from an `AnyDoorConfig`.

The upstream model is an SD-2.1-shaped latent diffusion model whose text encoder is replaced by
DINOv2 + a projector and whose ControlNet reads a 4-channel hint. Every piece maps onto a stock
module: `UNet2DConditionModel`, `ControlNetModel`, `AutoencoderKL`, `DDIMScheduler`.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel

from storyagent.models.anydoor.config import AnyDoorConfig, DiffusionConfig, UNetConfig, VAEConfig
from storyagent.models.anydoor.image_encoder import AnyDoorImageEncoder
from storyagent.models.ldm import build_autoencoder, sqrt_linear_betas

# Upstream's input_hint_block: 3x3 convs 16,16 | 32,32 | 96,96 | 256, three of them stride 2.
HINT_EMBEDDING_CHANNELS = (16, 32, 96, 256)


def _block_types(settings: UNetConfig) -> tuple[list[str], list[str]]:
    levels = range(len(settings.channel_mult))
    down = ["CrossAttnDownBlock2D" if settings.level_has_attention(i) else "DownBlock2D" for i in levels]
    up = ["CrossAttnUpBlock2D" if settings.level_has_attention(i) else "UpBlock2D" for i in reversed(levels)]
    return down, up


def _shared_unet_kwargs(settings: UNetConfig) -> dict:
    down, _ = _block_types(settings)
    return dict(
        in_channels=settings.in_channels,
        down_block_types=tuple(down),
        block_out_channels=tuple(settings.model_channels * m for m in settings.channel_mult),
        layers_per_block=settings.num_res_blocks,
        cross_attention_dim=settings.context_dim,
        # diffusers' historical naming: `attention_head_dim` here is the number of heads per level.
        attention_head_dim=tuple(settings.heads_per_level()),
        use_linear_projection=settings.use_linear_in_transformer,
        transformer_layers_per_block=settings.transformer_depth,
        norm_num_groups=32,
        norm_eps=1e-5,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def build_unet(settings: UNetConfig) -> UNet2DConditionModel:
    _, up = _block_types(settings)
    return UNet2DConditionModel(
        sample_size=None,
        out_channels=settings.out_channels,
        up_block_types=tuple(up),
        **_shared_unet_kwargs(settings),
    )


def build_controlnet(settings: UNetConfig) -> ControlNetModel:
    return ControlNetModel(
        conditioning_channels=settings.hint_channels,
        conditioning_embedding_out_channels=HINT_EMBEDDING_CHANNELS,
        **_shared_unet_kwargs(settings),
    )


def build_vae(settings: VAEConfig, scale_factor: float = 0.18215) -> AutoencoderKL:
    return build_autoencoder(settings, scale_factor)


def ddpm_betas(settings: DiffusionConfig) -> np.ndarray:
    """Upstream "linear" schedule: linear in sqrt(beta), computed in float64 as ldm does."""
    return sqrt_linear_betas(settings.linear_start, settings.linear_end, settings.timesteps)


def alphas_cumprod(settings: DiffusionConfig) -> torch.Tensor:
    return torch.from_numpy(np.cumprod(1.0 - ddpm_betas(settings))).float()


def build_scheduler(settings: DiffusionConfig) -> DDIMScheduler:
    """DDIM with upstream's "uniform" spacing: t = 1, 1 + k, 1 + 2k, ... and the last step lands on
    alphas_cumprod[0] (not 1), which is diffusers' `leading` spacing, offset 1, no alpha-to-one."""
    scheduler = DDIMScheduler(
        num_train_timesteps=settings.timesteps,
        trained_betas=ddpm_betas(settings).tolist(),
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    # diffusers takes the cumulative product in float32; ldm takes it in float64 and rounds once.
    scheduler.alphas_cumprod = alphas_cumprod(settings)
    scheduler.final_alpha_cumprod = scheduler.alphas_cumprod[0]
    return scheduler


def build_components(config: AnyDoorConfig) -> dict:
    """All AnyDoor modules with random weights, in eval mode."""
    return {
        "unet": build_unet(config.unet).eval(),
        "controlnet": build_controlnet(config.controlnet).eval(),
        "vae": build_vae(config.vae, config.diffusion.scale_factor).eval(),
        "image_encoder": AnyDoorImageEncoder(config.dinov2).eval(),
        "scheduler": build_scheduler(config.diffusion),
    }

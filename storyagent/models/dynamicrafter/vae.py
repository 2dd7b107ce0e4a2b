"""The frame autoencoder: the upstream `ddconfig` VAE is the same network as diffusers' `AutoencoderKL`."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from storyagent.models.dynamicrafter.config import VAEConfig


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    """A diffusers AutoencoderKL with the layout of the upstream ddconfig (weights renamed by convert.py)."""
    if cfg.attn_resolutions:
        raise NotImplementedError(
            "VAEs with attention inside the resolution levels (attn_resolutions) are not supported; "
            "the released DynamiCrafter VAEs have none."
        )
    if not cfg.double_z:
        raise NotImplementedError("Only Gaussian VAEs (double_z: true) are supported.")
    levels = len(cfg.ch_mult)
    return AutoencoderKL(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_ch,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult),
        layers_per_block=cfg.num_res_blocks,
        latent_channels=cfg.z_channels,
        norm_num_groups=32,
        sample_size=cfg.resolution,
    )


def decode_frames(vae: AutoencoderKL, latents: torch.Tensor, scale_factor: float, chunk: int | None = 1) -> torch.Tensor:
    """b c t h w latents (scaled) -> b 3 t H W video in [-1, 1] space, decoding `chunk` frames at a time.

    chunk=1 is the upstream per-frame decoding (bounded memory); None decodes all frames at once.
    """
    b, c, t, h, w = latents.shape
    # b c t h w -> (b t) c h w
    flat = latents.transpose(1, 2).reshape(b * t, c, h, w).to(vae.dtype)
    step = flat.shape[0] if chunk is None else chunk
    frames = [vae.decode(flat[i : i + step] * (1.0 / scale_factor)).sample for i in range(0, flat.shape[0], step)]
    out = torch.cat(frames, dim=0)
    # (b t) 3 H W -> b 3 t H W
    return out.view(b, t, *out.shape[1:]).transpose(1, 2)


def encode_frames(vae: AutoencoderKL, video: torch.Tensor, scale_factor: float,
                  generator: torch.Generator | None = None, chunk: int | None = 1) -> torch.Tensor:
    """b 3 t H W in [-1, 1] -> b c t h w scaled latents, sampled from the posterior like upstream."""
    b, c, t, h, w = video.shape
    flat = video.transpose(1, 2).reshape(b * t, c, h, w).to(vae.dtype)
    step = flat.shape[0] if chunk is None else chunk
    parts = [vae.encode(flat[i : i + step]).latent_dist.sample(generator) * scale_factor
             for i in range(0, flat.shape[0], step)]
    z = torch.cat(parts, dim=0)
    return z.view(b, t, *z.shape[1:]).transpose(1, 2)

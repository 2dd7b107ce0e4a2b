"""The frame autoencoder: the upstream `ddconfig` VAE is the same network as diffusers' `AutoencoderKL`."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from storyagent.models.dynamicrafter.config import VAEConfig
from storyagent.models.ldm import build_autoencoder


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    """A diffusers AutoencoderKL with the layout of the upstream ddconfig (weights renamed by convert.py)."""
    return build_autoencoder(cfg)


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

"""The latent-diffusion `ddconfig` autoencoder, shared by DynamiCrafter and AnyDoor.

Upstream's `AutoencoderKL` with a `ddconfig` is the same network as diffusers' `AutoencoderKL`;
only the weight names differ (each family's `convert.py` renames them).
"""

from __future__ import annotations

from typing import Protocol

from diffusers import AutoencoderKL


class DDConfig(Protocol):
    in_channels: int
    out_ch: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    resolution: int
    double_z: bool


def build_autoencoder(cfg: DDConfig, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """A diffusers AutoencoderKL with the layout of an upstream ddconfig."""
    if getattr(cfg, "attn_resolutions", None):
        raise NotImplementedError("VAEs with attention inside the resolution levels (attn_resolutions) are not "
                                  "supported; the released DynamiCrafter and AnyDoor VAEs have none.")
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
        scaling_factor=scaling_factor,
    )

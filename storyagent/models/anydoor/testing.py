"""Tiny random AnyDoor configurations for tests and the benchmarks' `--tiny` mode (same topology
as the released model, a few megabytes of weights, no network)."""

from __future__ import annotations

from dataclasses import replace

from storyagent.models.anydoor.config import AnyDoorConfig, ImageEncoderConfig, SamplingConfig, UNetConfig, VAEConfig


def tiny_config(width: int = 32, dino_width: int = 48, context: int = 32) -> AnyDoorConfig:
    """A CPU-sized AnyDoor (same topology as the real one) for tests and `--tiny` benchmarks."""
    unet = UNetConfig(model_channels=width, channel_mult=(1, 2, 2, 2), num_head_channels=8, context_dim=context)
    return AnyDoorConfig(
        unet=unet,
        controlnet=replace(unet),
        vae=VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, resolution=64),
        dinov2=ImageEncoderConfig(embed_dim=dino_width, depth=2, num_heads=4, projector=(dino_width, context)),
        sampling=SamplingConfig(ddim_steps=5, latent_hw=(16, 16)),
    )


def tiny_pipeline(config: AnyDoorConfig | None = None, seed: int = 0):
    """An AnyDoor pipeline with random weights for `config` (default `tiny_config()`)."""
    import torch

    from storyagent.models.anydoor.components import build_components
    from storyagent.models.anydoor.pipeline import AnyDoorPipeline

    config = config or tiny_config()
    torch.manual_seed(seed)
    return AnyDoorPipeline(**build_components(config), config=config)

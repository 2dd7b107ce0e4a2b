"""DynamiCrafter image-to-video (Xing et al. 2023): our own implementation, loading the official checkpoints."""

from storyagent.models.dynamicrafter.config import (
    DiffusionConfig, DynamiCrafterConfig, ResamplerConfig, SamplingConfig, UNetConfig, VAEConfig,
    variant_config,
)
from storyagent.models.dynamicrafter.pipeline import Conditioning, DynamiCrafterOutput, DynamiCrafterPipeline
from storyagent.models.dynamicrafter.resampler import Resampler
from storyagent.models.dynamicrafter.scheduler import DDIMScheduler
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet

__all__ = [
    "Conditioning", "DDIMScheduler", "DiffusionConfig", "DynamiCrafterConfig", "DynamiCrafterOutput",
    "DynamiCrafterPipeline", "DynamiCrafterUNet", "Resampler", "ResamplerConfig", "SamplingConfig", "UNetConfig",
    "VAEConfig", "variant_config",
]

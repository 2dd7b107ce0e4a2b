"""StoryDiffusion's Consistent Self-Attention on diffusers SDXL: the initial, consistent storyboard."""

from storyagent.models.storydiffusion.attention import (
    ConsistentAttentionState,
    ConsistentSelfAttentionProcessor,
    install_consistent_attention,
    remove_consistent_attention,
)
from storyagent.models.storydiffusion.config import ConsistentAttentionConfig, StoryDiffusionConfig
from storyagent.models.storydiffusion.pipeline import (
    IdentityPass,
    StoryDiffusionOutput,
    StoryDiffusionPipeline,
    load_sdxl,
)
from storyagent.models.storydiffusion.prompts import DEPICTIONS, STYLES, Style, shot_prompt

__all__ = [
    "DEPICTIONS",
    "STYLES",
    "ConsistentAttentionConfig",
    "ConsistentAttentionState",
    "ConsistentSelfAttentionProcessor",
    "IdentityPass",
    "StoryDiffusionConfig",
    "StoryDiffusionOutput",
    "StoryDiffusionPipeline",
    "Style",
    "install_consistent_attention",
    "load_sdxl",
    "remove_consistent_attention",
    "shot_prompt",
]

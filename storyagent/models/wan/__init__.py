"""Wan 2.x image-to-video through diffusers' own classes, with the paper's LoRA-BE added (not a port).

`WanVideoPipeline.from_pretrained(video_model)` wraps diffusers' `WanImageToVideoPipeline`; calling it
makes one window of frames. `WanLoRABETrainer(pipe, lora_be_config, folder, device).train(clips)`
learns a subject (or a cast): LoRA on every attention projection of every block and one subject-token
embedding per block (`attention`: each block reads only its own), with the localization loss on the
blocks' cross-attention maps (`losses`); `pipe.load_adapter(path)` animates with it.
The model names and settings are plain data in `config` (no torch).
"""

from storyagent.models.wan.adapter import WanPromptEncoder, add_lora, load_adapter
from storyagent.models.wan.attention import BlockwiseState, BlockwiseWanAttnProcessor, install_blockwise
from storyagent.models.wan.config import (
    DYNAMICRAFTER, VIDEO_MODELS, WAN_TARGET_MODULES, WAN_VIDEO_MODELS, WanVideoConfig, fit_size, is_wan, wan_config,
    window_frames,
)
from storyagent.models.wan.losses import latent_masks, localization_loss
from storyagent.models.wan.pipeline import WanVideoPipeline, load_wan
from storyagent.models.wan.trainer import WanLoRABETrainer

__all__ = [
    "DYNAMICRAFTER", "VIDEO_MODELS", "WAN_TARGET_MODULES", "WAN_VIDEO_MODELS", "BlockwiseState",
    "BlockwiseWanAttnProcessor", "WanLoRABETrainer", "WanPromptEncoder", "WanVideoConfig", "WanVideoPipeline",
    "add_lora", "fit_size", "install_blockwise", "is_wan", "latent_masks", "load_adapter", "load_wan",
    "localization_loss", "wan_config", "window_frames",
]

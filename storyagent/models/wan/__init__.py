"""Wan 2.x image-to-video through diffusers' own classes, with the paper's LoRA-BE added (not a port).

`WanVideoPipeline.from_pretrained(video_model)` wraps diffusers' `WanImageToVideoPipeline`; calling it
makes one window of frames. `WanLoRABETrainer(pipe, lora_be_config, folder, device).train(clips)`
learns a subject (or a cast): LoRA on every attention projection of every block and one subject-token
embedding per block (`attention`: each block reads only its own), with the localization loss on the
blocks' cross-attention maps (`losses`); `pipe.load_adapter(path)` animates with it.

The names are imported when first asked for (as diffusers does), so `storyagent.models.wan.config`, plain
data, is read without torch.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "WanPromptEncoder": "adapter", "add_lora": "adapter", "load_adapter": "adapter",
    "BlockwiseState": "attention", "BlockwiseWanAttnProcessor": "attention", "install_blockwise": "attention",
    "DYNAMICRAFTER": "config", "VIDEO_MODELS": "config", "WAN_TARGET_MODULES": "config", "WAN_VIDEO_MODELS": "config",
    "WanVideoConfig": "config", "fit_size": "config", "is_wan": "config", "wan_config": "config",
    "window_frames": "config",
    "latent_masks": "losses", "localization_loss": "losses",
    "WanVideoPipeline": "pipeline", "load_wan": "pipeline",
    "WanLoRABETrainer": "trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)

"""Configuration of a LoRA-BE fine-tune (LoRA + block-wise subject-token embeddings + localization loss)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyagent.models.configuration import ConfigFileMixin

# Linear projections of every spatial self/cross-attention (text and image branches) and every
# temporal attention of our DynamiCrafter UNet (names as in storyagent.models.dynamicrafter.unet).
DEFAULT_TARGET_MODULES = (
    r".*(spatial|temporal|init_temporal_attn)\.transformer_blocks\.\d+\.attn[12]\."
    r"(to_q|to_k|to_v|to_k_ip|to_v_ip|to_out\.0)"
)


@dataclass
class LoRABEConfig(ConfigFileMixin):
    """What LoRA-BE learns (LoRA on attention + one subject-token embedding per cross-attention module) and how."""

    token: str = "<subject>"
    """The new subject token as written in prompts, e.g. "<miffy>"."""
    class_word: str = "object"
    """A word for the subject's kind ("rabbit"); the block-wise embeddings start from its embedding."""
    rank: int = 4
    """LoRA rank."""
    alpha: float = 4.0
    """LoRA alpha (the update is scaled by alpha / rank)."""
    target_modules: str = DEFAULT_TARGET_MODULES
    """Regular expression (full match) over UNet module names that get LoRA."""
    blockwise_embeddings: bool = True
    """Learn the subject token's block-wise embeddings (False: the paper's "DC" ablation, a LoRA
    fine-tune alone; the token keeps the class word's embedding in every module)."""
    localization_weight: float = 1.0
    """lambda: total loss = diffusion loss + lambda * localization loss (the mean over the
    cross-attention modules, not their sum; see `losses.localization_loss`)."""
    learning_rate: float = 1e-4
    """Adam learning rate for LoRA weights and embeddings."""
    epochs: int = 400
    """Passes over the reference clips (one step per clip per epoch)."""
    frames: int | None = None
    """Frames per training clip; None uses the model's setting (16)."""
    height: int | None = None
    """Training height in pixels; None uses the model's setting."""
    width: int | None = None
    """Training width in pixels; None uses the model's setting."""
    fs: int | None = None
    """fs conditioning for clips without a frame rate (photos); None uses the model's default.
    Video clips are always conditioned on their own rate after striding (source fps / stride)."""
    gradient_checkpointing: bool = True
    """Recompute UNet stages in the backward pass to save memory."""
    mixed_precision: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every this many steps (and at the end)."""
    augment: bool = True
    """Background-agnostic augmentation: paste the subject on other backgrounds, flip, scale, shift."""
    seed: int = 0
    """Seed of the sampler of clips, timesteps, noise and augmentations."""
    prompt_template: str = "a video of {token}"
    """Training prompt; {token} is replaced by the subject token."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the adapter."""

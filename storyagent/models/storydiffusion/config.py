"""Configuration of StoryDiffusion's consistent self-attention and of the storyboard pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ConsistentAttentionConfig:
    """How much of the other identity images each image sees in the up-blocks' self-attention."""

    default_ratio: float = 0.5
    """Share of every other identity image's tokens an image attends to, at scales not in `ratios`."""
    ratios: dict[int, float] = field(default_factory=lambda: {32: 0.5, 16: 0.5})
    """Per-scale share, keyed by image pixels per token side (SDXL's up-blocks run at 32 and 16).
    Upstream StoryDiffusion tunes these two separately (its `sa32` / `sa64`)."""
    blocks: tuple[str, ...] = ("up_blocks",)
    """UNet blocks whose self-attention (`attn1`) gets the processor; upstream uses the up-blocks,
    which carry most of the subject's appearance."""
    bank_device: Literal["same", "cpu"] = "same"
    """Where the stored tokens live between the two phases; "cpu" trades PCIe copies for GPU memory."""
    skip_steps: int = 1
    """Denoising steps at the start that use plain self-attention in both phases, while the layout
    is still noise. Upstream's current app skips step 0 only (`cur_step < 1` in
    `SpatialAttnProcessor2_0.__call__`, gradio_app_sdxl_specific_id_low_vram.py @ 8de45e4); its
    older mask-based app.py / predict.py skip the first 5 (`cur_step < 5`), and their read phase
    attends to all identity tokens, unsampled, during those steps."""
    bypass_early: float = 0.3
    """After the skipped steps and before `bypass_until`: the chance that one layer call falls back to
    plain self-attention (upstream: 0.3), so that shots keep some of their own composition."""
    bypass_late: float = 0.1
    """From step `bypass_until` on: the same chance (upstream: 0.1); details settle, sharing matters more."""
    bypass_until: int = 20
    """The step at which the bypass chance drops from `bypass_early` to `bypass_late` (upstream: 20)."""

    def __post_init__(self) -> None:
        for ratio in [self.default_ratio, *self.ratios.values()]:
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"sampling ratios must lie in [0, 1], got {ratio}")
        for chance in (self.bypass_early, self.bypass_late):
            if not 0.0 <= chance <= 1.0:
                raise ValueError(f"bypass chances must lie in [0, 1], got {chance}")
        if self.skip_steps < 0 or self.bypass_until < 0:
            raise ValueError("skip_steps and bypass_until count steps and cannot be negative")

    def ratio_for(self, pixels_per_token: int) -> float:
        return self.ratios.get(pixels_per_token, self.default_ratio)

    def bypass_chance(self, step: int) -> float:
        """Chance that a layer call at `step` (past the skipped steps) attends to its own tokens only."""
        return self.bypass_early if step < self.bypass_until else self.bypass_late


@dataclass
class StoryDiffusionConfig:
    """The storyboard pipeline's defaults; every field can be overridden per call."""

    attention: ConsistentAttentionConfig = field(default_factory=ConsistentAttentionConfig)
    """Consistent self-attention settings."""
    num_identity: int = 3
    """How many shots are generated together first (and fill the token bank); the rest read it."""
    read_batch_size: int = 1
    """How many of the remaining shots are denoised at once while reading the bank."""
    num_inference_steps: int = 30
    """Denoising steps per shot."""
    guidance_scale: float = 5.0
    """Classifier-free guidance scale; at 1 or below the unconditional branch is skipped."""
    height: int = 768
    """Image height in pixels (multiple of 8)."""
    width: int = 768
    """Image width in pixels (multiple of 8)."""
    style: str = "cinematic"
    """Prompt style, a key of `storyagent.models.storydiffusion.prompts.STYLES`."""

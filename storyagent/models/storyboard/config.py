"""Configuration of the storyboard pipeline (paper, Fig. 3): the families it composes keep their own
configs, nested here unchanged; only what the storyboard itself decides is a field of its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from storyagent.models.anydoor.config import SamplingConfig
from storyagent.models.langsam.config import LangSAMConfig
from storyagent.models.removal.config import RemovalConfig
from storyagent.models.storydiffusion.config import StoryDiffusionConfig


@dataclass
class StoryboardConfig:
    """The storyboard's settings: the nested families' configs, and the few overrides that span them."""

    story: StoryDiffusionConfig = field(default_factory=StoryDiffusionConfig)
    """StoryDiffusion's settings for step 1 (consistent attention, identity shots, steps, guidance, size, style)."""
    langsam: LangSAMConfig = field(default_factory=LangSAMConfig)
    """LangSAM's settings for steps 2 and 5 (box and text thresholds, batching)."""
    removal: RemovalConfig = field(default_factory=RemovalConfig)
    """The subject removal's settings for step 3 (mask growth, inpainting steps and guidance)."""
    anydoor: SamplingConfig | None = None
    """AnyDoor's sampling settings for step 4; None keeps those of the converted weights' config.json."""
    width: int | None = None
    """Storyboard width in pixels (multiple of 8); None keeps `story.width`."""
    height: int | None = None
    """Storyboard height in pixels (multiple of 8); None keeps `story.height`."""
    seed: int = 0
    """Seed of shot 0 when no seeds are given; shot i then uses seed + i."""
    num_identity: int | None = None
    """Shots drawn together to fix the subject's look; None keeps `story.num_identity`."""
    steps: int | None = None
    """Denoising steps of every step that denoises (StoryDiffusion, diffusion removal, AnyDoor); None keeps each one's own."""
    cpu_offload: bool = False
    """Low-VRAM mode: each model's parts visit the GPU one at a time and the VAE decodes one picture at a time."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (value < 16 or value % 8):
                raise ValueError(f"{name} must be a multiple of 8 of at least 16, got {value}")
        if self.num_identity is not None and self.num_identity < 1:
            raise ValueError("num_identity must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.seed < 0:
            raise ValueError("seed cannot be negative")

    def story_config(self) -> StoryDiffusionConfig:
        """`story` with the storyboard's size, identity count and steps put over it."""
        overrides = {"width": self.width, "height": self.height, "num_identity": self.num_identity,
                     "num_inference_steps": self.steps}
        return replace(self.story, **{k: v for k, v in overrides.items() if v is not None})

    def removal_config(self) -> RemovalConfig:
        """`removal` with the storyboard's steps put over it."""
        return self.removal if self.steps is None else replace(self.removal, num_inference_steps=self.steps)

    def anydoor_sampling(self, own: SamplingConfig) -> SamplingConfig:
        """AnyDoor's sampling settings: `anydoor`, else the weights' `own`, with the storyboard's steps put over it."""
        sampling = self.anydoor or own
        return sampling if self.steps is None else replace(sampling, ddim_steps=self.steps)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, nested configs included, as JSON-ready values (a cache key's part)."""
        return asdict(self)

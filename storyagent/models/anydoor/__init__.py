"""AnyDoor (Chen et al. 2023) on diffusers/transformers modules: subject redraw for the storyboard."""

from storyagent.models.anydoor.config import AnyDoorConfig, tiny_config
from storyagent.models.anydoor.pipeline import AnyDoorOutput, AnyDoorPipeline

__all__ = ["AnyDoorConfig", "AnyDoorOutput", "AnyDoorPipeline", "tiny_config"]

"""AnyDoor (Chen et al. 2023) on diffusers/transformers modules: subject redraw for the storyboard."""

from storyagent.models.anydoor.config import AnyDoorConfig
from storyagent.models.anydoor.pipeline import AnyDoorOutput, AnyDoorPipeline

__all__ = ["AnyDoorConfig", "AnyDoorOutput", "AnyDoorPipeline"]

"""The paper's storyboard pipeline (Fig. 3), composed from StoryDiffusion, LangSAM, the subject
removal and StoryAnyDoor: 1 initial storyboard, 2 masks, 3 removal, 4 redraw, 5 paste."""

from storyagent.models.storyboard.config import StoryboardConfig
from storyagent.models.storyboard.pipeline import (
    ShotResult,
    StoryboardPipeline,
    StoryboardSubject,
    default_identity,
)

__all__ = ["ShotResult", "StoryboardConfig", "StoryboardPipeline", "StoryboardSubject", "default_identity"]

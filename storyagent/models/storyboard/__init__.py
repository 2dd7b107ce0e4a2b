"""The paper's storyboard pipeline (Fig. 3), composed from StoryDiffusion, LangSAM, the subject
removal and StoryAnyDoor: 1 initial storyboard, 2 masks, 3 removal, 4 redraw, 5 paste; for one
subject or a cast (each character found, redrawn with its own fine-tune and pasted in its own mask)."""

from storyagent.models.storyboard.cast import FinetuneSwitch, Placement, assign_boxes
from storyagent.models.storyboard.config import StoryboardConfig
from storyagent.models.storyboard.pipeline import (
    PASTE_BLEND,
    PASTE_MASK,
    CharacterResult,
    ShotResult,
    StoryboardPipeline,
    StoryboardSubject,
    default_identity,
)

__all__ = ["PASTE_BLEND", "PASTE_MASK", "CharacterResult", "FinetuneSwitch", "Placement", "ShotResult", "StoryboardConfig", "StoryboardPipeline",
           "StoryboardSubject", "assign_boxes", "default_identity"]

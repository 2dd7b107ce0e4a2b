"""The animatic backend: the user's characters composited into procedural scenes (CPU, no weights)."""

from storyagent.models.animatic.config import AnimaticConfig
from storyagent.models.animatic.pipeline import AnimaticPipeline, ShotRender, SubjectSprites

__all__ = ["AnimaticConfig", "AnimaticPipeline", "ShotRender", "SubjectSprites"]

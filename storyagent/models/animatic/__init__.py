from storyagent.models.animatic.pipeline import AnimaticConfig, AnimaticPipeline, ShotRender, SubjectSprites

__all__ = ["AnimaticConfig", "AnimaticPipeline", "ShotRender", "SubjectSprites"]

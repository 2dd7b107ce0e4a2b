"""SAM 2 (transformers' `Sam2Video` classes): a reference clip's first-frame subject mask carried
through every frame by the video predictor's memory. Importing this package loads no torch."""

from storyagent.models.sam2.config import Sam2VideoMasksConfig
from storyagent.models.sam2.pipeline import (
    SAM2_REPO_ID,
    SAM2_WEIGHTS,
    Sam2VideoMasks,
    sam2_available,
)

__all__ = ["SAM2_REPO_ID", "SAM2_WEIGHTS", "Sam2VideoMasks", "Sam2VideoMasksConfig", "sam2_available"]

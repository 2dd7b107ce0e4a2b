"""Subject removal: the subject's grown mask refilled with background (SDXL inpainting or OpenCV)."""

from storyagent.models.removal.config import RemovalConfig
from storyagent.models.removal.pipeline import RemovalResult, SubjectRemover, dilate_mask

__all__ = ["RemovalConfig", "RemovalResult", "SubjectRemover", "dilate_mask"]

"""LangSAM: Grounding DINO (transformers) boxes + SAM (segment_anything) masks from a text prompt."""

from storyagent.models.langsam.config import LangSAMConfig, SamConfig
from storyagent.models.langsam.detector import Detections, GroundingDinoDetector, grounding_prompt
from storyagent.models.langsam.pipeline import LangSAMPipeline, SubjectMask, resize_box, resize_mask
from storyagent.models.langsam.segmenter import SamSegmenter, build_sam

__all__ = [
    "Detections",
    "GroundingDinoDetector",
    "LangSAMConfig",
    "LangSAMPipeline",
    "SamConfig",
    "SamSegmenter",
    "SubjectMask",
    "build_sam",
    "grounding_prompt",
    "resize_box",
    "resize_mask",
]

"""LangSAM: Grounding DINO (transformers) boxes + SAM (segment_anything) masks from a text prompt."""

from storyagent.models.langsam.config import LangSAMConfig
from storyagent.models.langsam.detector import Detections, GroundingDinoDetector, grounding_prompt
from storyagent.models.langsam.pipeline import LangSAMPipeline, SubjectMask, resize_box, resize_mask
from storyagent.models.langsam.segmenter import SamArchitecture, SamSegmenter, build_sam, load_sam_state_dict

__all__ = [
    "Detections",
    "GroundingDinoDetector",
    "LangSAMConfig",
    "LangSAMPipeline",
    "SamArchitecture",
    "SamSegmenter",
    "SubjectMask",
    "build_sam",
    "grounding_prompt",
    "load_sam_state_dict",
    "resize_box",
    "resize_mask",
]

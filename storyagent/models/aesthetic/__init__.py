"""LAION improved aesthetic predictor v2 (the Observer's storyboard score)."""

from storyagent.models.aesthetic.config import AestheticHeadConfig
from storyagent.models.aesthetic.convert import convert_head_to_safetensors
from storyagent.models.aesthetic.head import PUBLISHED_HEAD_SHAPES, AestheticHead, load_head_state_dict
from storyagent.models.aesthetic.pipeline import AestheticPredictor, image_embeddings

__all__ = [
    "PUBLISHED_HEAD_SHAPES", "AestheticHead", "AestheticHeadConfig", "AestheticPredictor",
    "convert_head_to_safetensors", "image_embeddings", "load_head_state_dict",
]

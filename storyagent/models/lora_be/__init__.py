"""LoRA-BE: teach DynamiCrafter a user's subject (LoRA + block-wise token embeddings + localization loss)."""

from storyagent.models.lora_be.adapter import LoRABEAdapter, SubjectPromptEncoder, add_lora, is_temporal, load_adapter
from storyagent.models.lora_be.augment import augment_clip, fit_clip
from storyagent.models.lora_be.config import LoRABEConfig
from storyagent.models.lora_be.data import Clip, Segmenter, load_subject_clips
from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings, module_text_contexts, tokenize_with_subject
from storyagent.models.lora_be.losses import localization_loss
from storyagent.models.lora_be.trainer import LoRABETrainer, StepResult

__all__ = [
    "BlockwiseEmbeddings", "Clip", "LoRABEAdapter", "LoRABEConfig", "LoRABETrainer", "Segmenter", "StepResult",
    "SubjectPromptEncoder", "add_lora", "augment_clip", "fit_clip", "is_temporal", "load_adapter",
    "load_subject_clips", "localization_loss", "module_text_contexts", "tokenize_with_subject",
]

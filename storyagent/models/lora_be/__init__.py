"""LoRA-BE: teach DynamiCrafter a user's subject (LoRA + block-wise token embeddings + localization loss).

One subject: `LoRABEConfig` + `LoRABETrainer(pipe, config, folder).train(load_subject_clips(media))`.
A cast: `cast_config([CastToken(token, class_word, name), ...], **settings)` (a `LoRABECastConfig`
for two or more characters, today's `LoRABEConfig` for one), and
`trainer.train(cast_clips({token: load_subject_clips(that character's media), ...}))`: one LoRA for
the cast, one token with its own block-wise embeddings per character. `load_adapter(pipe, path)`
returns the config; its `.characters` are every token (with class word and name), lead first, and
`name_tokens(prompt, config.characters)` writes a video prompt with the tokens for the names. The
adapter file pins the fs it was trained at (`adapter_fs(path)`); `load_adapter` makes it the
pipeline's default fs, so clips are sampled at the frame rate the subject's motion was learnt at.
"""

from storyagent.models.lora_be.adapter import (
    CastPromptEncoder, LoRABEAdapter, SubjectPromptEncoder, adapter_fs, add_lora, is_temporal, load_adapter,
    name_tokens,
)
from storyagent.models.lora_be.augment import augment_clip, composite_clip, fit_clip
from storyagent.models.lora_be.config import CastToken, LoRABECastConfig, LoRABEConfig, cast_config
from storyagent.models.lora_be.data import Clip, Segmenter, cast_clips, load_subject_clips
from storyagent.models.lora_be.embeddings import (
    BlockwiseEmbeddings, cast_text_contexts, module_text_contexts, tokenize_with_subject, tokenize_with_subjects,
)
from storyagent.models.lora_be.losses import localization_loss
from storyagent.models.lora_be.trainer import LoRABETrainer, StepResult

__all__ = [
    "BlockwiseEmbeddings", "CastPromptEncoder", "CastToken", "Clip", "LoRABEAdapter", "LoRABECastConfig",
    "LoRABEConfig", "LoRABETrainer", "Segmenter", "StepResult", "SubjectPromptEncoder", "adapter_fs", "add_lora", "augment_clip",
    "cast_clips", "cast_config", "cast_text_contexts", "composite_clip", "fit_clip", "is_temporal", "load_adapter",
    "load_subject_clips", "localization_loss", "module_text_contexts", "name_tokens", "tokenize_with_subject",
    "tokenize_with_subjects",
]

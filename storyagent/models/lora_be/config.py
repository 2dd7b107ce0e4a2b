"""Configuration of a LoRA-BE fine-tune (LoRA + block-wise subject-token embeddings + localization loss).

One character: `LoRABEConfig`, the same fields and values as it has always had (its `asdict`, hashed
with sorted keys, is a cache key). The training schedule it shares with DC-finetuning is
`ClipTrainingConfig`.
A cast of several characters: `LoRABECastConfig`, the same settings plus `cast`, one `CastToken`
per character (lead first); `cast_config(characters, **settings)` picks the right one, so a cast
of one is a plain `LoRABEConfig`. Both answer `config.characters`, the tokens the adapter teaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storyagent.errors import InputError

from storyagent.models.configuration import ConfigFileMixin

# Linear projections of every spatial self/cross-attention (text and image branches) and every
# temporal attention of our DynamiCrafter UNet (names as in storyagent.models.dynamicrafter.unet).
DEFAULT_TARGET_MODULES = (
    r".*(spatial|temporal|init_temporal_attn)\.transformer_blocks\.\d+\.attn[12]\."
    r"(to_q|to_k|to_v|to_k_ip|to_v_ip|to_out\.0)"
)


@dataclass
class ClipTrainingConfig(ConfigFileMixin):
    """How a fine-tune on a subject's reference clips trains: the schedule LoRA-BE (`LoRABEConfig`) and
    DC-finetuning (`dynamicrafter.finetune_image.ImageInjectionConfig`) share, so the two differ only
    in what they train. Fields first in `asdict`, which is hashed with sorted keys: the order
    changes no cache key."""

    learning_rate: float = 1e-4
    """Adam learning rate of the trained weights (LoRA-BE: LoRA and embeddings; DC-finetuning, for which
    the paper gives none: the image injection module, at LoRA-BE's rate)."""
    epochs: int = 400
    """Passes over the reference clips (one step per clip per epoch)."""
    frames: int | None = None
    """Frames per training clip; None uses the model's setting (16)."""
    height: int | None = None
    """Training height in pixels; None uses the model's setting."""
    width: int | None = None
    """Training width in pixels; None uses the model's setting."""
    fs: int | None = None
    """fs conditioning for clips without a frame rate (photos); None uses the model's default.
    Video clips are always conditioned on their own rate after striding (source fps / stride)."""
    gradient_checkpointing: bool = True
    """Recompute UNet stages in the backward pass to save memory."""
    mixed_precision: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every this many steps (and at the end)."""
    augment: bool = True
    """Background-agnostic augmentation: paste the subject on other backgrounds, flip, scale, shift."""
    seed: int = 0
    """Seed of the sampler of clips, timesteps, noise and augmentations."""


@dataclass
class LoRABEConfig(ClipTrainingConfig):
    """What LoRA-BE learns (LoRA on attention + one subject-token embedding per cross-attention module) and how
    (the schedule: `ClipTrainingConfig`)."""

    token: str = "<subject>"
    """The new subject token as written in prompts, e.g. "<miffy>"."""
    class_word: str = "object"
    """A word for the subject's kind ("rabbit"); the block-wise embeddings start from its embedding."""
    rank: int = 4
    """LoRA rank."""
    alpha: float = 4.0
    """LoRA alpha (the update is scaled by alpha / rank)."""
    target_modules: str = DEFAULT_TARGET_MODULES
    """Regular expression (full match) over UNet module names that get LoRA."""
    blockwise_embeddings: bool = True
    """Learn the subject token's block-wise embeddings (False: the paper's "DC" ablation, a LoRA
    fine-tune alone; the token keeps the class word's embedding in every module)."""
    localization_weight: float = 1.0
    """lambda: total loss = diffusion loss + lambda * localization loss (the mean over the
    cross-attention modules, not their sum; see `losses.localization_loss`)."""
    prompt_template: str = "a video of {token}"
    """Training prompt; {token} is replaced by the subject token."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the adapter."""

    # Properties, not fields: `asdict` (the fine-tune's cache key) stays what it was.
    @property
    def characters(self) -> tuple[CastToken, ...]:
        """The tokens this adapter teaches, lead first: here the one subject."""
        return (CastToken(self.token, self.class_word),)

    @property
    def tokens(self) -> list[str]:
        """The tokens of `characters`, in order."""
        return [c.token for c in self.characters]


@dataclass(frozen=True)
class CastToken:
    """One character of a cast adapter: its token, the word its embeddings start from, its name."""

    token: str
    """The character's token as prompts write it, e.g. "<crong>"."""
    class_word: str = "object"
    """A word for the character's kind ("dinosaur"); its 16 block-wise embeddings start from it."""
    name: str = ""
    """The character's name as the story writes it ("Crong"), so prompts can swap it for `token`;
    "" when unknown (a one-character config records no name)."""


@dataclass
class LoRABECastConfig(LoRABEConfig):
    """A LoRA-BE fine-tune of a whole cast: one LoRA shared by every character, and per character one
    token with its own block-wise embeddings (one per cross-attention module).

    `token` and `class_word` are the lead's (`cast[0]`), so code that knows one subject still finds
    the lead there. Training prompts write `prompt_template` with {token} = the token(s) of the
    character(s) a clip shows ("a video of <pororo> and <crong>").
    """

    cast: tuple[CastToken, ...] = ()
    """The characters, lead first; at least two (a cast of one is a `LoRABEConfig`, see `cast_config`)."""
    composite_share: float = 0.25
    """Share of training steps that show two characters together: the step's clip with another
    character's clip pasted beside it, prompted with both tokens, each token's localization loss on
    its own mask. 0 trains every character on its own clips only."""

    def __post_init__(self) -> None:
        cast = tuple(c if isinstance(c, CastToken) else CastToken(**c) for c in self.cast)
        if len(cast) < 2:
            raise InputError("A LoRA-BE cast needs at least two characters; one character is a LoRABEConfig "
                             "(use lora_be.cast_config).")
        tokens = [c.token for c in cast]
        for i, a in enumerate(tokens):
            if not a.strip():
                raise InputError("A LoRA-BE cast token is empty.")
            for j, b in enumerate(tokens):
                # Prompts are cut at the tokens' text: one inside another would be found twice.
                if i != j and a in b:
                    raise InputError(f"LoRA-BE cast tokens must differ and not contain one another: {a!r}, {b!r}.")
        if not 0.0 <= self.composite_share <= 1.0:
            raise InputError(f"composite_share must lie in [0, 1], not {self.composite_share}.")
        self.cast = cast
        self.token, self.class_word = cast[0].token, cast[0].class_word

    @property
    def characters(self) -> tuple[CastToken, ...]:
        return self.cast

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoRABECastConfig:
        data = dict(data)
        data["cast"] = [CastToken(**c) if isinstance(c, dict) else c for c in data.get("cast", ())]
        return super().from_dict(data)


def cast_config(characters: Sequence[CastToken], **settings: Any) -> LoRABEConfig:
    """The config of an adapter for `characters` (lead first) with the other fields from `settings`:
    a plain `LoRABEConfig` for one character (exactly today's, same `asdict`, same cache key; the
    name is not recorded), a `LoRABECastConfig` for several."""
    if not characters:
        raise InputError("A LoRA-BE adapter needs at least one character.")
    if len(characters) == 1:
        (one,) = characters
        settings.pop("composite_share", None)  # a cast-only setting
        return LoRABEConfig(token=one.token, class_word=one.class_word, **settings)
    return LoRABECastConfig(cast=tuple(characters), **settings)

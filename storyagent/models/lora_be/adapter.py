"""The LoRA-BE adapter: LoRA on the UNet's attention projections plus block-wise subject embeddings.

One safetensors file holds the LoRA weights (`lora.*`), the embeddings (`embeddings`, M x d) and,
in its metadata, the token, the class word and the config. Loading it into a DynamiCrafter
pipeline lets prompts mention the token.

A cast adapter (`LoRABECastConfig`: one LoRA shared by K characters, one token each) is the same
file with format `storyagent-lora-be-cast-1`, `embeddings` of shape (K, M, d) in cast order,
`token`/`class_word` the lead's, and `tokens` = JSON list of {token, class_word, name}.

Both formats pin `fs` in the metadata: the fs conditioning the adapter was trained at (its video
clips' frame rate after striding, about 8; see `LoRABETrainer.sampling_fs`), which the sampler uses
for its clips (`load_adapter` sets `pipe.adapter_fs`). DynamiCrafter's fs says how far apart the
frames are: an adapter whose temporal LoRA learnt motion at fs 8 and is sampled at the variant's 24
is asked for motion it never saw. A file written before the fs was pinned has none (`fs` is None):
the sampler then keeps the variant's default, as it always did.

API (stable; the diffusion backend calls it):
- `load_adapter(pipe, path) -> LoRABEConfig`: injects the LoRA and a prompt hook that knows every
  token; the returned config's `.characters` (CastToken: token, class_word, name; lead first)
  lists them, `.token` is the lead's. One-character files load exactly as before.
- `name_tokens(text, characters)`: the prompt with each character's name swapped for its token.
- `LoRABEAdapter.from_pretrained(path).characters`: the same, without a pipeline.
- `adapter_fs(path)`: the fs the adapter file pins (None for an older file), its metadata alone read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from safetensors import safe_open

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.encoders import TextEncoder
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
from storyagent.models.lora_be.config import CastToken, LoRABECastConfig, LoRABEConfig
from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings, cast_text_contexts, tokenize_with_subjects

ADAPTER_FORMAT = "storyagent-lora-be-1"
CAST_ADAPTER_FORMAT = "storyagent-lora-be-cast-1"


def add_lora(unet: DynamiCrafterUNet, config: LoRABEConfig) -> list[torch.nn.Parameter]:
    """Freeze the UNet and inject LoRA (B zero-initialised, so outputs are unchanged); returns the LoRA parameters."""
    for p in unet.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, target_modules=config.target_modules, lora_dropout=0.0)
    inject_adapter_in_model(lora, unet)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        # LoRA weights stay float32 under a bf16/fp16 base, so small Adam updates are not rounded away.
        p.data = p.data.float()
        p.requires_grad_(True)
    if not params:
        raise InputError(f"LoRA target_modules {config.target_modules!r} matched no UNet module.")
    return params


def is_temporal(name: str) -> bool:
    """Whether a UNet parameter lies in a temporal layer (temporal attention or convolution,
    `init_temporal_attn`): the part of the model that learns motion rather than appearance."""
    return any("temporal" in part for part in name.split("."))


class CastPromptEncoder:
    """The pipeline's prompt hook for a cast: prompts mentioning any of the tokens -> (M, b, 77, d)
    per-module text contexts, token k's positions carrying its own embedding e_k[m] in module m."""

    def __init__(self, text_encoder: TextEncoder, embeddings: Sequence[BlockwiseEmbeddings], tokens: Sequence[str]) -> None:
        if len(embeddings) != len(tokens):
            raise ValueError(f"{len(embeddings)} block-wise embeddings for {len(tokens)} tokens")
        self.text_encoder = text_encoder
        self.token_embeddings = list(embeddings)
        self.tokens = list(tokens)

    def __call__(self, prompts: list[str]) -> torch.Tensor | None:
        if not any(t in p for p in prompts for t in self.tokens):
            return None
        ids, masks = tokenize_with_subjects(self.text_encoder, prompts, self.tokens)
        with torch.no_grad():
            return cast_text_contexts(self.text_encoder, self.token_embeddings, ids, masks)


class SubjectPromptEncoder(CastPromptEncoder):
    """The prompt hook of a one-subject adapter: prompts mentioning the token -> (M, b, 77, d) contexts."""

    def __init__(self, text_encoder: TextEncoder, embeddings: BlockwiseEmbeddings, token: str) -> None:
        super().__init__(text_encoder, [embeddings], [token])
        self.embeddings = embeddings
        self.token = token


def name_tokens(text: str, characters: Sequence[CastToken]) -> str:
    """`text` with every whole-word, any-case mention of a character's name replaced by its token
    (characters without a name are left alone); longer names first, so "Mr Fox" wins over "Fox"."""
    for c in sorted((c for c in characters if c.name.strip()), key=lambda c: len(c.name), reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(c.name.strip())}(?!\w)", lambda _m, t=c.token: t, text, flags=re.IGNORECASE)
    return text


@dataclass
class LoRABEAdapter:
    """A trained subject (or cast), as one safetensors file holds it (`save_pretrained` / `from_pretrained`)."""

    config: LoRABEConfig
    """The fine-tune's config; its token and class word are also written to the file's metadata."""
    lora: dict[str, torch.Tensor]
    """LoRA weights under peft's state-dict names (stored as `lora.<name>`)."""
    embeddings: torch.Tensor
    """(M, d) subject-token input embedding per cross-attention module (stored as `embeddings`);
    a cast adapter's is (K, M, d), one (M, d) table per character in `config.characters` order."""
    fs: int | None = None
    """The fs conditioning the adapter was trained at, and is to be sampled at (metadata `fs`); None
    in a file written before it was pinned (sample at the model's default)."""

    @property
    def characters(self) -> tuple[CastToken, ...]:
        """The tokens the adapter teaches (with class words and, for a cast, names), lead first."""
        return self.config.characters

    @property
    def token_embeddings(self) -> list[torch.Tensor]:
        """One (M, d) table per character, in `characters` order."""
        return [self.embeddings] if self.embeddings.ndim == 2 else list(self.embeddings.unbind(0))

    @classmethod
    def from_model(cls, unet: DynamiCrafterUNet, embeddings: BlockwiseEmbeddings | Sequence[BlockwiseEmbeddings],
                   config: LoRABEConfig, fs: int | None = None) -> LoRABEAdapter:
        """The adapter as it stands in a UNet with LoRA injected and its block-wise embeddings
        (one `BlockwiseEmbeddings`, or one per character of a cast config); `fs`: the fs it was trained at."""
        lora = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
        tables = [embeddings] if isinstance(embeddings, BlockwiseEmbeddings) else list(embeddings)
        return cls(config, lora, stacked_embeddings(tables, config), fs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> LoRABEAdapter:
        with _open_adapter(path) as (f, meta):
            tensors = {k: f.get_tensor(k).to(device, torch_dtype) for k in f.keys()}
        kind = LoRABECastConfig if meta["format"] == CAST_ADAPTER_FORMAT else LoRABEConfig
        config = kind.from_dict(json.loads(meta["config"]))
        lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
        table = tensors["embeddings"]
        if table.ndim != (3 if kind is LoRABECastConfig else 2) or (table.ndim == 3 and table.shape[0] != len(config.characters)):
            raise InputError(f"{path} holds embeddings of shape {tuple(table.shape)} for {len(config.characters)} "
                             "character(s); the file is damaged.")
        return cls(config, lora, table, _fs_of(meta, path))

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        from storyagent.fileio import atomic_save_safetensors

        tensors = {f"lora.{k}": v for k, v in self.lora.items()}
        tensors["embeddings"] = self.embeddings
        meta = {"format": ADAPTER_FORMAT, "token": self.config.token, "class_word": self.config.class_word,
                "config": json.dumps(self.config.to_dict())}
        if self.fs is not None:
            meta["fs"] = str(int(self.fs))
        if isinstance(self.config, LoRABECastConfig):
            # The cast's tokens in the metadata too: readable without parsing the config.
            meta |= {"format": CAST_ADAPTER_FORMAT, "tokens": json.dumps([asdict(c) for c in self.characters])}
        atomic_save_safetensors(path, tensors, metadata=meta)
        return Path(path)


def stacked_embeddings(embeddings: Sequence[BlockwiseEmbeddings], config: LoRABEConfig) -> torch.Tensor:
    """The adapter file's `embeddings` from one `BlockwiseEmbeddings` per character of `config`: (M, d)
    for one subject, (K, M, d) for a cast."""
    if len(embeddings) != len(config.characters):
        raise ValueError(f"{len(embeddings)} block-wise embeddings for {len(config.characters)} characters")
    stacked = torch.stack([e.embeddings.detach().cpu().float() for e in embeddings])
    return (stacked if isinstance(config, LoRABECastConfig) else stacked[0]).contiguous()


def frozen_embeddings(tables: Sequence[torch.Tensor]) -> list[BlockwiseEmbeddings]:
    """One frozen `BlockwiseEmbeddings` per (M, d) table of an adapter (`LoRABEAdapter.token_embeddings`)."""
    embeddings = []
    for table in tables:
        emb = BlockwiseEmbeddings(table.shape[0], table.shape[1])
        emb.embeddings.data.copy_(table)
        emb.requires_grad_(False)
        embeddings.append(emb)
    return embeddings


@contextlib.contextmanager
def _open_adapter(path: str | os.PathLike[str]) -> Iterator[tuple[Any, dict[str, str]]]:
    """(the open safetensors file, its metadata) of the LoRA-BE adapter at `path`; refuses a missing file
    or one of another format."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Adapter file {path} does not exist; train one with `storyagent finetune video`.")
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") not in (ADAPTER_FORMAT, CAST_ADAPTER_FORMAT):
            raise InputError(f"{path} is not a LoRA-BE adapter (format {meta.get('format')!r}).")
        yield f, meta


def _fs_of(meta: dict[str, str], path: str | os.PathLike[str]) -> int | None:
    """The `fs` an adapter file's metadata pins, or None (a file from before it was pinned)."""
    if "fs" not in meta:
        return None
    try:
        fs = int(meta["fs"])
    except ValueError:
        fs = 0
    if fs < 1:
        raise InputError(f"{path} pins fs {meta['fs']!r}, not a positive whole number; the file is damaged.")
    return fs


def adapter_fs(path: str | os.PathLike[str]) -> int | None:
    """The fs the LoRA-BE file at `path` was trained at (to sample its clips at), from its metadata
    alone; None for a file written before the fs was pinned."""
    with _open_adapter(path) as (_, meta):
        return _fs_of(meta, path)


def load_adapter(pipe: DynamiCrafterPipeline, path: str | os.PathLike[str]) -> LoRABEConfig:
    """Inject the adapter's LoRA into `pipe.unet` and let prompts mention its token(s).

    Returns the adapter's config: `.token` is the (lead) subject's token and `.characters` every
    token of a cast (with class words and names; see `name_tokens`), lead first. The pipeline then
    samples at the fs the adapter was trained at (`pipe.adapter_fs`, when the file pins one).
    """
    adapter = LoRABEAdapter.from_pretrained(path)
    config = adapter.config
    tables = adapter.token_embeddings
    modules = len(pipe.unet.cross_attentions)
    if tables[0].shape[0] != modules:
        raise InputError(f"Adapter {path} has {tables[0].shape[0]} block-wise embeddings but this model has "
                         f"{modules} cross-attention modules; it was trained for another configuration.")
    add_lora(pipe.unet, config)
    result = set_peft_model_state_dict(pipe.unet, adapter.lora)
    if getattr(result, "unexpected_keys", None):
        raise InputError(f"Adapter {path} does not fit this UNet ({result.unexpected_keys[0]} ...).")
    for p in pipe.unet.parameters():
        p.requires_grad_(False)
    pipe.unet.to(pipe.device if not pipe.offload else "cpu", pipe.dtype)
    embeddings = frozen_embeddings(tables)
    if isinstance(config, LoRABECastConfig):
        pipe.prompt_hook = CastPromptEncoder(pipe.text_encoder, embeddings, config.tokens)
    else:
        pipe.prompt_hook = SubjectPromptEncoder(pipe.text_encoder, embeddings[0], config.token)
    pipe.adapter_fs = adapter.fs
    return config

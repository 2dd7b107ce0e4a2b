"""The LoRA-BE adapter: LoRA on the UNet's attention projections plus block-wise subject embeddings.

One safetensors file holds the LoRA weights (`lora.*`), the embeddings (`embeddings`, M x d) and,
in its metadata, the token, the class word and the config. Loading it into a DynamiCrafter
pipeline lets prompts mention the token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from safetensors import safe_open

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.encoders import TextEncoder
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
from storyagent.models.lora_be.config import LoRABEConfig
from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings, module_text_contexts, tokenize_with_subject

ADAPTER_FORMAT = "storyagent-lora-be-1"


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


class SubjectPromptEncoder:
    """The pipeline's prompt hook: prompts mentioning the token -> (M, b, 77, d) per-module text contexts."""

    def __init__(self, text_encoder: TextEncoder, embeddings: BlockwiseEmbeddings, token: str) -> None:
        self.text_encoder = text_encoder
        self.embeddings = embeddings
        self.token = token

    def __call__(self, prompts: list[str]) -> torch.Tensor | None:
        if not any(self.token in p for p in prompts):
            return None
        ids, mask = tokenize_with_subject(self.text_encoder, prompts, self.token)
        with torch.no_grad():
            return module_text_contexts(self.text_encoder, self.embeddings, ids, mask)


@dataclass
class LoRABEAdapter:
    """A trained subject, as one safetensors file holds it (`save_pretrained` / `from_pretrained`)."""

    config: LoRABEConfig
    """The fine-tune's config; its token and class word are also written to the file's metadata."""
    lora: dict[str, torch.Tensor]
    """LoRA weights under peft's state-dict names (stored as `lora.<name>`)."""
    embeddings: torch.Tensor
    """(M, d) subject-token input embedding per cross-attention module (stored as `embeddings`)."""

    @classmethod
    def from_model(cls, unet: DynamiCrafterUNet, embeddings: BlockwiseEmbeddings, config: LoRABEConfig) -> LoRABEAdapter:
        """The adapter as it stands in a UNet with LoRA injected and its block-wise embeddings."""
        lora = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
        return cls(config, lora, embeddings.embeddings.detach().cpu().float().contiguous())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> LoRABEAdapter:
        path = Path(path)
        if not path.exists():
            raise InputError(f"Adapter file {path} does not exist; train one with `storyagent finetune video`.")
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != ADAPTER_FORMAT:
                raise InputError(f"{path} is not a LoRA-BE adapter (format {meta.get('format')!r}).")
            tensors = {k: f.get_tensor(k).to(device, torch_dtype) for k in f.keys()}
        config = LoRABEConfig.from_dict(json.loads(meta["config"]))
        lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
        return cls(config, lora, tensors["embeddings"])

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        from storyagent.fileio import atomic_save_safetensors

        tensors = {f"lora.{k}": v for k, v in self.lora.items()}
        tensors["embeddings"] = self.embeddings
        meta = {"format": ADAPTER_FORMAT, "token": self.config.token, "class_word": self.config.class_word,
                "config": json.dumps(self.config.to_dict())}
        atomic_save_safetensors(path, tensors, metadata=meta)
        return Path(path)


def load_adapter(pipe: DynamiCrafterPipeline, path: str | os.PathLike[str]) -> LoRABEConfig:
    """Inject the adapter's LoRA into `pipe.unet` and let prompts mention its token."""
    adapter = LoRABEAdapter.from_pretrained(path)
    config, table = adapter.config, adapter.embeddings
    modules = len(pipe.unet.cross_attentions)
    if table.shape[0] != modules:
        raise InputError(f"Adapter {path} has {table.shape[0]} block-wise embeddings but this model has "
                         f"{modules} cross-attention modules; it was trained for another configuration.")
    add_lora(pipe.unet, config)
    result = set_peft_model_state_dict(pipe.unet, adapter.lora)
    if getattr(result, "unexpected_keys", None):
        raise InputError(f"Adapter {path} does not fit this UNet ({result.unexpected_keys[0]} ...).")
    for p in pipe.unet.parameters():
        p.requires_grad_(False)
    pipe.unet.to(pipe.device if not pipe.offload else "cpu", pipe.dtype)
    embeddings = BlockwiseEmbeddings(table.shape[0], table.shape[1])
    embeddings.embeddings.data.copy_(table)
    embeddings.requires_grad_(False)
    pipe.prompt_hook = SubjectPromptEncoder(pipe.text_encoder, embeddings, config.token)
    return config

"""LoRA-BE on Wan: LoRA (peft) on every attention projection of every block of each expert, and one
subject-token embedding per block, in the same adapter file as DynamiCrafter's (`lora_be.LoRABEAdapter`).

The file's LoRA weights are named `<expert>.<peft name>` (`transformer.blocks.0.attn1.to_q.lora_A.weight`;
Wan2.2-A14B also has `transformer_2.`); `embeddings` is (M, d) for one subject and (K, M, d) for a
cast, d being UMT5's width (4096). The config (`LoRABEConfig` or `LoRABECastConfig`) records in
`extra["video_model"]` which Wan it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict

from storyagent.errors import InputError
from storyagent.models.lora_be.adapter import LoRABEAdapter, frozen_embeddings, stacked_embeddings
from storyagent.models.lora_be.config import LoRABECastConfig, LoRABEConfig
from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings
from storyagent.models.wan.attention import BlockwiseState, install_blockwise
from storyagent.models.wan.prompts import block_contexts, pack, tokenize_with_subjects

EXPERTS = ("transformer", "transformer_2")


def experts(pipe) -> dict[str, torch.nn.Module]:
    """The pipeline's transformers by component name (`transformer`, and `transformer_2` on Wan2.2-A14B)."""
    return {name: getattr(pipe, name) for name in EXPERTS if getattr(pipe, name, None) is not None}


def add_lora(pipe, config: LoRABEConfig) -> list[torch.nn.Parameter]:
    """Freeze every expert and inject LoRA (B zero-initialised: outputs unchanged) into each; the LoRA parameters."""
    params: list[torch.nn.Parameter] = []
    for name, transformer in experts(pipe).items():
        transformer.requires_grad_(False)
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, target_modules=config.target_modules, lora_dropout=0.0)
        inject_adapter_in_model(lora, transformer)
        found = [p for n, p in transformer.named_parameters() if "lora_" in n]
        if not found:
            raise InputError(f"LoRA target_modules {config.target_modules!r} matched nothing in the Wan {name}.")
        for p in found:
            p.data = p.data.float()  # float32 under a bf16 base, so small Adam updates are not rounded away
            p.requires_grad_(True)
        params += found
    return params


def lora_state_dict(pipe) -> dict[str, torch.Tensor]:
    """Every expert's LoRA weights under `<expert>.<peft name>`."""
    return {f"{name}.{k}": v.detach().cpu().contiguous()
            for name, transformer in experts(pipe).items() for k, v in get_peft_model_state_dict(transformer).items()}


def set_lora_state_dict(pipe, lora: dict[str, torch.Tensor], source: str | os.PathLike[str] = "adapter") -> None:
    for name, transformer in experts(pipe).items():
        own = {k[len(name) + 1 :]: v for k, v in lora.items() if k.split(".", 1)[0] == name}
        if not own:
            raise InputError(f"{source} holds no LoRA for the Wan {name}; it was trained for another model.")
        result = set_peft_model_state_dict(transformer, own)
        if getattr(result, "unexpected_keys", None):
            raise InputError(f"{source} does not fit this Wan {name} ({result.unexpected_keys[0]} ...).")


class WanPromptEncoder:
    """The pipeline's prompt hook: a prompt naming any of the tokens -> its packed block-wise context
    (b, M x L, d) (see `attention`); None for a prompt naming none (the pipeline encodes it itself)."""

    def __init__(self, pipe, embeddings: Sequence[BlockwiseEmbeddings], tokens: Sequence[str], state: BlockwiseState,
                 max_length: int, device: torch.device | None = None) -> None:
        if len(embeddings) != len(tokens):
            raise ValueError(f"{len(embeddings)} block-wise embeddings for {len(tokens)} tokens")
        self.pipe, self.token_embeddings, self.tokens = pipe, list(embeddings), list(tokens)
        self.state, self.max_length = state, max_length
        self.device = device
        """Where the text encoder runs (a trainer's device); None: the pipeline's execution device."""

    def contexts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """((M, b, L, d) block contexts, (K, b, L) token positions) of `prompts`, with gradients to the embeddings."""
        ids, attention, masks = tokenize_with_subjects(self.pipe.tokenizer, prompts, self.tokens, self.max_length)
        contexts = block_contexts(self.pipe.text_encoder, self.token_embeddings, ids, attention, masks, self.max_length,
                                  self.device or self.pipe._execution_device)
        masks = torch.nn.functional.pad(masks, (0, self.max_length - masks.shape[-1]))
        return contexts, masks

    def __call__(self, prompts: list[str]) -> torch.Tensor | None:
        if not any(t in p for p in prompts for t in self.tokens):
            return None
        self.state.text_len = self.max_length
        with torch.no_grad():
            return pack(self.contexts(prompts)[0])


def load_adapter(pipe, path: str | os.PathLike[str], max_length: int = 512) -> tuple[LoRABEConfig, WanPromptEncoder]:
    """Inject the adapter's LoRA into every expert of diffusers' Wan `pipe`, install the block-wise
    processors; returns the adapter's config and the prompt hook through which a prompt naming a token
    reaches each block with that block's own embedding. The config's `.characters` are every token (a cast's too), lead first."""
    adapter = LoRABEAdapter.from_pretrained(path)
    config = adapter.config
    trained_for = config.extra.get("video_model")
    blocks = len(pipe.transformer.blocks if pipe.transformer is not None else pipe.transformer_2.blocks)
    tables = adapter.token_embeddings
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    if tables[0].shape != (blocks, width):
        what = f"a Wan adapter for {trained_for}" if trained_for else "not a Wan adapter (DynamiCrafter's?)"
        raise InputError(f"Adapter {path} holds {tables[0].shape[0]} block-wise embeddings of width {tables[0].shape[1]}, "
                         f"but this model has {blocks} blocks and a text width of {width}: it is {what}.")
    add_lora(pipe, config)
    set_lora_state_dict(pipe, adapter.lora, path)
    for transformer in experts(pipe).values():
        transformer.requires_grad_(False)
    state = BlockwiseState(num_blocks=blocks, text_len=max_length)
    install_blockwise(list(experts(pipe).values()), state)
    embeddings = frozen_embeddings(tables)
    tokens = config.tokens if isinstance(config, LoRABECastConfig) else [config.token]
    return config, WanPromptEncoder(pipe, embeddings, tokens, state, max_length)


def adapter_from(pipe, embeddings: Sequence[BlockwiseEmbeddings], config: LoRABEConfig) -> LoRABEAdapter:
    """The adapter as it stands in `pipe`'s experts and `embeddings` (one per character of `config`)."""
    return LoRABEAdapter(config, lora_state_dict(pipe), stacked_embeddings(embeddings, config))


def save_adapter(pipe, embeddings: Sequence[BlockwiseEmbeddings], config: LoRABEConfig, path: str | Path) -> Path:
    return adapter_from(pipe, embeddings, config).save_pretrained(path)

"""Prompts with subject tokens for Wan's UMT5 text encoder: one context per transformer block.

As in LoRA-BE on DynamiCrafter (`lora_be.embeddings`), the subject token takes one position of the
prompt and block m's context is the text encoder's output with e[m] as that position's input
embedding; all M contexts come from one batched encoder pass. UMT5 attends both ways, so every
position of block m's context carries e[m] (CLIP's causal mask limits that to the positions after
the token). Each context is laid out as diffusers' pipeline lays out a prompt: the encoder's
output over the real tokens, zeros after them, `max_sequence_length` long.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean
from torch import nn

from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings


def tokenize_with_subjects(tokenizer, prompts: list[str], tokens: Sequence[str],
                           max_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (b, S), attention mask (b, S), token masks (K, b, S)) with S the longest prompt's length
    (at most `max_length`): each occurrence of `tokens[k]` is one placeholder position in mask k.

    The text between the tokens is cleaned as diffusers cleans a Wan prompt (`prompt_clean`) and
    tokenized without special tokens; the prompt ends with the tokenizer's end-of-sequence token.
    """
    index = {t: k for k, t in enumerate(tokens)}
    # Longest first, so a token is never cut at a shorter one it starts with.
    pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(index, key=len, reverse=True)) + ")")
    placeholder = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
    rows: list[list[int]] = []
    where: list[list[tuple[int, int]]] = []
    for prompt in prompts:
        row: list[int] = []
        found: list[tuple[int, int]] = []
        for j, piece in enumerate(pattern.split(prompt) if tokens else [prompt]):
            if j % 2:
                found.append((index[piece], len(row)))
                row.append(placeholder)  # its input embedding is replaced by the block's own
            elif (text := prompt_clean(piece)).strip():
                row.extend(tokenizer(text, add_special_tokens=False).input_ids)
        row = row[: max_length - 1] + [tokenizer.eos_token_id]
        rows.append(row)
        where.append([(k, p) for k, p in found if p < len(row) - 1])
    length = max(len(r) for r in rows)
    ids = torch.full((len(prompts), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), length), dtype=torch.long)
    masks = torch.zeros((len(tokens), len(prompts), length), dtype=torch.bool)
    for i, (row, found) in enumerate(zip(rows, where)):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        for k, p in found:
            masks[k, i, p] = True
    return ids, attention, masks


def block_contexts(text_encoder: nn.Module, embeddings: Sequence[BlockwiseEmbeddings], ids: torch.Tensor,
                   attention: torch.Tensor, token_masks: torch.Tensor, max_length: int,
                   device: torch.device | None = None) -> torch.Tensor:
    """(M, b, max_length, d) text contexts: block m's with e_k[m] at token k's positions, zeros after the
    prompt's tokens (as diffusers pads a Wan prompt); one batched pass of M copies through the encoder,
    run on `device` (the pipeline's execution device; default: where the encoder's weights are)."""
    table = text_encoder.get_input_embeddings()
    m, (b, length) = embeddings[0].num_modules, ids.shape
    base = table(ids.to(table.weight.device))  # (b, S, d_in), wherever the table sits (offloaded or not)
    inputs = base[None].expand(m, -1, -1, -1)
    for emb, where in zip(embeddings, token_masks.to(base.device), strict=True):
        if emb.num_modules != m:
            raise ValueError(f"block-wise embeddings for {emb.num_modules} and {m} blocks in one cast")
        inputs = torch.where(where[None, :, :, None], emb.embeddings.to(base.device, base.dtype)[:, None, None, :], inputs)
    device = device or table.weight.device
    mask = attention.to(device).repeat(m, 1)
    out = text_encoder(inputs_embeds=inputs.reshape(m * b, length, -1).to(device), attention_mask=mask).last_hidden_state
    out = out * mask[..., None].to(out.dtype)  # diffusers keeps the real tokens only and pads with zeros
    out = out.view(m, b, length, -1)
    return torch.nn.functional.pad(out, (0, 0, 0, max_length - length))


def pack(contexts: torch.Tensor) -> torch.Tensor:
    """(M, b, L, d) per-block contexts -> (b, M x L, d), block m's at tokens [m L, (m + 1) L) (see `attention`)."""
    m, b, length, d = contexts.shape
    return contexts.permute(1, 0, 2, 3).reshape(b, m * length, d)


@torch.no_grad()
def init_from_word(embeddings: BlockwiseEmbeddings, text_encoder: nn.Module, tokenizer, word: str) -> None:
    """Every block's embedding starts from the mean input embedding of `word`'s tokens."""
    ids = tokenizer(prompt_clean(word), add_special_tokens=False).input_ids or [tokenizer.unk_token_id]
    table = text_encoder.get_input_embeddings().weight
    embeddings.embeddings.copy_(table[torch.tensor(ids, device=table.device)].float().mean(0).expand_as(embeddings.embeddings))

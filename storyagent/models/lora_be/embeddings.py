"""Block-wise subject-token embeddings: one learned input embedding per cross-attention module.

The subject token (e.g. "<miffy>") occupies one position of the prompt. For cross-attention module
m the text encoder sees embedding e[m] at that position, so each module gets its own text context;
all modules' contexts come from one batched text-encoder pass of M copies of the prompt. Positions
before the token are identical across modules; the token's position (and, through the text
encoder's causal attention, the ones after it) carry the module's own embedding.

A cast adapter has one token per character, each with its own M embeddings: module m's context
puts e_k[m] at every position of token k (`tokenize_with_subjects`, `cast_text_contexts`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from storyagent.models.dynamicrafter.encoders import TextEncoder


class BlockwiseEmbeddings(nn.Module):
    """e in R^{M x d}: the subject token's input embedding for each of the M cross-attention modules."""

    def __init__(self, num_modules: int, dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(num_modules, dim))

    @property
    def num_modules(self) -> int:
        return self.embeddings.shape[0]

    @torch.no_grad()
    def init_from_word(self, text_encoder: TextEncoder, word: str) -> None:
        """Every module starts from the mean input embedding of `word`'s tokens."""
        ids = text_encoder.tokenizer(word, add_special_tokens=False).input_ids or [text_encoder.pad_id]
        table = token_table(text_encoder)
        self.embeddings.copy_(table.weight[torch.tensor(ids)].mean(0).expand_as(self.embeddings))


def token_table(text_encoder: TextEncoder) -> nn.Embedding:
    """The text encoder's input token-embedding table."""
    tower = getattr(text_encoder.model, "text_model", text_encoder.model)
    return tower.embeddings.token_embedding


def tokenize_with_subject(text_encoder: TextEncoder, prompts: list[str], token: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (b, L) with one placeholder position per occurrence of `token`, and a (b, L) mask of those positions.

    The token string is cut out before tokenizing, so however the tokenizer would split it, it
    takes exactly one position.
    """
    ids, masks = tokenize_with_subjects(text_encoder, prompts, [token])
    return ids, masks[0]


def tokenize_with_subjects(text_encoder: TextEncoder, prompts: list[str],
                           tokens: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (b, L) with one placeholder position per occurrence of any of `tokens`, and a
    (K, b, L) mask of each token's positions (K = len(tokens))."""
    tok = text_encoder.tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    length = text_encoder.max_length
    index = {t: k for k, t in enumerate(tokens)}
    # Longest first, so a token is never cut at a shorter one it starts with.
    pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(index, key=len, reverse=True)) + ")")
    ids = torch.full((len(prompts), length), text_encoder.pad_id, dtype=torch.long)
    mask = torch.zeros((len(tokens), len(prompts), length), dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        row: list[int] = [bos]
        where: list[tuple[int, int]] = []
        # re.split with a group: text, token, text, token, ..., text.
        for j, piece in enumerate(pattern.split(prompt)):
            if j % 2:
                where.append((index[piece], len(row)))
                row.append(eos)  # placeholder id; its embedding is replaced
            elif piece.strip():
                row.extend(tok(piece.strip(), add_special_tokens=False).input_ids)
        row = row[: length - 1] + [eos]
        ids[i, : len(row)] = torch.tensor(row)
        for k, p in where:
            if p < length - 1:
                mask[k, i, p] = True
    return ids, mask


def module_text_contexts(text_encoder: TextEncoder, embeddings: BlockwiseEmbeddings, ids: torch.Tensor,
                         subject_mask: torch.Tensor) -> torch.Tensor:
    """(M, b, L, d) text contexts, module m's built with e[m] at the subject positions; one batched pass."""
    return cast_text_contexts(text_encoder, [embeddings], ids, subject_mask[None])


def cast_text_contexts(text_encoder: TextEncoder, embeddings: Sequence[BlockwiseEmbeddings], ids: torch.Tensor,
                       token_masks: torch.Tensor) -> torch.Tensor:
    """(M, b, L, d) text contexts, module m's built with e_k[m] at token k's positions; one batched pass.

    embeddings: one `BlockwiseEmbeddings` per token (all with the same M); token_masks: (K, b, L).
    """
    table = token_table(text_encoder)
    device = table.weight.device
    m, (b, length) = embeddings[0].num_modules, ids.shape
    base = table(ids.to(device))  # (b, L, d_in)
    # (M, b, L, d_in): token k's positions take e_k[m], everything else the ordinary token embeddings.
    inputs = base[None].expand(m, -1, -1, -1)
    for emb, where in zip(embeddings, token_masks.to(device), strict=True):
        if emb.num_modules != m:
            raise ValueError(f"block-wise embeddings for {emb.num_modules} and {m} modules in one cast")
        inputs = torch.where(where[None, :, :, None], emb.embeddings.to(device, base.dtype)[:, None, None, :], inputs)
    out = text_encoder(inputs_embeds=inputs.reshape(m * b, length, -1))
    return out.view(m, b, length, -1)

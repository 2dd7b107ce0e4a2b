"""Block-wise subject-token embeddings: one learned input embedding per cross-attention module.

The subject token (e.g. "<miffy>") occupies one position of the prompt. For cross-attention module
m the text encoder sees embedding e[m] at that position, so each module gets its own text context;
all modules' contexts come from one batched text-encoder pass of M copies of the prompt. Positions
before the token are identical across modules; the token's position (and, through the text
encoder's causal attention, the ones after it) carry the module's own embedding.
"""

from __future__ import annotations

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
    tok = text_encoder.tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    length = text_encoder.max_length
    ids = torch.full((len(prompts), length), text_encoder.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        row: list[int] = [bos]
        where: list[int] = []
        for j, piece in enumerate(prompt.split(token)):
            if j > 0:
                where.append(len(row))
                row.append(eos)  # placeholder id; its embedding is replaced
            if piece.strip():
                row.extend(tok(piece.strip(), add_special_tokens=False).input_ids)
        row = row[: length - 1] + [eos]
        ids[i, : len(row)] = torch.tensor(row)
        for p in where:
            if p < length - 1:
                mask[i, p] = True
    return ids, mask


def module_text_contexts(text_encoder: TextEncoder, embeddings: BlockwiseEmbeddings, ids: torch.Tensor,
                         subject_mask: torch.Tensor) -> torch.Tensor:
    """(M, b, L, d) text contexts, module m's built with e[m] at the subject positions; one batched pass."""
    table = token_table(text_encoder)
    device = table.weight.device
    m, (b, length) = embeddings.num_modules, ids.shape
    base = table(ids.to(device))  # (b, L, d_in)
    e = embeddings.embeddings.to(device, base.dtype)
    # (M, b, L, d_in): the subject positions take e[m], everything else the ordinary token embeddings.
    where = subject_mask.to(device)[None, :, :, None]
    inputs = torch.where(where, e[:, None, None, :], base[None])
    out = text_encoder(inputs_embeds=inputs.reshape(m * b, length, -1))
    return out.view(m, b, length, -1)

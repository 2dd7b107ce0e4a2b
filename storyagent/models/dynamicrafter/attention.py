"""Attention building blocks of the DynamiCrafter UNet.

* `DualCrossAttention`: attention whose keys/values come either from the input itself
  (self-attention) or from a context made of text tokens followed by image tokens; the image
  tokens get their own key/value projections and their result is added to the text result.
* `TransformerBlock`: self-attention, cross-attention, GEGLU feed-forward (pre-norm).
* `SpatialTransformer`: attends over the pixels of each frame, (b t) c h w.
* `TemporalTransformer`: attends over the frames of each pixel, b c t h w.

All attention goes through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on
GPU). A cross-attention module can instead keep its text attention probabilities
(`store_attention = True`), which LoRA-BE's localization loss reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from torch import nn


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (B, N, H*D) -> (B, H, N, D)
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (B, H, N, D) -> (B, N, H*D)
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class DualCrossAttention(nn.Module):
    """Multi-head attention with an optional second (image) key/value branch.

    `context=None` means self-attention. Otherwise the first `text_context_len` context tokens are
    text and, when `image_cross_attention` is on, the remaining ones are image tokens.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        image_cross_attention: bool = False,
        image_scale: float = 1.0,
        image_scale_learnable: bool = False,
        text_context_len: int = 77,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.dim_head = dim_head
        self.text_context_len = text_context_len
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))
        self.image_cross_attention = image_cross_attention
        self.image_scale = image_scale
        self.image_scale_learnable = image_scale_learnable
        if image_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
            if image_scale_learnable:
                # tanh(0) + 1 = 1: the gate starts at the fixed scale.
                self.alpha = nn.Parameter(torch.tensor(0.0))
        # Set by the UNet for its spatial cross-attention modules (0..N-1 in forward order).
        self.index: int | None = None
        # When True, the text branch is computed explicitly and its probabilities
        # (B, heads, queries, text tokens) are kept in `attention_probs` (with gradient).
        self.store_attention = False
        self.attention_probs: torch.Tensor | None = None

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                keep: bool = False) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        if keep:
            probs = (q @ k.transpose(-1, -2) * self.dim_head**-0.5).softmax(dim=-1)
            self.attention_probs = probs
            return _merge_heads(probs @ v)
        return _merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=causal))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q = self.to_q(x)
        if context is None:
            return self.to_out(self._attend(q, self.to_k(x), self.to_v(x), causal=causal))
        text = context[:, : self.text_context_len]
        out = self._attend(q, self.to_k(text), self.to_v(text), keep=self.store_attention)
        if self.image_cross_attention:
            image = context[:, self.text_context_len :]
            out_ip = self._attend(q, self.to_k_ip(image), self.to_v_ip(image))
            scale = self.image_scale * (torch.tanh(self.alpha) + 1) if self.image_scale_learnable else self.image_scale
            out = out + scale * out_ip
        return self.to_out(out)


class TransformerBlock(nn.Module):
    """Pre-norm block: attn1 (self), attn2 (cross, or a second self-attention), GEGLU feed-forward."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        dropout: float = 0.0,
        image_cross_attention: bool = False,
        image_scale_learnable: bool = False,
        text_context_len: int = 77,
    ) -> None:
        super().__init__()
        self.attn1 = DualCrossAttention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn="geglu")
        self.attn2 = DualCrossAttention(
            dim, context_dim, heads, dim_head, dropout, image_cross_attention=image_cross_attention,
            image_scale_learnable=image_scale_learnable, text_context_len=text_context_len,
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = self.attn1(self.norm1(x), causal=causal) + x
        x = self.attn2(self.norm2(x), context=context, causal=causal) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Transformer over the h*w positions of every frame; input and output (b t) c h w."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
        image_cross_attention: bool = False,
        image_scale_learnable: bool = False,
        text_context_len: int = 77,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        # 1x1 convolutions of conv-style checkpoints are stored as these Linear layers (convert.py).
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, dim_head, context_dim, dropout, image_cross_attention,
                             image_scale_learnable, text_context_len)
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels)

    @property
    def cross_attentions(self) -> list[DualCrossAttention]:
        return [block.attn2 for block in self.transformer_blocks]

    def forward(self, x: torch.Tensor, context: torch.Tensor | list[torch.Tensor] | None) -> torch.Tensor:
        """`context` is shared by all blocks, or a list with one context per block."""
        bt, c, h, w = x.shape
        residual = x
        contexts = context if isinstance(context, list) else [context] * len(self.transformer_blocks)
        # (b t) c h w -> (b t) (h w) c
        x = self.norm(x).flatten(2).transpose(1, 2)
        x = self.proj_in(x)
        for block, ctx in zip(self.transformer_blocks, contexts):
            x = block(x, context=ctx)
        x = self.proj_out(x)
        # (b t) (h w) c -> (b t) c h w
        return x.transpose(1, 2).reshape(bt, c, h, w) + residual


class TemporalTransformer(nn.Module):
    """Self-attention over the frames at each pixel; input and output b c t h w."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.causal = causal
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        # Both attentions of a temporal block are self-attention over frames.
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, dim_head, None, dropout) for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        residual = x
        # b c t h w -> (b h w) t c
        x = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, causal=self.causal)
        x = self.proj_out(x)
        # (b h w) t c -> b c t h w
        return x.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2) + residual

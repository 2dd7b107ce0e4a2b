"""Image-context Resampler: a Perceiver that turns the 257 CLIP image tokens into 16 tokens per frame.

Learned queries (`latents`, one set of `num_queries` per frame) attend to the projected image
tokens concatenated with themselves; `depth` such layers, each followed by a feed-forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from storyagent.models.dynamicrafter.config import ResamplerConfig


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        # Queries also attend to themselves: keys/values over [image tokens; latents].
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        # (b, n, h*d) -> (b, h, n, d)
        q, k, v = (t.view(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class PerceiverFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class ResamplerLayer(nn.Module):
    def __init__(self, cfg: ResamplerConfig) -> None:
        super().__init__()
        self.attn = PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads)
        self.ff = PerceiverFeedForward(cfg.dim, cfg.ff_mult)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.attn(x, latents) + latents
        return self.ff(latents) + latents


class Resampler(nn.Module):
    """forward(image_tokens: b 257 embedding_dim) -> b (video_length * num_queries) output_dim."""

    def __init__(self, config: ResamplerConfig) -> None:
        super().__init__()
        self.config = config
        queries = config.num_queries * (config.video_length or 1)
        self.latents = nn.Parameter(torch.randn(1, queries, config.dim) / config.dim**0.5)
        self.proj_in = nn.Linear(config.embedding_dim, config.dim)
        self.layers = nn.ModuleList(ResamplerLayer(config) for _ in range(config.depth))
        self.proj_out = nn.Linear(config.dim, config.output_dim)
        self.norm_out = nn.LayerNorm(config.output_dim)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        image_tokens = image_tokens.to(self.proj_in.weight.dtype)
        latents = self.latents.expand(image_tokens.shape[0], -1, -1)
        x = self.proj_in(image_tokens)
        for layer in self.layers:
            latents = layer(x, latents)
        return self.norm_out(self.proj_out(latents))

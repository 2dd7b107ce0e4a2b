"""LoRA-BE losses: v-prediction diffusion loss and the cross-attention localization loss."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from storyagent.models.dynamicrafter.attention import DualCrossAttention


def module_resolutions(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Latent sizes at each UNet level (stride-2 convolutions round up)."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def subject_attention(attn: DualCrossAttention, token_mask: torch.Tensor, frames: int) -> torch.Tensor:
    """Attention mass on the subject token(s) per latent position: (b t, N), averaged over heads.

    token_mask: (b, L) bool over the text positions.
    """
    probs = attn.attention_probs  # (b t, heads, N, L)
    if probs is None:
        raise RuntimeError(f"cross-attention module {attn.index} kept no attention map; set store_attention=True")
    weights = token_mask.to(probs.dtype).repeat_interleave(frames, dim=0)  # (b t, L)
    return (probs.mean(dim=1) * weights[:, None, :]).sum(dim=-1)


def _attention_and_masks(attns: list[DualCrossAttention], token_mask: torch.Tensor, masks: torch.Tensor,
                         latent_hw: tuple[int, int], levels: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per module: the subject token's attention D (b t, N) and the mask at the module's own
    resolution (area resize, then > 0.5) as (b t, N) in {0, 1}."""
    b, t = masks.shape[:2]
    by_count = {h * w: (h, w) for h, w in module_resolutions(*latent_hw, levels)}
    for attn in attns:
        d = subject_attention(attn, token_mask, t)  # (b t, N)
        h, w = by_count[d.shape[1]]
        m = F.interpolate(masks.reshape(b * t, 1, *masks.shape[-2:]).float(), size=(h, w), mode="area")
        yield d, (m.flatten(1) > 0.5).to(d.dtype)


def localization_loss(attns: list[DualCrossAttention], token_mask: torch.Tensor, masks: torch.Tensor,
                      latent_hw: tuple[int, int], levels: int) -> torch.Tensor:
    """-(1/F) sum_f mean(D[f, m_f = 1]), the mean (not the sum) over the cross-attention modules.

    Per module this is LoRA-BE's localization term (StoryAgent, arXiv 2411.04925: minus the
    subject token's attention inside the subject mask, averaged over the F frames). The paper
    does not clearly say that the terms of the modules (16 in the 512 model, each with its own
    block-wise embedding) are summed, so they are averaged: the loss stays in [-1, 0] whatever the
    model's depth, and `LoRABEConfig.localization_weight` (lambda, `--lambda`) weighs it against
    the diffusion loss the same way on every configuration. A sum would be this mean times 16
    on the 512 model, i.e. lambda x 16.

    masks: (b, t, H, W) subject masks in {0, 1}; each module compares against the mask resized
    (area, then > 0.5) to its own resolution. Frames whose resized mask is empty are skipped.
    """
    losses = []
    for d, m in _attention_and_masks(attns, token_mask, masks, latent_hw, levels):
        area = m.sum(dim=1)
        inside = (d * m).sum(dim=1) / area.clamp(min=1)
        valid = (area > 0).to(d.dtype)
        losses.append(-(inside * valid).sum() / valid.sum().clamp(min=1))
    return torch.stack(losses).mean()


def attention_mass_inside(attns: list[DualCrossAttention], token_mask: torch.Tensor, masks: torch.Tensor,
                          latent_hw: tuple[int, int], levels: int) -> float:
    """Share of the subject token's attention that falls inside the mask, averaged over modules (a metric)."""
    with torch.no_grad():
        shares = [((d * m).sum() / d.sum().clamp(min=1e-12)).item()
                  for d, m in _attention_and_masks(attns, token_mask, masks, latent_hw, levels)]
    return sum(shares) / len(shares)

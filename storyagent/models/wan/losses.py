"""LoRA-BE's losses on Wan: flow matching, and the localization loss on the blocks' cross-attention maps.

Wan is a rectified flow: x_t = (1 - sigma) x_0 + sigma noise, the transformer predicts
noise - x_0 at timestep 1000 sigma. The localization loss is the paper's (StoryAgent, arXiv
2411.04925; `lora_be.losses.localization_loss`): minus the subject token's attention inside the
subject mask, averaged over the frames, here over Wan's latent frames and token grid, and
averaged (not summed) over the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def latent_masks(masks: torch.Tensor, latent_frames: int, grid: tuple[int, int], temporal: int = 4) -> torch.Tensor:
    """Subject masks (b, t, H, W) in {0, 1} on Wan's token grid: (b, latent_frames, h, w) in {0, 1}.

    Wan's causal VAE encodes frame 0 alone and every `temporal` frames after it together (t = 4k + 1
    frames -> k + 1 latent frames); the patch embedding then groups 2 x 2 latent pixels into a token
    (8 x 2 = 16 pixels on Wan2.1's VAE, 16 x 2 = 32 on Wan2.2's). A token is the subject where the
    mask covers more than half of the pixels and frames it stands for (area average, then > 0.5).
    """
    b, t, height, width = masks.shape
    masks = masks.float()
    if t == 1:
        frames = masks
    else:
        if (t - 1) % temporal or (t - 1) // temporal + 1 != latent_frames:
            raise ValueError(f"{t} mask frames do not make {latent_frames} latent frames (4k + 1 frames: k + 1)")
        rest = masks[:, 1:].reshape(b, latent_frames - 1, temporal, height, width).mean(dim=2)
        frames = torch.cat([masks[:, :1], rest], dim=1)
    small = F.interpolate(frames.reshape(b * latent_frames, 1, height, width), size=grid, mode="area")
    return (small.reshape(b, latent_frames, *grid) > 0.5).float()


def localization_loss(maps: Sequence[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """-(1/F) sum_f mean(D[f, m_f = 1]) per block, the mean over the blocks.

    maps: per block, D of shape (b, F h w): the subject token's attention at each latent token
    (`BlockwiseState.maps[block][k]`); masks: (b, F, h, w) in {0, 1} (`latent_masks`). Frames whose
    mask is empty are skipped, as on DynamiCrafter.
    """
    b, frames = masks.shape[:2]
    m = masks.reshape(b * frames, -1)
    losses = []
    for d in maps:
        d = d.reshape(b * frames, -1).to(m.dtype)
        area = m.sum(dim=1)
        inside = (d * m).sum(dim=1) / area.clamp(min=1)
        valid = (area > 0).to(d.dtype)
        losses.append(-(inside * valid).sum() / valid.sum().clamp(min=1))
    return torch.stack(losses).mean()


@torch.no_grad()
def attention_share(maps: Sequence[torch.Tensor], masks: torch.Tensor) -> float:
    """Share of the subject token's attention mass that falls inside the mask, averaged over blocks (a metric)."""
    m = masks.reshape(-1)
    shares = [((d.reshape(-1).float() * m).sum() / d.float().sum().clamp(min=1e-12)).item() for d in maps]
    return sum(shares) / len(shares)


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Noise levels for training: uniform `u` in (0, 1) moved towards more noise by Wan's flow shift,
    as its sampler's schedule is (sigma' = shift sigma / (1 + (shift - 1) sigma))."""
    return shift * u / (1 + (shift - 1) * u)

"""transformers' `Dinov2Model` with the positional-embedding resize of the DINOv2 release AnyDoor ships.

AnyDoor feeds 224 px crops (16 x 16 patches) to a ViT trained at 518 px (37 x 37 patches), so
the patch positional embeddings are resized bicubically. The DINOv2 copy inside AnyDoor asks
`F.interpolate` for a *scale factor* of (16 + 0.1) / 37, whereas transformers asks for an output
*size* of 16. Both give 16 x 16, but bicubic sampling places its source points by the scale
factor, so the grids differ: on the parity fixture the resized embeddings differ by 29% and the
projected context by 8e-3 relative (stock transformers) against 1e-7 (this class). This subclass
uses the release's sampling grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Dinov2Config, Dinov2Model
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings


class Dinov2EmbeddingsWithReleaseInterpolation(Dinov2Embeddings):
    """Dinov2 embeddings whose positional resize matches facebookresearch/dinov2 (2023 release)."""

    # The release nudges the target grid by 0.1 so floor(scale * N) cannot round down a patch.
    interpolate_offset: float = 0.1

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings

        pos_embed = self.position_embeddings.float()
        class_pos_embed, patch_pos_embed = pos_embed[:, :1], pos_embed[:, 1:]
        dim = embeddings.shape[-1]
        side = int(math.sqrt(num_positions))
        rows = height // self.patch_size + self.interpolate_offset
        cols = width // self.patch_size + self.interpolate_offset
        # (1, N, dim) -> (1, dim, side, side) for the 2-D resize
        grid = patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(rows / math.sqrt(num_positions), cols / math.sqrt(num_positions)),
                             mode="bicubic")
        if grid.shape[-2:] != (int(rows), int(cols)):
            raise ValueError(f"Positional grid resized to {tuple(grid.shape[-2:])}, expected {(int(rows), int(cols))}.")
        # (1, dim, rows, cols) -> (1, rows * cols, dim)
        patch_pos_embed = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed, patch_pos_embed), dim=1).to(embeddings.dtype)


class AnyDoorDinov2Model(Dinov2Model):
    """`Dinov2Model` whose embeddings resize positions exactly as the DINOv2 release does."""

    def __init__(self, config: Dinov2Config) -> None:
        super().__init__(config)
        self.embeddings = Dinov2EmbeddingsWithReleaseInterpolation(config)
        self.post_init()

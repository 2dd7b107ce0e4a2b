"""LangSAM configuration: how sure the detector must be before SAM is asked for a mask, and SAM's sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from storyagent.models.configuration import ConfigFileMixin


@dataclass
class LangSAMConfig(ConfigFileMixin):
    """Thresholds and batching of the text → box → mask pipeline."""

    box_threshold: float = 0.3
    """A box is kept when its best text-token probability exceeds this (Grounding DINO's usual 0.3)."""
    text_threshold: float = 0.25
    """A prompt token names a kept box when its probability exceeds this (Grounding DINO's usual 0.25)."""
    batch_size: int = 4
    """Images per detector forward pass."""
    multimask: bool = False
    """Ask SAM for three candidate masks per box and keep the one with the best predicted IoU."""

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")


@dataclass(frozen=True)
class SamConfig:
    """The sizes that define a SAM model; the official ViT-H/L/B share everything but the encoder."""

    encoder_embed_dim: int = 1280
    """Width of the ViT image encoder."""
    encoder_depth: int = 32
    """Transformer blocks in the image encoder."""
    encoder_num_heads: int = 16
    """Attention heads per image-encoder block."""
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    """Image-encoder blocks that attend over the whole grid; the others attend within windows."""
    encoder_window_size: int = 14
    """Side of the attention window, in patches, of the windowed blocks."""
    encoder_mlp_ratio: float = 4.0
    """Hidden width of each block's MLP as a multiple of the encoder width."""
    image_size: int = 1024
    """Side of the square image the encoder sees (the longest side is resized to it, then padded)."""
    patch_size: int = 16
    """Side of one patch in pixels."""
    prompt_embed_dim: int = 256
    """Width of the prompt encoder, the image embedding and the mask decoder."""
    mask_in_chans: int = 16
    """Hidden channels of the prompt encoder's mask downscaling."""
    decoder_depth: int = 2
    """Two-way transformer layers in the mask decoder."""
    decoder_mlp_dim: int = 2048
    """Hidden width of the mask decoder's MLPs."""
    decoder_num_heads: int = 8
    """Not recoverable from the weights; 8 in every published SAM checkpoint."""
    iou_head_depth: int = 3
    """Layers of the head that predicts each mask's IoU."""
    iou_head_hidden_dim: int = 256
    """Hidden width of the IoU head."""
    num_multimask_outputs: int = 3
    """Candidate masks per prompt when several are asked for."""

    @classmethod
    def preset(cls, kind: str) -> SamConfig:
        presets = {
            "vit_h": cls(),
            "vit_l": cls(encoder_embed_dim=1024, encoder_depth=24, encoder_global_attn_indexes=(5, 11, 17, 23)),
            "vit_b": cls(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                         encoder_global_attn_indexes=(2, 5, 8, 11)),
        }
        if kind not in presets:
            raise ValueError(f"unknown SAM type {kind!r}; use one of {', '.join(presets)}")
        return presets[kind]

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], decoder_num_heads: int = 8) -> SamConfig:
        """Read the sizes off the tensors, so vit_h, vit_l, vit_b (or a small test model) all load alike."""
        patch = sd["image_encoder.patch_embed.proj.weight"]  # (C, 3, p, p)
        embed_dim, patch_size = patch.shape[0], patch.shape[-1]
        grid = sd["image_encoder.pos_embed"].shape[1]  # (1, H/p, W/p, C)
        depth = 1 + max(_layer_indexes(sd, r"image_encoder\.blocks\.(\d+)\."))
        # Relative position tables are (2·size − 1, head_dim): size is the window, or the whole
        # grid for the global-attention blocks.
        sizes = [(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2 for i in range(depth)]
        head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        windows = {s for s in sizes if s != grid} or {14}
        return cls(
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=tuple(i for i, s in enumerate(sizes) if s == grid),
            encoder_window_size=windows.pop(),
            encoder_mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
            image_size=grid * patch_size,
            patch_size=patch_size,
            prompt_embed_dim=sd["image_encoder.neck.0.weight"].shape[0],
            mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=len(_layer_indexes(sd, r"mask_decoder\.transformer\.layers\.(\d+)\.")),
            decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            decoder_num_heads=decoder_num_heads,
            iou_head_depth=len(_layer_indexes(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.")),
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        )


def _layer_indexes(sd: dict[str, torch.Tensor], pattern: str) -> set[int]:
    """The distinct numbers the first group of `pattern` takes over the keys of `sd`."""
    return {int(m.group(1)) for key in sd if (m := re.match(pattern, key))}

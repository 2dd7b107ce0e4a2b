"""SAM (segment_anything) as a box-to-mask model, built without pickled code and loaded weights-only."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from storyagent.weights import load_pickled_state_dict, resolve_weights


@dataclass(frozen=True)
class SamArchitecture:
    """The sizes that define a SAM model; the official ViT-H/L/B share everything but the encoder."""

    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    encoder_window_size: int = 14
    encoder_mlp_ratio: float = 4.0
    image_size: int = 1024
    patch_size: int = 16
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    """Not recoverable from the weights; 8 in every published SAM checkpoint."""
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    @classmethod
    def preset(cls, kind: str) -> SamArchitecture:
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
    def from_state_dict(cls, sd: dict[str, torch.Tensor], decoder_num_heads: int = 8) -> SamArchitecture:
        """Read the sizes off the tensors, so vit_h, vit_l, vit_b (or a small test model) all load alike."""
        patch = sd["image_encoder.patch_embed.proj.weight"]  # (C, 3, p, p)
        embed_dim, patch_size = patch.shape[0], patch.shape[-1]
        grid = sd["image_encoder.pos_embed"].shape[1]  # (1, H/p, W/p, C)
        depth = 1 + max(int(m.group(1)) for key in sd if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key)))
        # Relative position tables are (2·size − 1, head_dim): size is the window, or the whole
        # grid for the global-attention blocks.
        sizes = [(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2 for i in range(depth)]
        head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        windows = {s for s in sizes if s != grid} or {14}
        decoder_layers = {int(m.group(1)) for key in sd if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", key))}
        iou_layers = {int(m.group(1)) for key in sd if (m := re.match(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.", key))}
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
            decoder_depth=len(decoder_layers),
            decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            decoder_num_heads=decoder_num_heads,
            iou_head_depth=len(iou_layers),
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        )


def build_sam(arch: SamArchitecture) -> nn.Module:
    """A randomly initialised `segment_anything` Sam of the given sizes."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.image_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch.image_size,
            patch_size=arch.patch_size,
            embed_dim=arch.encoder_embed_dim,
            depth=arch.encoder_depth,
            num_heads=arch.encoder_num_heads,
            mlp_ratio=arch.encoder_mlp_ratio,
            out_chans=arch.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=arch.encoder_window_size,
            global_attn_indexes=arch.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=arch.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            num_multimask_outputs=arch.num_multimask_outputs,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        # ImageNet statistics in 0..255, as every SAM checkpoint was trained with
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return load_pickled_state_dict(path)


class SamSegmenter:
    """Masks for boxes in one image at a time (SAM embeds the image once, then decodes every box)."""

    def __init__(self, sam: nn.Module, multimask: bool = False) -> None:
        from segment_anything import SamPredictor

        self.sam = sam.eval()
        self.predictor = SamPredictor(self.sam)
        self.multimask = multimask

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        multimask: bool = False,
    ) -> SamSegmenter:
        """A SAM checkpoint (.pth weights-only, or .safetensors) of any size; default the ViT-H weights."""
        file = resolve_weights("sam-vit-h", path)
        if file.is_dir():
            candidates = sorted([*file.glob("*.safetensors"), *file.glob("*.pth")])
            if not candidates:
                from storyagent.errors import WeightsNotFoundError

                raise WeightsNotFoundError(f"No SAM checkpoint (.pth or .safetensors) in {file}.")
            file = candidates[0]
        state_dict = load_sam_state_dict(file)
        sam = build_sam(SamArchitecture.from_state_dict(state_dict))
        sam.load_state_dict(state_dict)
        if device is not None:
            sam.to(device)
        return cls(sam, multimask=multimask)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(masks (N, H, W) bool at the image's own size, predicted IoU (N,)) for (N, 4) pixel boxes."""
        height, width = image.shape[:2]
        if len(boxes) == 0:
            return np.zeros((0, height, width), bool), np.zeros((0,), np.float32)
        self.predictor.set_image(np.ascontiguousarray(image[..., :3]), image_format="RGB")
        # boxes go through the same longest-side resize as the image
        prompt = self.predictor.transform.apply_boxes_torch(
            torch.as_tensor(boxes, dtype=torch.float32, device=self.predictor.device), (height, width)
        )
        masks, iou, _ = self.predictor.predict_torch(None, None, boxes=prompt, multimask_output=self.multimask)
        # masks: (N, M, H, W) with M = 3 candidates or 1
        best = iou.argmax(dim=1)
        rows = torch.arange(len(boxes), device=masks.device)
        self.predictor.reset_image()
        return masks[rows, best].cpu().numpy(), iou[rows, best].float().cpu().numpy()

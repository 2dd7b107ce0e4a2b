"""SAM (segment_anything) as a box-to-mask model, built without pickled code and loaded weights-only."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from storyagent.models.langsam.config import SamConfig
from storyagent.weights import load_state_dict, resolve_weights_file


def build_sam(arch: SamConfig) -> nn.Module:
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
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        multimask: bool = False,
    ) -> SamSegmenter:
        """A SAM checkpoint (.pth weights-only, or .safetensors) of any size, or a folder holding one;
        default the ViT-H weights ("sam-vit-h")."""
        state_dict = load_state_dict(resolve_weights_file("sam-vit-h", path, what="SAM checkpoint"))
        sam = build_sam(SamConfig.from_state_dict(state_dict))
        sam.load_state_dict(state_dict)
        return cls(sam.to(device=device, dtype=torch_dtype), multimask=multimask)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """`path`/model.safetensors, which `from_pretrained(path)` reads back."""
        from storyagent.fileio import atomic_save_safetensors

        folder = Path(path)
        atomic_save_safetensors(folder / "model.safetensors",
                                {k: v.detach().cpu() for k, v in self.sam.state_dict().items()})
        return folder

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

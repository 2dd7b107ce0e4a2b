"""A tiny SAM 2 video model with random weights and its processor, for tests and smoke runs; nothing is
downloaded. It runs the whole video predictor (memory encoder, memory attention, object pointers) on
a 128x128 input in well under a second per clip on one CPU thread."""

from __future__ import annotations

import os
from pathlib import Path

TINY_SIDE = 128
"""Side of the tiny model's square input (the released models use 1024)."""


def tiny_config():
    """A `Sam2VideoConfig` a few hundred thousand parameters large.

    Three sizes cannot shrink as freely as the rest, because the installed Sam2Video code fixes them:
    the memory attention's cross-attention reads 64-channel memories (`kv_in_dim=64`), so the memory
    encoder must output 64 channels; the object pointers are split into memory-sized tokens only when
    the model width is larger than that, so the width is 128, not 64; and a Hiera stage's first block
    pools its queries through its window, so the global-attention block must not start a stage.
    """
    from transformers import Sam2VideoConfig

    side, width = TINY_SIDE, 128
    grids = [[side // 4] * 2, [side // 8] * 2, [side // 16] * 2]  # the three feature levels the FPN keeps
    return Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
                "image_size": [side, side], "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
                "num_attention_heads_per_stage": [1, 1, 1, 1], "window_size_per_stage": [4, 4, 4, 4],
                "global_attention_blocks": [3], "window_positional_embedding_background_size": [2, 2],
            },
            "backbone_channel_list": [64, 32, 16, 8], "backbone_feature_sizes": grids, "fpn_hidden_size": width,
        },
        prompt_encoder_config={"hidden_size": width, "image_size": side, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": width, "mlp_dim": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 16},
        image_size=side, num_maskmem=3, memory_attention_hidden_size=width, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=width, memory_attention_rope_feat_sizes=grids[-1],
        memory_encoder_hidden_size=width, memory_encoder_output_channels=64, mask_downsampler_embed_dim=width,
        memory_fuser_num_layers=1, memory_fuser_embed_dim=width, memory_fuser_intermediate_dim=64,
    )


def tiny_processor():
    """A `Sam2VideoProcessor` that resizes frames to the tiny model's side and its masks to a quarter of it."""
    from transformers import (
        Sam2ImageProcessor,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    side = {"height": TINY_SIDE, "width": TINY_SIDE}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=side, mask_size={"height": TINY_SIDE // 4, "width": TINY_SIDE // 4}),
        video_processor=Sam2VideoVideoProcessor(size=side))


def save_tiny_sam2_video(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """The tiny model and its processor in transformers' layout (config.json, model.safetensors,
    processor_config.json), as `Sam2VideoModel.from_pretrained` and `Sam2VideoMasks` read them."""
    import torch
    from transformers import Sam2VideoModel

    folder = Path(folder)
    torch.manual_seed(seed)
    Sam2VideoModel(tiny_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder

"""Tiny Grounding DINO and SAM with random weights, for tests and smoke runs; nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from storyagent.models.langsam.config import SamConfig
from storyagent.models.langsam.segmenter import build_sam

TINY_WORDS = ["rabbit", "grey", "cat", "dog", "fox", "toy", "a", "the", "character", "person"]

TINY_SAM = SamConfig(
    encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    encoder_window_size=2, encoder_mlp_ratio=2.0, image_size=64, patch_size=16, prompt_embed_dim=32,
    mask_in_chans=8, decoder_depth=2, decoder_mlp_dim=32, decoder_num_heads=8, iou_head_depth=3,
    iou_head_hidden_dim=16,
)


def save_tiny_grounding_dino(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """A Grounding DINO (ResNet backbone, one-layer BERT) in transformers layout, with its processor."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        ResNetConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *TINY_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=32)
    backbone = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                            layer_type="basic", out_features=["stage1", "stage2"])
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32)
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, num_queries=12, encoder_layers=1,
        decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_sam(path: str | os.PathLike[str], seed: int = 0, arch: SamConfig = TINY_SAM) -> Path:
    """A small segment_anything Sam saved as a plain state dict (.pth), like the official checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(build_sam(arch).state_dict(), path)
    return path

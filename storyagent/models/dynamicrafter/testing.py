"""Tiny random DynamiCrafter pipelines for tests, benchmarks' `--tiny` mode and LoRA-BE tests.

Same code paths as the released model, a few hundred kilobytes of weights, no network.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from storyagent.models.dynamicrafter.config import (
    DynamiCrafterConfig, ResamplerConfig, SamplingConfig, UNetConfig, VAEConfig,
)
from storyagent.models.dynamicrafter.encoders import ImageEncoder, TextEncoder
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline


def tiny_config(frames: int = 4, latent_hw: tuple[int, int] = (8, 8)) -> DynamiCrafterConfig:
    """A few-kilobyte configuration for CPU tests (same code paths as the 512 model)."""
    return DynamiCrafterConfig(
        unet=UNetConfig(model_channels=32, channel_mult=(1, 2), attention_resolutions=(1, 2), num_res_blocks=1,
                        num_head_channels=8, context_dim=32, temporal_length=frames, dropout=0.0),
        vae=VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=32),
        resampler=ResamplerConfig(dim=32, depth=1, dim_head=8, heads=4, num_queries=16, embedding_dim=48,
                                  output_dim=32, ff_mult=2, video_length=frames),
        sampling=SamplingConfig(ddim_steps=3, frames=frames, height=latent_hw[0] * 2, width=latent_hw[1] * 2),
    )


def write_tiny_tokenizer(folder: str | Path) -> Path:
    """A CLIP BPE tokenizer with a letters-only vocabulary (no merges): one token per character."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for ch in string.ascii_lowercase + string.digits + "<>":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "!"}))
    return folder


def tiny_encoders(context_dim: int = 32, image_dim: int = 48, tokenizer_dir: str | Path | None = None,
                  seed: int = 0) -> tuple[TextEncoder, ImageEncoder]:
    """Random CLIP text/vision towers with the shapes a tiny config expects."""
    import tempfile

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    tok_dir = write_tiny_tokenizer(tokenizer_dir or tempfile.mkdtemp(prefix="dc_tok_"))
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=context_dim, intermediate_size=2 * context_dim, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", bos_token_id=1, eos_token_id=2,
        pad_token_id=0,
    )).eval()
    vision = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=image_dim, intermediate_size=2 * image_dim, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, hidden_act="gelu",
    )).eval()
    return TextEncoder(text, tokenizer), ImageEncoder(vision)


def tiny_pipeline(config: DynamiCrafterConfig | None = None, seed: int = 0) -> DynamiCrafterPipeline:
    config = config or tiny_config()
    text, image = tiny_encoders(config.unet.context_dim, config.resampler.embedding_dim, seed=seed)
    torch.manual_seed(seed)
    pipe = DynamiCrafterPipeline.from_config(config, text, image)
    # Random (not zero-initialised) weights everywhere, so no path is silenced.
    with torch.no_grad():
        for module in (pipe.unet, pipe.resampler):
            for name, p in module.named_parameters():
                if p.ndim == 1 and "norm" in name:
                    p.copy_(1 + 0.05 * torch.randn_like(p))
                else:
                    p.copy_(0.08 * torch.randn_like(p))
    return pipe

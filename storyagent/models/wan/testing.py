"""Tiny random Wan pipelines for tests and the benchmarks' `--tiny` mode, built the way diffusers' own
Wan tests build theirs (tests/pipelines/wan/test_wan_image_to_video.py, test_wan_22_image_to_video.py),
one per architecture StoryAgent runs: Wan2.1 I2V (CLIP image cross-attention, the 8x VAE),
Wan2.2 TI2V-5B (`expand_timesteps`, the 16x VAE with 48 channels) and Wan2.2 I2V-A14B (two experts
around `boundary_ratio`). Same code paths as the released models, a few hundred kilobytes, no network.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WORDS = ("a", "video", "of", "the", "on", "in", "fox", "rabbit", "owl", "beach", "walks", "camera", "static")

BLOCKS = 3
"""Transformer blocks of the tiny models (the real ones have 30 or 40)."""


def tiny_tokenizer():
    """A UMT5-style sentencepiece tokenizer: a few whole words, then single characters."""
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", *(f"\u2581{w}" for w in TINY_WORDS), "\u2581",
              *"abcdefghijklmnopqrstuvwxyz0123456789,.<>-_"]
    return T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0, model_max_length=512)


def tiny_pipeline(kind: str = "wan2.2-ti2v-5b", seed: int = 0):
    """A diffusers `WanImageToVideoPipeline` of the architecture of `kind` (a `--video-model` name), tiny and random."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=32, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0))
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    ti2v = kind == "wan2.2-ti2v-5b"
    if ti2v:
        vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                               latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True])
    else:
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
    image = kind == "wan2.1-i2v-14b-480p"

    def transformer() -> WanTransformer3DModel:
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48 if ti2v else 36,
            out_channels=48 if ti2v else 16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=BLOCKS,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
            image_dim=8 if image else None, added_kv_proj_dim=24 if image else None)

    parts: dict[str, object] = {"transformer": transformer()}
    if kind == "wan2.2-i2v-a14b":
        parts |= {"transformer_2": transformer(), "boundary_ratio": 0.875}
    if image:
        parts |= {"image_encoder": CLIPVisionModel(CLIPVisionConfig(hidden_size=8, intermediate_size=16,
                                                                    num_hidden_layers=2, num_attention_heads=2,
                                                                    image_size=32, patch_size=8)),
                  "image_processor": CLIPImageProcessor(crop_size=32, size=32)}
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                                   expand_timesteps=ti2v, **parts)
    return pipe


def save_tiny_wan(folder: str | Path, kind: str = "wan2.2-ti2v-5b", seed: int = 0) -> Path:
    """A tiny `kind` saved as diffusers saves a Wan checkpoint (what `WanVideoPipeline.from_pretrained` reads)."""
    folder = Path(folder)
    tiny_pipeline(kind, seed).save_pretrained(folder)
    return folder


def tiny_config(kind: str = "wan2.2-ti2v-5b", fps: int = 8):
    """`kind`'s `WanVideoConfig` at the tiny models' scale: 32 x 32 pictures, 5-frame training clips, 2 steps."""
    from dataclasses import replace

    from storyagent.models.wan.config import wan_config

    multiple = 32 if kind == "wan2.2-ti2v-5b" else 16
    # Diffusers' Wan2.1 image cross-attention finds the image tokens as "all but the last 512": that model
    # keeps the real text length; the others read 16 tokens.
    length = 512 if kind == "wan2.1-i2v-14b-480p" else 16
    return replace(wan_config(kind), fps=fps, max_frames=17, max_area=32 * 32, num_inference_steps=2, train_frames=5,
                   train_height=multiple * 2, train_width=multiple * 4, max_sequence_length=length)


def full_size_pipeline(kind: str = "wan2.2-ti2v-5b", dtype: torch.dtype = torch.bfloat16):
    """`kind` at its released size with random weights (random weights time the same as trained ones), for the
    benchmarks: the transformer(s), VAE, UMT5-XXL text encoder and (Wan2.1) CLIP ViT-H image encoder of the
    released configs; only the tokenizer is the tiny one (it decides token ids, not the work)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype it runs in: 14B parameters twice do not fit in float32
    try:
        ti2v = kind == "wan2.2-ti2v-5b"
        text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                                   num_heads=64, relative_attention_num_buckets=32,
                                                   feed_forward_proj="gated-gelu", dropout_rate=0.0))
        if ti2v:
            vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                   temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                                   out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                                   latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
        else:
            vae = AutoencoderKLWan()  # Wan2.1's VAE, diffusers' defaults
        image = kind == "wan2.1-i2v-14b-480p"

        def transformer() -> WanTransformer3DModel:
            if ti2v:
                return WanTransformer3DModel(num_attention_heads=24, attention_head_dim=128, in_channels=48,
                                             out_channels=48, ffn_dim=14336, num_layers=30)
            return WanTransformer3DModel(num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
                                         ffn_dim=13824, num_layers=40, image_dim=1280 if image else None,
                                         added_kv_proj_dim=5120 if image else None)

        parts: dict[str, object] = {"transformer": transformer()}
        if kind == "wan2.2-i2v-a14b":
            parts |= {"transformer_2": transformer(), "boundary_ratio": 0.9}
        if image:
            parts |= {"image_encoder": CLIPVisionModel(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120,
                                                                        num_hidden_layers=32, num_attention_heads=16,
                                                                        image_size=224, patch_size=14)),
                      "image_processor": CLIPImageProcessor()}
    finally:
        torch.set_default_dtype(before)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=5.0 if ti2v else 3.0)
    return WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                                   expand_timesteps=ti2v, **parts)

"""A tiny SDXL with random weights, shaped like the real one, for tests and `--tiny` benchmarks.

Same component classes as SDXL (two CLIP text encoders, text-time additional embeddings, cross-
attention up-blocks at two scales), channels of 8–32 so that a call takes well under a second on CPU.
"""

from __future__ import annotations

import string

import torch


def tiny_clip_tokenizer(max_length: int = 64):
    """A CLIP BPE tokenizer over single letters (no merges), built without any download."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in string.ascii_lowercase + string.digits + ",.'":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length, pad_token="!")


def tiny_sdxl(seed: int = 0):
    """StableDiffusionXLPipeline with random tiny components; images of 32×32 px give 16×16 latents."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    text_dim, time_dim = 16, 8
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 1, 1),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # SDXL's added condition: pooled text embedding + 6 time ids (size, crop, target size)
        projection_class_embeddings_input_dim=text_dim + 6 * time_dim,
        cross_attention_dim=2 * text_dim,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=text_dim, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=128, max_position_embeddings=64,
        projection_dim=text_dim, hidden_act="gelu",
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe

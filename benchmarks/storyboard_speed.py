"""Storyboard speed: plain SDXL vs SDXL with StoryDiffusion's consistent self-attention (step 1 of the
storyboard pipeline, `storyagent.models.storyboard`, configured by its `StoryboardConfig`).

4 shots at 768×768 with full-size SDXL built from its config with random weights (no download;
random weights time the same as trained ones). Prints wall time and peak GPU memory per mode.
Target: the consistent attention adds under 25 % time over plain SDXL.

    python benchmarks/storyboard_speed.py              # CUDA, fp16, full size
    python benchmarks/storyboard_speed.py --tiny       # CPU smoke run with a tiny SDXL
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from storyagent.models.storyboard import StoryboardConfig
from storyagent.models.storydiffusion import (
    ConsistentAttentionConfig,
    StoryDiffusionConfig,
    StoryDiffusionPipeline,
    remove_consistent_attention,
)
from storyagent.models.storydiffusion.testing import tiny_clip_tokenizer, tiny_sdxl

SHOTS = ["walks along a beach at dawn", "reads a map in a forest", "sits by a campfire at night", "waves from a hilltop"]
SUBJECT = "a small grey rabbit in a red scarf"


def full_size_sdxl(device: torch.device, dtype: torch.dtype):
    """SDXL base's architecture (UNet, VAE, CLIP ViT-L and OpenCLIP bigG text encoders), random weights."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
            cross_attention_dim=2048,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, sample_size=1024, scaling_factor=0.13025, force_upcast=False,
        )
        clip_l = CLIPTextModel(CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            projection_dim=768, hidden_act="quick_gelu", vocab_size=49408, max_position_embeddings=77))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            projection_dim=1280, hidden_act="gelu", vocab_size=49408, max_position_embeddings=77))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=tiny_clip_tokenizer(77),
        tokenizer_2=tiny_clip_tokenizer(77), unet=unet, scheduler=scheduler, add_watermarker=False,
    ).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(fn, device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random SDXL at 32×32 (CPU smoke test)")
    parser.add_argument("--size", type=int, default=768, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps")
    parser.add_argument("--num-identity", type=int, default=3, help="shots drawn together (bank writers)")
    parser.add_argument("--ratio", type=float, default=0.5, help="sampling ratio of the consistent attention")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per mode (after one warm-up)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    size, steps = (32, 2) if args.tiny else (args.size, args.steps)
    sdxl = tiny_sdxl() if args.tiny else full_size_sdxl(device, dtype)
    # Step 1 of the storyboard pipeline (models/storyboard), with the settings it gives StoryDiffusion.
    story = StoryDiffusionConfig(attention=ConsistentAttentionConfig(default_ratio=args.ratio, ratios={}),
                                 guidance_scale=5.0, style="cinematic")
    cfg = StoryboardConfig(story=story, width=size, height=size, steps=steps,
                           num_identity=args.num_identity).story_config()
    story = StoryDiffusionPipeline(sdxl, cfg)
    prompts = story(SHOTS, SUBJECT, seed=0, num_inference_steps=1, output_type="latent").prompts

    def plain() -> None:
        remove_consistent_attention(sdxl.unet)
        gens = [torch.Generator("cpu").manual_seed(i) for i in range(len(SHOTS))]
        sdxl(prompt=prompts, num_inference_steps=steps, guidance_scale=5.0, height=size, width=size,
             generator=gens, output_type="pil")

    def consistent() -> None:
        StoryDiffusionPipeline(sdxl, cfg)(SHOTS, SUBJECT, seed=0)

    rows = []
    for name, fn in [("plain SDXL (4 shots, one batch)", plain),
                     (f"consistent attention ({args.num_identity} identity + {len(SHOTS) - args.num_identity} read, "
                      f"ratio {args.ratio})", consistent)]:
        fn()  # warm-up: kernels, allocator
        runs = [timed(fn, device) for _ in range(args.repeats)]
        rows.append((name, min(r[0] for r in runs), max(r[1] for r in runs)))

    table = Table(title=f"Storyboard speed: {len(SHOTS)} shots, {size}×{size}, {steps} steps, "
                        f"{'tiny' if args.tiny else 'full-size'} SDXL, {device.type} {str(dtype).removeprefix('torch.')}")
    table.add_column("mode")
    table.add_column("time (s)", justify="right")
    table.add_column("s / shot", justify="right")
    table.add_column("peak GPU mem (GiB)", justify="right")
    table.add_column("vs plain", justify="right")
    base = rows[0][1]
    for name, seconds, peak in rows:
        table.add_row(name, f"{seconds:.2f}", f"{seconds / len(SHOTS):.2f}",
                      "n/a (CPU)" if peak != peak else f"{peak:.2f}", f"{100 * (seconds / base - 1):+.1f} %")
    Console().print(table)
    if device.type == "cuda":
        print(torch.cuda.get_device_name())


if __name__ == "__main__":
    main()

"""The Wan 2.x image-to-video models StoryAgent animates with, and how LoRA-BE reaches into them.

Plain data (no torch): `RunConfig` and `storyagent weights` read the names; the pipeline glue and
the fine-tune read the rest. The architecture itself (blocks, experts, VAE compression, image
encoder) is never restated here: it comes from the checkpoint's own diffusers configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DYNAMICRAFTER = "dynamicrafter-512"
"""The paper's video model (the default of `--video-model`)."""

# LoRA on every attention projection of every transformer block: self-attention (attn1), text
# cross-attention (attn2: to_q/to_k/to_v/to_out) and, where the model has one (Wan2.1 I2V), the
# image cross-attention's own key/value projections (attn2.add_k_proj/add_v_proj). Module names
# are diffusers' `WanTransformer3DModel`'s; peft matches the whole name.
WAN_TARGET_MODULES = r"blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0|add_k_proj|add_v_proj)"


@dataclass(frozen=True)
class WanVideoConfig:
    """One Wan image-to-video model: where its weights are and how it is best run."""

    name: str
    """The `--video-model` name, also its `storyagent weights` name."""
    repo_id: str
    """Hugging Face repository in diffusers' layout (`WanImageToVideoPipeline.from_pretrained`)."""
    fps: int
    """Frames per second the model was trained to make (a window's frames play at this rate)."""
    max_frames: int
    """Frames of the longest window the model makes in one go (4k+1)."""
    max_area: int
    """Pixels (height x width) of the model's native resolution; a larger film is made at this area."""
    guidance_scale: float
    """Classifier-free guidance of the (high-noise) transformer, as the model card recommends."""
    num_inference_steps: int
    """Denoising steps when `--steps` is not given."""
    train_frames: int
    """Frames (4k+1) of one LoRA-BE training clip: the model's own rate, about a second of motion."""
    train_height: int
    """LoRA-BE training height in pixels (a multiple of the VAE's stride times the patch size)."""
    train_width: int
    """LoRA-BE training width in pixels."""
    guidance_scale_2: float | None = None
    """Guidance of the low-noise expert (`transformer_2`, Wan2.2-A14B); None: the same as `guidance_scale`."""
    max_sequence_length: int = 512
    """Text tokens per prompt (UMT5); Wan's image cross-attention assumes 512."""
    negative_prompt: str = ("blurry, low quality, jpeg artifacts, static, still picture, deformed, disfigured, "
                            "extra limbs, fused fingers, messy background, text, subtitles, watermark")
    """What classifier-free guidance steers away from."""
    gpu_gib: float = 24.0
    """GPU memory (GiB) the model needs with its whole pipeline on the GPU in bf16; a guide for users."""

    @property
    def window_seconds(self) -> float:
        """How long one window lasts."""
        return (self.max_frames - 1) / self.fps


WAN_VIDEO_MODELS: dict[str, WanVideoConfig] = {
    c.name: c
    for c in [
        # 720p text/image-to-video, 24 fps, 121 frames; one 5B transformer, the 16x16x4 Wan2.2 VAE, no
        # image encoder (the first frame is the clean first latent frame: `expand_timesteps`).
        WanVideoConfig("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", fps=24, max_frames=121,
                       max_area=704 * 1280, guidance_scale=5.0, num_inference_steps=50, train_frames=17,
                       train_height=704, train_width=1280, gpu_gib=24.0),
        # 480p image-to-video, 16 fps, 81 frames; 40 blocks with a CLIP image cross-attention.
        WanVideoConfig("wan2.1-i2v-14b-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", fps=16, max_frames=81,
                       max_area=480 * 832, guidance_scale=5.0, num_inference_steps=50, train_frames=17,
                       train_height=480, train_width=832, gpu_gib=48.0),
        # Two 14B experts: `transformer` below the pipeline's `boundary_ratio` of noise, `transformer_2` above.
        WanVideoConfig("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", fps=16, max_frames=81,
                       max_area=720 * 1280, guidance_scale=3.5, guidance_scale_2=3.5, num_inference_steps=40,
                       train_frames=17, train_height=480, train_width=832, gpu_gib=72.0),
    ]
}
"""Every Wan model `--video-model` knows, by name."""

VIDEO_MODELS: tuple[str, ...] = (DYNAMICRAFTER, *WAN_VIDEO_MODELS)
"""Every `--video-model` name, the default first."""


def is_wan(video_model: str) -> bool:
    return video_model in WAN_VIDEO_MODELS


def wan_config(video_model: str) -> WanVideoConfig:
    """The Wan model named `video_model` (a `KeyError` names the known ones)."""
    try:
        return WAN_VIDEO_MODELS[video_model]
    except KeyError:
        raise KeyError(f"unknown Wan video model {video_model!r}; known: {', '.join(WAN_VIDEO_MODELS)}") from None


def window_frames(seconds: float, fps: float, max_frames: int, temporal: int = 4) -> int:
    """Frames of one window lasting at least `seconds` at `fps`: the smallest `temporal`*k+1 that does,
    at most `max_frames` (Wan's causal VAE keeps the first frame and packs every 4 after it)."""
    k = max(1, math.ceil(seconds * fps / temporal))
    return min(temporal * k + 1, max_frames)


def fit_size(width: int, height: int, max_area: int, multiple: int) -> tuple[int, int]:
    """(width, height) with the aspect of `width` x `height`, at most `max_area` pixels, each side a
    multiple of `multiple` (the VAE's spatial stride times the patch size) and at least one multiple."""
    scale = min(1.0, math.sqrt(max_area / (width * height)))
    w = max(multiple, int(width * scale) // multiple * multiple)
    h = max(multiple, int(height * scale) // multiple * multiple)
    return w, h

"""Wan 2.x image-to-video through diffusers' own `WanImageToVideoPipeline`, with what StoryAgent adds.

Added, nothing else: the weights found offline (`storyagent.weights`, `local_files_only`), a
subject's LoRA-BE (block-wise prompts through a prompt hook, see `adapter`), the memory modes
behind `--low-vram`, and one call that makes one window's frames as uint8 arrays. Diffusers does
the rest: prompts, image conditioning, the denoising loop (both experts of Wan2.2-A14B around its
`boundary_ratio`), the VAE.

Memory (bf16 on a GPU; the VAE and CLIP image encoder in float32, as Wan's model cards load them):
- default: the whole pipeline on the GPU for the call; Wan2.2-A14B, whose two experts and text
  encoder would fill an 80 GB card, uses diffusers' `enable_model_cpu_offload` instead (one
  component on the GPU at a time).
- low VRAM: group offload (each expert's layers stream to the GPU as they run, the text encoder
  a few blocks at a time) and a tiled VAE. Diffusers cannot take group offload off a model again,
  so once on it stays on for the pipeline's life (a shot that ran out of memory once would again).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.models import placement
from storyagent.models.wan.adapter import experts, load_adapter
from storyagent.models.wan.config import WanVideoConfig, fit_size, wan_config


class WanVideoPipeline:
    """A diffusers `WanImageToVideoPipeline` (`.pipe`) and the Wan model it is (`.config`)."""

    def __init__(self, pipe, config: WanVideoConfig) -> None:
        self.pipe = pipe
        self.config = config
        self.prompt_hook = None
        """Set by `load_adapter`: prompts naming a subject token -> packed block-wise contexts."""
        self.adapter_config = None
        """The loaded LoRA-BE adapter's config (its tokens), or None."""
        self.group_offloaded = False
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(cls, video_model: str, path: str | os.PathLike[str] | None = None,
                        torch_dtype: torch.dtype = torch.bfloat16) -> WanVideoPipeline:
        """The Wan model `video_model` (a `--video-model` name) from `path`, else where `storyagent.weights`
        finds it (`STORYAGENT_WEIGHTS_*`, the Hugging Face cache), never from the network."""
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
        from transformers import CLIPVisionModel

        from storyagent.errors import WeightsNotFoundError
        from storyagent.weights import fetch_hint, resolve_weights

        config = wan_config(video_model)
        folder = Path(resolve_weights(video_model, path))
        try:
            parts = {"vae": AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32,
                                                              local_files_only=True)}
            if (folder / "image_encoder").is_dir():
                parts["image_encoder"] = CLIPVisionModel.from_pretrained(folder, subfolder="image_encoder",
                                                                         dtype=torch.float32, local_files_only=True)
            pipe = WanImageToVideoPipeline.from_pretrained(folder, dtype=torch_dtype, local_files_only=True, **parts)
        except (OSError, ValueError) as exc:
            raise WeightsNotFoundError(f"The {video_model} weights in {folder} are incomplete ({exc}); "
                                       f"{fetch_hint(video_model)}.") from exc
        return cls(pipe, config)

    # ---- what the model is ----------------------------------------------------------------

    @property
    def experts(self) -> dict[str, torch.nn.Module]:
        return experts(self.pipe)

    @property
    def num_blocks(self) -> int:
        """Transformer blocks, i.e. text cross-attention modules (30 on the 5B model, 40 on the 14B ones)."""
        return len(next(iter(self.experts.values())).blocks)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.experts.values())).config.patch_size)

    @property
    def size_multiple(self) -> int:
        """Pixels per token side: the VAE's spatial stride (8 on Wan2.1, 16 on Wan2.2's) times the patch."""
        return self.pipe.vae_scale_factor_spatial * self.patch_size[1]

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a window for a film of `width` x `height`: its aspect, at most the model's native area."""
        return fit_size(width, height, self.config.max_area, self.size_multiple)

    # ---- the subject --------------------------------------------------------------------------

    def load_adapter(self, path: str | os.PathLike[str]):
        """A LoRA-BE adapter trained on this model (`WanLoRABETrainer`); returns its config."""
        self.adapter_config, self.prompt_hook = load_adapter(self.pipe, path, self.config.max_sequence_length)
        return self.adapter_config

    # ---- where it runs --------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> WanVideoPipeline:
        self.pipe.to(device)
        return self

    def enable_low_vram(self, device: str | torch.device) -> None:
        """Group offload and a tiled VAE, for this pipeline's life (see the module docstring)."""
        if self.group_offloaded:
            return
        from diffusers.hooks import apply_group_offloading

        device = torch.device(device)
        placement.disable_offload(self.pipe)
        self.pipe.to("cpu")
        stream = device.type == "cuda"  # prefetch the next layers while these run
        for transformer in self.experts.values():
            transformer.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                             offload_type="leaf_level", use_stream=stream)
        apply_group_offloading(self.pipe.text_encoder, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=4)
        for small in (self.pipe.vae, self.pipe.image_encoder):
            if small is not None:
                small.to(device)
        self.pipe.vae.enable_tiling()
        self.group_offloaded = True

    @contextlib.contextmanager
    def running(self, device: str | torch.device, low_vram: bool = False) -> Iterator[WanVideoPipeline]:
        """The pipeline ready to run on `device` for the block (see the module docstring for the modes)."""
        device = torch.device(device)
        if low_vram or self.group_offloaded:
            self.enable_low_vram(device)
            try:
                yield self
            finally:
                placement.free_memory()
        elif len(self.experts) > 1 and device.type != "cpu":
            self.pipe.enable_model_cpu_offload(device=device)
            try:
                yield self
            finally:
                self.pipe.remove_all_hooks()
                self.pipe.to("cpu")
                placement.free_memory()
        else:
            with placement.on_device(self, device):
                yield self

    # ---- one window ---------------------------------------------------------------------------

    def __call__(self, image: np.ndarray | Image.Image, prompt: str, num_frames: int, seed: int = 0,
                 width: int | None = None, height: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | None = None) -> np.ndarray:
        """One window: `num_frames` (4k+1) frames (num_frames x H x W x 3 uint8, at `config.fps`) animating
        `image` as `prompt` says, sampled with `seed`; the size is `width` x `height`, by default the
        picture's aspect at the model's area. A prompt naming a loaded adapter's token reaches every block
        with that block's own subject embedding."""
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        if width is None or height is None:
            width, height = self.size_for(*picture.size)
        picture = picture.convert("RGB").resize((width, height), Image.LANCZOS)
        c = self.config
        packed = self.prompt_hook([prompt]) if self.prompt_hook is not None else None
        text = {"prompt_embeds": packed} if packed is not None else {"prompt": prompt}
        extra = {"guidance_scale_2": c.guidance_scale_2} if self.pipe.config.boundary_ratio is not None else {}
        out = self.pipe(image=picture, negative_prompt=c.negative_prompt if negative_prompt is None else negative_prompt,
                        height=height, width=width, num_frames=num_frames,
                        num_inference_steps=num_inference_steps or c.num_inference_steps,
                        guidance_scale=c.guidance_scale if guidance_scale is None else guidance_scale,
                        generator=torch.Generator(device="cpu").manual_seed(seed),
                        max_sequence_length=c.max_sequence_length, output_type="np", **text, **extra)
        return np.clip(np.rint(np.asarray(out.frames[0]) * 255), 0, 255).astype(np.uint8)


def load_wan(video_model: str, torch_dtype: torch.dtype | None = None) -> WanVideoPipeline:
    """The Wan model `video_model`, on the CPU until it runs; bf16 where the computing device is a GPU."""
    if torch_dtype is None:
        torch_dtype = torch.bfloat16 if placement.compute_device() == "cuda" else torch.float32
    return WanVideoPipeline.from_pretrained(video_model, torch_dtype=torch_dtype)

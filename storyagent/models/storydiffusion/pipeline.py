"""StoryDiffusion storyboard: one SDXL image per shot, the subject kept consistent across shots."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.models.storydiffusion.attention import ConsistentAttentionState, install_consistent_attention
from storyagent.models.storydiffusion.config import StoryDiffusionConfig
from storyagent.models.storydiffusion.prompts import shot_prompt
from storyagent.weights import resolve_weights


def load_sdxl(
    path: str | os.PathLike[str] | None = None,
    torch_dtype: torch.dtype | None = None,
    variant: str | None = None,
):
    """An SDXL pipeline in diffusers layout (base SDXL, RealVisXL ...) from a local folder or the HF cache.

    Raises `WeightsNotFoundError` naming `storyagent weights fetch sdxl-base` when absent.
    """
    from diffusers import StableDiffusionXLPipeline

    folder = resolve_weights("sdxl-base", path)
    return StableDiffusionXLPipeline.from_pretrained(
        folder, dtype=torch_dtype, variant=variant, local_files_only=True, add_watermarker=False
    )


@dataclass
class StoryDiffusionOutput:
    images: list[Image.Image] | list[np.ndarray]
    """One image per shot, in shot order (PIL, or H×W×3 float arrays in [0, 1] for output_type="np")."""
    prompts: list[str]
    """The full prompt each shot was drawn from."""
    identity: list[int]
    """Positions of the shots that were denoised together and filled the token bank."""


class StoryDiffusionPipeline:
    """SDXL with Consistent Self-Attention: identity shots together first, then the rest reading their tokens."""

    def __init__(self, sdxl, config: StoryDiffusionConfig | None = None) -> None:
        self.sdxl = sdxl
        self.config = config or StoryDiffusionConfig()
        self.state = ConsistentAttentionState(self.config.attention)
        self.layers = install_consistent_attention(sdxl.unet, self.state)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        config: StoryDiffusionConfig | None = None,
        cpu_offload: bool = False,
    ) -> StoryDiffusionPipeline:
        """An SDXL folder in diffusers layout, or "sdxl-base" from the weights registry when `path` is None.

        With `cpu_offload` the parts stay on the CPU and visit `device` only while they run.
        """
        sdxl = load_sdxl(path, torch_dtype=torch_dtype)
        sdxl.set_progress_bar_config(disable=True)
        if cpu_offload:
            sdxl.enable_model_cpu_offload(device=device)
        else:
            sdxl.to(device)
        return cls(sdxl, config)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """The SDXL in diffusers layout (unet/, vae/, text_encoder/ ...), which `from_pretrained(path)` reads back."""
        self.sdxl.save_pretrained(path)
        return Path(path)

    @torch.no_grad()
    def __call__(
        self,
        shots: Sequence[str],
        subject: str,
        *,
        seed: int = 0,
        style: str | None = None,
        num_identity: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        on_step: Callable[[], None] | None = None,
    ) -> StoryDiffusionOutput:
        """Draw one image per shot description, all showing `subject` (e.g. "a small grey rabbit").

        `on_step` is called after every denoising step of every batch (for a progress bar).
        """
        if not shots:
            raise ValueError("no shots to draw")
        # 1. This call's settings: the pipeline's defaults, overridden by what was passed.
        cfg = self.call_config(style=style, num_identity=num_identity, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, height=height, width=width)

        # 2. Prompts: the subject leads every shot, the style wraps all of them alike.
        pairs = [shot_prompt(subject, shot, cfg.style) for shot in shots]
        prompts, negatives = [p for p, _ in pairs], [n for _, n in pairs]

        # 3. Identity shots (fill the bank) and the rest (read it).
        identity = list(range(min(cfg.num_identity, len(shots))))
        rest = list(range(len(identity), len(shots)))

        # 4. One CPU generator per shot: a shot's starting noise depends on the seed and its position
        #    only, never on which batch it lands in.
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(len(shots))]

        def run(indices: list[int]) -> list:
            return self.denoise(cfg, [prompts[i] for i in indices], [negatives[i] for i in indices],
                                [generators[i] for i in indices], output_type, on_step)

        images: dict[int, object] = {}
        try:
            # 5. Write phase: the identity shots attend to each other's sampled tokens; the bank fills.
            self.state.begin("write", len(identity), (cfg.height, cfg.width), seed=seed)
            images.update(zip(identity, run(identity)))

            # 6. Read phase: the other shots attend to their own tokens plus the bank, a few at a time.
            step = max(1, cfg.read_batch_size)
            for batch in (rest[start : start + step] for start in range(0, len(rest), step)):
                self.state.begin("read", len(batch), (cfg.height, cfg.width))
                images.update(zip(batch, run(batch)))
        finally:
            # 7. The bank is large (tokens × layers × steps); never keep it past the call.
            self.state.clear()
        return StoryDiffusionOutput(images=[images[i] for i in range(len(shots))], prompts=prompts, identity=identity)

    def call_config(self, **overrides: object) -> StoryDiffusionConfig:
        """The pipeline's config with the per-call values that are not None put over it."""
        cfg = replace(self.config, **{k: v for k, v in overrides.items() if v is not None})
        if cfg.num_identity < 1:
            raise ValueError("num_identity must be at least 1")
        return cfg

    def denoise(self, cfg: StoryDiffusionConfig, prompts: list[str], negatives: list[str],
                generators: list[torch.Generator], output_type: str, on_step: Callable[[], None] | None) -> list:
        """One SDXL call over a batch of shots, in whichever phase `self.state` is in."""

        def step_end(pipe, step, timestep, kwargs):
            self.state.on_step_end(pipe, step, timestep, kwargs)
            if on_step is not None:
                on_step()
            return kwargs

        out = self.sdxl(
            prompt=prompts,
            negative_prompt=negatives,
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
            height=cfg.height,
            width=cfg.width,
            generator=generators,
            callback_on_step_end=step_end,
            output_type=output_type,
        )
        return list(out.images)

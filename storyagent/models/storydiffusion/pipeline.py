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
class IdentityPass:
    """The shots denoised together to fill the token bank. Store it with a storyboard and pass it
    back to redraw single shots later: the same pass gives the same bank, byte for byte."""

    prompts: list[str]
    """Shot texts as in `shots` (before the subject and the style are put around them)."""
    seeds: list[int]
    """One noise seed per prompt."""

    def member(self, text: str, seed: int) -> int | None:
        """Position of the first member with this text and seed, else None."""
        return next((j for j, pair in enumerate(zip(self.prompts, self.seeds)) if pair == (text, seed)), None)


@dataclass
class StoryDiffusionOutput:
    """What one storyboard call drew, and the identity pass to draw more shots like it later."""

    images: list[Image.Image | np.ndarray | None]
    """One entry per shot, in shot order: PIL, or H×W×3 float arrays in [0, 1] for output_type="np";
    None for a shot that was not drawn (not in `only`)."""
    prompts: list[str | None]
    """The full prompt each drawn shot was drawn from; None for a shot that was not drawn."""
    identity: list[int]
    """Positions of the drawn shots whose image is an identity-pass image (same text and seed as a member)."""
    identity_pass: IdentityPass | None = None
    """The identity pass this call ran (always set by the pipeline; None only in hand-built outputs)."""


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

    def to(self, device: str | torch.device) -> StoryDiffusionPipeline:
        self.sdxl.to(device)
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> StoryDiffusionPipeline:
        """Low-VRAM mode: SDXL's parts stay on the CPU and visit `device` one at a time (diffusers'
        model offload), and the VAE decodes one picture at a time instead of the whole batch."""
        self.sdxl.enable_model_cpu_offload(device=device)
        self.sdxl.vae.enable_slicing()
        return self

    def disable_model_cpu_offload(self) -> StoryDiffusionPipeline:
        """Undo `enable_model_cpu_offload`; every part is left on the CPU."""
        self.sdxl.remove_all_hooks()
        self.sdxl.vae.disable_slicing()
        self.sdxl.to("cpu")
        return self

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
        seeds: Sequence[int] | None = None,
        identity: IdentityPass | None = None,
        only: Sequence[int] | None = None,
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

        `seeds` gives every shot its own noise seed (default: `seed + i` for shot i). `identity` is
        the pass that fills the token bank (default: the first `num_identity` shots with their
        seeds); it always runs. `only` names the shots to draw (default: all): a shot with the
        text and seed of an identity member takes that member's image, every other one reads the
        bank. A shot's picture depends only on its own text and seed and on the identity pass, so
        redrawing shot k with the earlier `identity_pass` and `only=[k]` reproduces it exactly
        (with `read_batch_size` 1; batching read shots may change the last bits).

        `on_step` is called once per shot and denoising step actually run: steps × (identity-pass
        size + shots read) calls in all, which for a full draw with the default pass is steps × shots.
        """
        if not shots:
            raise ValueError("no shots to draw")
        # 1. This call's settings: the pipeline's defaults, overridden by what was passed.
        cfg = self.call_config(style=style, num_identity=num_identity, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, height=height, width=width)
        size = (cfg.height, cfg.width)

        # 2. One seed per shot, and the shots to draw.
        seeds, wanted = _seeds_and_shots(len(shots), seed, seeds, only)
        prompts = {i: shot_prompt(subject, shots[i], cfg.style)[0] for i in wanted}

        # 3. The identity pass, and which drawn shots take its images (member j) or read the bank.
        n = min(cfg.num_identity, len(shots))
        identity = identity or IdentityPass(list(shots[:n]), seeds[:n])
        if not identity.prompts or len(identity.prompts) != len(identity.seeds):
            raise ValueError("the identity pass needs one seed per prompt and at least one prompt")
        members = {i: identity.member(shots[i], seeds[i]) for i in wanted}
        from_identity = {i: j for i, j in members.items() if j is not None}
        read = [i for i, j in members.items() if j is None]

        def draw(texts: list[str], text_seeds: list[int], kind: str) -> list:
            # a shot's starting noise comes from its own seed alone, never from its batch
            pairs = [shot_prompt(subject, text, cfg.style) for text in texts]
            generators = [torch.Generator("cpu").manual_seed(s) for s in text_seeds]
            return self.denoise(cfg, [p for p, _ in pairs], [neg for _, neg in pairs], generators, kind, on_step)

        images: dict[int, object] = {}
        try:
            # 4. Write phase: the identity shots attend to each other's sampled tokens; the bank fills.
            #    Its pictures are decoded only when a drawn shot takes one.
            self.state.begin("write", identity.seeds, size)
            written = draw(identity.prompts, identity.seeds, output_type if from_identity else "latent")
            images.update((i, written[j]) for i, j in from_identity.items())

            # 5. Read phase: the other shots attend to their own tokens plus the bank, a few at a time.
            step = max(1, cfg.read_batch_size)
            for batch in (read[start : start + step] for start in range(0, len(read), step)):
                batch_seeds = [seeds[i] for i in batch]
                self.state.begin("read", batch_seeds, size)
                images.update(zip(batch, draw([shots[i] for i in batch], batch_seeds, output_type)))
        finally:
            # 6. The bank is large (tokens × layers × steps); never keep it past the call.
            self.state.clear()
        return StoryDiffusionOutput(
            images=[images.get(i) for i in range(len(shots))],
            prompts=[prompts.get(i) for i in range(len(shots))],
            identity=sorted(from_identity),
            identity_pass=identity,
        )

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
                # once per shot, so a progress total of steps × shots holds however the shots are batched
                for _ in prompts:
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


def _seeds_and_shots(num_shots: int, seed: int, seeds: Sequence[int] | None,
                     only: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """One seed per shot (default `seed + i`), and the indices of the shots to draw (default all), checked."""
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(num_shots)]
    if len(seeds) != num_shots:
        raise ValueError(f"{len(seeds)} seeds for {num_shots} shots")
    wanted = sorted(set(only)) if only is not None else list(range(num_shots))
    if not wanted or not 0 <= wanted[0] <= wanted[-1] < num_shots:
        raise ValueError(f"`only` must name shots among 0..{num_shots - 1}, got {only}")
    return seeds, wanted

"""AnyDoorPipeline: redraw a reference subject into a region of a target image.

Upstream AnyDoor (Chen et al. 2023) is a ControlNet-guided SD-2.1-shaped latent diffusion model
conditioned on DINOv2 identity tokens instead of text. Here it is assembled from stock parts:

    reference crop --AnyDoorImageEncoder--> context (B, 257, 1024)
    collage + mask (B, 4, 512, 512) --ControlNetModel--> 13 residuals
    UNet2DConditionModel(latents, t, context, residuals) --> eps
    DDIMScheduler (50 steps, guidance 5.0) --> latents --AutoencoderKL--> image crop --> pasted back
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.models.anydoor.components import build_scheduler
from storyagent.models.anydoor.config import AnyDoorConfig
from storyagent.models.anydoor.image_encoder import AnyDoorImageEncoder
from storyagent.models.anydoor.preprocessing import (
    PreprocessConfig,
    prepare_reference,
    prepare_target,
    paste_back,
)
from storyagent.progress import make_progress


@dataclass
class AnyDoorOutput:
    """What one redraw produced."""

    image: np.ndarray
    """The full target frame with the subject redrawn, H x W x 3 uint8."""
    crop: np.ndarray
    """The generated square crop (image_size x image_size x 3 uint8) before paste-back."""
    paste_box: tuple[int, int, int, int]
    """(y1, y2, x1, x2) of the frame region that was replaced; every pixel outside it is the input's."""


class AnyDoorPipeline:
    """AnyDoor inference on diffusers/transformers modules; `redraw` is the storyboard tool's entry point."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel, vae: AutoencoderKL,
                 image_encoder: AnyDoorImageEncoder, scheduler: DDIMScheduler,
                 config: AnyDoorConfig | None = None) -> None:
        self.unet = unet
        self.controlnet = controlnet
        self.vae = vae
        self.image_encoder = image_encoder
        self.scheduler = scheduler
        self.config = config or AnyDoorConfig()
        self._offload: torch.device | None = None
        """The device the parts visit under model CPU offload (None: no offload)."""

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> AnyDoorPipeline:
        """Load a folder written by `convert.convert_checkpoint` (or `save_pretrained`).

        Without `path`, the converted weights are looked up as the `anydoor` entry of the
        weights registry; a folder that is missing or incomplete raises WeightsNotFoundError.
        """
        from storyagent.weights import resolve_weights

        path = resolve_weights("anydoor", path)
        needed = ["config.json", "unet", "controlnet", "vae", "image_encoder"]
        if not path.is_dir() or any(not (path / n).exists() for n in needed):
            raise WeightsNotFoundError(
                f"{path} is not a converted AnyDoor folder (needs {', '.join(needed)}); run "
                "`storyagent weights fetch anydoor`, which downloads and converts it once.")
        config = AnyDoorConfig.from_json(path / "config.json")
        pipe = cls(
            unet=UNet2DConditionModel.from_pretrained(path / "unet", dtype=torch_dtype),
            controlnet=ControlNetModel.from_pretrained(path / "controlnet", dtype=torch_dtype),
            vae=AutoencoderKL.from_pretrained(path / "vae", dtype=torch_dtype),
            image_encoder=AnyDoorImageEncoder.from_pretrained(path / "image_encoder", torch_dtype),
            scheduler=build_scheduler(config.diffusion),
            config=config,
        )
        return pipe.to(device)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        from storyagent.fileio import atomic_write_json

        folder = Path(path)
        for name in ("unet", "controlnet", "vae", "image_encoder"):
            getattr(self, name).save_pretrained(folder / name)
        atomic_write_json(folder / "config.json", self.config.to_dict())
        return folder

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> AnyDoorPipeline:
        for module in (self.unet, self.controlnet, self.vae, self.image_encoder):
            module.to(device=device, dtype=dtype)
        return self

    @property
    def models(self) -> tuple[torch.nn.Module, ...]:
        """The parts, in the order a redraw calls them."""
        return (self.image_encoder, self.controlnet, self.unet, self.vae)

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> AnyDoorPipeline:
        """Keep the parts on the CPU; each visits `device` for its forward and leaves when the next
        part in redraw order starts (the ControlNet and the UNet share the device while denoising)."""
        from accelerate import cpu_offload_with_hook

        self.disable_model_cpu_offload()
        self._offload = torch.device(device)
        hook = None
        for module in self.models:
            _, hook = cpu_offload_with_hook(module, self._offload, prev_module_hook=hook)
        return self

    def disable_model_cpu_offload(self) -> AnyDoorPipeline:
        """Remove the offload hooks; every part is left on the CPU."""
        if self._offload is None:
            return self
        from accelerate.hooks import remove_hook_from_module

        for module in self.models:
            remove_hook_from_module(module, recurse=True)
            module.to("cpu")
        self._offload = None
        return self

    @property
    def device(self) -> torch.device:
        """Where the pipeline's tensors are made: the offload's device, else the UNet's."""
        return self._offload if self._offload is not None else self.unet.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    # ------------------------------------------------------------------ model calls
    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) in [0, 1] -> identity context (B, 257, context_dim)."""
        return self.image_encoder(reference.to(self.device))

    def encode_unconditional(self, batch_size: int = 1) -> torch.Tensor:
        return self.image_encoder.unconditional(batch_size)

    def control_residuals(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                          hint: torch.Tensor, control_scale: float = 1.0) -> list[torch.Tensor]:
        """The ControlNet's 13 residuals (12 encoder skips, then the middle block), in upstream order."""
        down, mid = self.controlnet(latents, timestep, encoder_hidden_states=context, controlnet_cond=hint,
                                    conditioning_scale=control_scale, return_dict=False)
        return [*down, mid]

    def predict_noise(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                      hint: torch.Tensor, control_scale: float = 1.0) -> torch.Tensor:
        """eps from the UNet with the ControlNet residuals added to its skips and middle block."""
        *down, mid = self.control_residuals(latents, timestep, context, hint, control_scale)
        return self.unet(latents, timestep, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, return_dict=False)[0]

    def denoise(self, latents: torch.Tensor, hint: torch.Tensor, context: torch.Tensor,
                uncond_context: torch.Tensor | None, num_inference_steps: int, guidance_scale: float,
                eta: float = 0.0, control_scale: float = 1.0, generator: torch.Generator | None = None,
                show_progress: bool = False) -> torch.Tensor:
        """DDIM from `latents` with classifier-free guidance; the unconditional branch keeps the hint."""
        self.scheduler.set_timesteps(num_inference_steps, device=latents.device)
        guided = uncond_context is not None and guidance_scale != 1.0
        with make_progress(transient=True, disable=not show_progress) as progress:
            task = progress.add_task("AnyDoor DDIM", total=len(self.scheduler.timesteps), status="")
            for t in self.scheduler.timesteps:
                if guided:
                    # cond and uncond in one batch: (2B, ...) -> two (B, ...) halves
                    eps_cond, eps_uncond = self.predict_noise(
                        torch.cat([latents, latents]), t, torch.cat([context, uncond_context]),
                        torch.cat([hint, hint]), control_scale).chunk(2)
                    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
                else:
                    eps = self.predict_noise(latents, t, context, hint, control_scale)
                latents = self.scheduler.step(eps, t, latents, eta=eta, generator=generator, return_dict=False)[0]
                progress.advance(task)
        return latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] (not clamped), as upstream's decode_first_stage."""
        return self.vae.decode(latents / self.config.diffusion.scale_factor, return_dict=False)[0]

    # ------------------------------------------------------------------ the redraw
    @torch.no_grad()
    def __call__(self, reference_image: np.ndarray, reference_mask: np.ndarray, target_image: np.ndarray,
                 target_mask: np.ndarray | None = None, target_box: tuple[int, int, int, int] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 control_scale: float | None = None, eta: float | None = None,
                 generator: torch.Generator | None = None, preprocess: PreprocessConfig | None = None,
                 show_progress: bool = True) -> AnyDoorOutput:
        """Redraw the subject of `reference_image` (where `reference_mask`) into `target_image`.

        The target region is `target_mask` (H x W bool) or `target_box` (y1, y2, x1, x2). Images are
        H x W x 3 uint8 RGB. Pixels outside the returned `paste_box` are never changed.
        """
        sampling = self.config.sampling
        steps = num_inference_steps or sampling.ddim_steps
        guidance = sampling.cfg_scale if guidance_scale is None else guidance_scale
        preprocess = preprocess or PreprocessConfig(reference_size=self.config.dinov2.input_size,
                                                      target_size=self.config.image_size)
        if target_mask is None:
            if target_box is None:
                raise InputError("Give the target region as a mask or a box (y1, y2, x1, x2).")
            y1, y2, x1, x2 = target_box
            target_mask = np.zeros(target_image.shape[:2], dtype=bool)
            target_mask[y1:y2, x1:x2] = True

        # 1. Reference: subject on white, cropped with margin, square, 224 px; its high-frequency map.
        reference = prepare_reference(reference_image, reference_mask, preprocess)
        # 2. Target: square crop around the (expanded) box, collage = detail map pasted in the box.
        target = prepare_target(target_image, target_mask, reference, preprocess)

        # 3. Conditioning: identity tokens of the reference and of a zero image (guidance).
        device, dtype = self.device, self.dtype
        ref = torch.from_numpy(reference.image).permute(2, 0, 1)[None].to(device, torch.float32) / 255.0
        context = self.encode_reference(ref).to(dtype)
        uncond = self.encode_unconditional(1).to(dtype) if guidance != 1.0 else None
        hint = torch.from_numpy(target.hint).permute(2, 0, 1)[None].to(device, dtype)  # (1, 4, S, S)

        # 4. Starting noise at latent size.
        side = target.hint.shape[0] // self.vae_scale
        latents = torch.randn((1, self.unet.config.in_channels, side, side), generator=generator,
                              device=generator.device if generator is not None else device, dtype=torch.float32)
        latents = latents.to(device, dtype)

        # 5. DDIM with classifier-free guidance.
        latents = self.denoise(latents, hint, context, uncond, steps, guidance,
                               eta=sampling.eta if eta is None else eta,
                               control_scale=sampling.control_scale if control_scale is None else control_scale,
                               generator=generator, show_progress=show_progress)

        # 6. Decode to a uint8 crop.
        decoded = self.decode_latents(latents)[0].float().clamp(-1, 1)
        crop = ((decoded.permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).round().astype(np.uint8)

        # 7. Paste the crop back into the frame, inside the crop box minus a margin.
        image, box = paste_back(crop, target_image, target, preprocess)
        return AnyDoorOutput(image=image, crop=crop, paste_box=box)

    def redraw(self, reference_image: np.ndarray, reference_mask: np.ndarray, target_image: np.ndarray,
               target_mask: np.ndarray, seed: int | None = 0, **kwargs) -> np.ndarray:
        """Storyboard entry point: the full frame (H x W x 3 uint8) with the subject redrawn in the mask."""
        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        return self(reference_image, reference_mask, target_image, target_mask, generator=generator, **kwargs).image

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


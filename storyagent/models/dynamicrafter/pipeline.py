"""DynamiCrafter image-to-video pipeline (diffusers style): one `__call__` walking numbered steps."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.models.dynamicrafter.config import DynamiCrafterConfig, variant_config
from storyagent.models.dynamicrafter.encoders import ImageEncoder, TextEncoder
from storyagent.models.dynamicrafter.loading import (
    COMPONENTS, load_component, load_encoders, missing_components, save_component, save_encoders,
)
from storyagent.models.dynamicrafter.offload import ModelOffloadMixin
from storyagent.models.dynamicrafter.resampler import Resampler
from storyagent.models.dynamicrafter.scheduler import DDIMScheduler, rescale_guidance
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
from storyagent.models.dynamicrafter.vae import build_vae, decode_frames, encode_frames
from storyagent.progress import make_progress

ImageInput = Any  # PIL image, H x W x 3 uint8 array, or (b, 3, H, W) tensor in [-1, 1]


ImageFit = Literal["crop", "pad"]
"""How a picture of another aspect becomes the model's frame: "crop" (resize to cover, centre-crop:
upstream's `resize_center_crop`) or "pad" (resize to fit inside, letterbox with black bars: nothing
of the picture is lost; the output's `content_box` says where it lies)."""


@dataclass
class DynamiCrafterOutput:
    frames: torch.Tensor | np.ndarray
    """"pt": (b, 3, t, H, W) in [-1, 1]; "np": (b, t, H, W, 3) uint8; "latent": (b, 4, t, h, w)."""
    content_box: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) pixels of the frames that show the conditioning picture (the first
    image's) with `image_fit="pad"`; the rest are the letterbox bars. None: the whole frame."""


@dataclass
class Conditioning:
    """What the UNet sees besides the noisy latent."""

    context: torch.Tensor
    """(b, 77 + tokens, d): text tokens followed by the Resampler's image tokens."""
    concat: torch.Tensor
    """(b, 4, t, h, w): the conditioning frame's latent repeated over the frames."""
    uncond_context: torch.Tensor | None = None
    """The same for the unconditional branch of classifier-free guidance (None: no guidance)."""
    module_contexts: list[torch.Tensor] | None = None
    """Optional per-cross-attention-module contexts for the conditional branch (LoRA-BE's block-wise tokens)."""


def fit_box(size: tuple[int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a (h, w) picture resized to fit inside a height x width frame
    (aspect kept, centred): the part of a letterboxed frame that shows the picture."""
    h, w = size
    scale = min(height / h, width / w)
    fh, fw = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    top, left = (height - fh) // 2, (width - fw) // 2
    return top, top + fh, left, left + fw


class DynamiCrafterPipeline(ModelOffloadMixin):
    """Animate one image into a short clip, guided by a prompt.

    Components: `unet`, `vae` (diffusers AutoencoderKL), `resampler`, `scheduler`, and the two
    encoders (`text_encoder`, `image_encoder`); the encoders may be None when the caller supplies
    text and image tokens itself (the parity check does).
    """

    def __init__(self, config: DynamiCrafterConfig, unet: DynamiCrafterUNet, vae: nn.Module, resampler: Resampler,
                 text_encoder: TextEncoder | None = None, image_encoder: ImageEncoder | None = None) -> None:
        self.config = config
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.resampler = resampler.eval()
        self.text_encoder = text_encoder.eval() if text_encoder is not None else None
        self.image_encoder = image_encoder.eval() if image_encoder is not None else None
        self.scheduler = DDIMScheduler(config.diffusion)
        self.device = torch.device("cpu")
        self.offload = False
        self.vae_chunk: int | None = 1 if config.diffusion.perframe_ae else None
        # Set by a subject adapter (LoRA-BE): prompts -> (modules, b, 77, d) text contexts, or None
        # when no prompt mentions its token.
        self.prompt_hook: Callable[[list[str]], torch.Tensor | None] | None = None
        self.adapter_fs: int | None = None
        """The fs a subject adapter (LoRA-BE) was trained at, pinned in its file (`lora_be.load_adapter`
        sets it): the default fs of `__call__` while it is set; None: the variant's `sampling.fs`."""

    # ------------------------------------------------------------------ loading / placement
    @classmethod
    def from_config(cls, config: DynamiCrafterConfig, text_encoder: TextEncoder | None = None,
                    image_encoder: ImageEncoder | None = None) -> DynamiCrafterPipeline:
        """Random weights (for tests and benchmarks)."""
        return cls(config, DynamiCrafterUNet(config.unet), build_vae(config.vae), Resampler(config.resampler),
                   text_encoder, image_encoder)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", variant: str = "512",
                        config: DynamiCrafterConfig | None = None) -> DynamiCrafterPipeline:
        """Load a folder written by `convert.py` (or `save_pretrained`), or an official `model.ckpt`.

        Without a path, the weights are looked up through `storyagent.weights`
        (STORYAGENT_WEIGHTS_DYNAMICRAFTER_512 or the Hugging Face cache). An official checkpoint is
        converted to safetensors once, into the StoryAgent cache (STORYAGENT_CACHE, default
        ~/.cache/storyagent), and loaded from there afterwards; `config` overrides the variant's
        configuration for that conversion.
        """
        # Imported here: `python -m storyagent.models.dynamicrafter.convert` must not find it imported already.
        from storyagent.models.dynamicrafter.convert import converted_once
        from storyagent.weights import resolve_weights

        name = f"dynamicrafter-{variant}"
        folder = resolve_weights(name, path)
        if folder.is_file() and folder.suffix in (".ckpt", ".pt", ".pth"):
            folder = converted_once(folder, name, config or variant_config(variant))
        if folder.is_file() or not (folder / "config.json").exists():
            raise WeightsNotFoundError(
                f"{folder} is not a converted DynamiCrafter folder (config.json, {'/, '.join(COMPONENTS)}/); "
                f"run `storyagent weights fetch {name}`, which downloads and converts it once."
            )
        if missing := missing_components(folder):
            raise WeightsNotFoundError(f"{folder} lacks {', '.join(m + '/' for m in missing)}; "
                                       f"run `storyagent weights fetch {name}` to convert it again.")
        config = DynamiCrafterConfig.from_json(folder / "config.json")
        with torch.device("meta"):
            unet, vae, resampler = DynamiCrafterUNet(config.unet), build_vae(config.vae), Resampler(config.resampler)
        for module, name in zip((unet, vae, resampler), COMPONENTS):
            load_component(module, folder, name)
        pipe = cls(config, unet, vae, resampler, *load_encoders(folder))
        return pipe.to(device, torch_dtype)

    def save_pretrained(self, path: str | Path) -> Path:
        from storyagent.fileio import atomic_write_json

        folder = Path(path)
        for module, name in zip((self.unet, self.vae, self.resampler), COMPONENTS):
            save_component(folder, name, module.state_dict())
        save_encoders(folder, self.text_encoder, self.image_encoder)
        atomic_write_json(folder / "config.json", self.config.to_dict())
        return folder

    @property
    def modules(self) -> dict[str, nn.Module]:
        mods = {"unet": self.unet, "vae": self.vae, "resampler": self.resampler}
        if self.text_encoder is not None:
            mods["text_encoder"] = self.text_encoder
        if self.image_encoder is not None:
            mods["image_encoder"] = self.image_encoder
        return mods

    def disable_model_cpu_offload(self) -> DynamiCrafterPipeline:
        """Undo `enable_model_cpu_offload`: every model stays on the CPU, where `to` may move them."""
        self.offload = False
        self.device = torch.device("cpu")
        for module in self.modules.values():
            module.to("cpu")
        return self

    def compile_unet(self, mode: str | None = None) -> DynamiCrafterPipeline:
        """torch.compile the UNet (the first call compiles; later calls with the same shapes are faster)."""
        self.unet = torch.compile(self.unet, mode=mode)  # type: ignore[assignment]
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @property
    def default_fs(self) -> int:
        """The fs `__call__` samples at when none is given: the adapter's (`adapter_fs`), else the variant's."""
        return self.adapter_fs if self.adapter_fs is not None else self.config.sampling.fs

    # ------------------------------------------------------------------ building blocks
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        if self.text_encoder is None:
            raise WeightsNotFoundError("This pipeline has no text encoder; load the converted folder with its "
                                       "text_encoder/ (convert.py writes it from model.ckpt).")
        with self.running(self.text_encoder) as enc, torch.no_grad():
            return enc(prompts).to(self.device)

    def encode_image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) in [-1, 1] -> Resampler tokens (b, frames * 16, d)."""
        if self.image_encoder is None:
            raise WeightsNotFoundError("This pipeline has no image encoder; load the converted folder with its "
                                       "image_encoder/ (convert.py writes it from model.ckpt).")
        with self.running(self.image_encoder) as enc, torch.no_grad():
            tokens = enc(images).to(self.device)
        return self.resample(tokens)

    def resample(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        with self.running(self.resampler) as res, torch.no_grad():
            return res(clip_tokens.to(self.device, self.resampler.proj_in.weight.dtype))

    def predict(self, latents: torch.Tensor, t: int, cond: Conditioning, fs: torch.Tensor,
                guidance_scale: float, guidance_rescale: float) -> torch.Tensor:
        """The (guided) UNet output for `latents` at timestep `t`."""
        b = latents.shape[0]
        x = torch.cat([latents, cond.concat], dim=1)
        guided = cond.uncond_context is not None and guidance_scale != 1.0
        module_contexts = cond.module_contexts
        if guided:
            # Both branches in one batch: [conditional; unconditional].
            x = torch.cat([x, x])
            context = torch.cat([cond.context, cond.uncond_context])
            fs = torch.cat([fs, fs])
            if module_contexts is not None:
                module_contexts = [torch.cat([c, cond.uncond_context]) for c in module_contexts]
        else:
            context = cond.context
        ts = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = self.unet(x, ts, context, fs=fs, module_contexts=module_contexts).float()
        if not guided:
            return out
        out_cond, out_uncond = out[:b], out[b:]
        out = out_uncond + guidance_scale * (out_cond - out_uncond)
        if guidance_rescale > 0:
            out = rescale_guidance(out, out_cond, guidance_rescale)
        return out

    def denoise(self, latents: torch.Tensor, cond: Conditioning, fs: torch.Tensor, num_inference_steps: int,
                guidance_scale: float, guidance_rescale: float, eta: float, timestep_spacing: str | None = None,
                generator: torch.Generator | None = None,
                callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """DDIM from `latents` (b, 4, t, h, w) at the last timestep down to a clean latent video."""
        spacing = timestep_spacing or self.config.sampling.timestep_spacing
        timesteps = self.scheduler.set_timesteps(num_inference_steps, spacing, eta)
        with self.running(self.unet), torch.no_grad():
            for i, t in enumerate(timesteps.tolist()):
                out = self.predict(latents, t, cond, fs, guidance_scale, guidance_rescale)
                latents = self.scheduler.step(out, t, latents.float(), generator).prev_sample
                if callback is not None:
                    callback(i + 1, len(timesteps))
        return latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        with self.running(self.vae) as vae, torch.no_grad():
            return decode_frames(vae, latents.to(self.device), self.config.diffusion.scale_factor, self.vae_chunk).float()

    def encode_latents(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with self.running(self.vae) as vae, torch.no_grad():
            return encode_frames(vae, video.to(self.device), self.config.diffusion.scale_factor, generator,
                                 self.vae_chunk).float()

    def prepare_image(self, image: ImageInput | list[ImageInput], height: int, width: int,
                      fit: ImageFit = "crop") -> torch.Tensor:
        """Any supported image input -> (b, 3, height, width) float in [-1, 1]: resized to cover and
        centre-cropped, or with `fit="pad"` resized to fit inside and letterboxed (`fit_box`)."""
        if fit not in ("crop", "pad"):
            raise InputError(f"image_fit must be 'crop' or 'pad', not {fit!r}.")
        images = image if isinstance(image, list) else [image]
        tensors = []
        for img in images:
            if isinstance(img, torch.Tensor):
                t = img.float()
                t = t[None] if t.ndim == 3 else t
            else:
                arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
                if arr.ndim != 3 or arr.shape[2] != 3:
                    raise InputError(f"The conditioning image must be H x W x 3 RGB, got shape {arr.shape}.")
                t = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            if fit == "pad":
                top, bottom, left, right = fit_box(tuple(t.shape[-2:]), height, width)
                size = (bottom - top, right - left)
                if size != tuple(t.shape[-2:]):
                    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
                # Black bars (-1): letterboxed video is something the model has seen, and it keeps them still.
                tensors.append(F.pad(t.clamp(-1, 1), (left, width - right, top, height - bottom), value=-1.0))
                continue
            scale = max(height / t.shape[-2], width / t.shape[-1])
            size = (max(height, round(t.shape[-2] * scale)), max(width, round(t.shape[-1] * scale)))
            if size != tuple(t.shape[-2:]):
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
            top, left = (size[0] - height) // 2, (size[1] - width) // 2
            tensors.append(t[..., top : top + height, left : left + width].clamp(-1, 1))
        return torch.cat(tensors).to(self.device)

    def encode_conditioning(self, pixels: torch.Tensor, prompts: list[str], num_frames: int, guided: bool,
                            generator: torch.Generator | None = None) -> Conditioning:
        """Everything the UNet sees besides the noisy latent, for (b, 3, H, W) images in [-1, 1]."""
        b = pixels.shape[0]
        # Text tokens of the prompt (one set per cross-attention module when a subject adapter
        # recognises its token), and of the empty prompt for the unconditional branch.
        module_texts = None
        if self.prompt_hook is not None:
            # The hook runs the text encoder itself: under model offload it must visit the device too.
            with self.running(self.text_encoder) if self.text_encoder is not None else contextlib.nullcontext():
                module_texts = self.prompt_hook(prompts)
            module_texts = module_texts.to(self.device) if module_texts is not None else None
        text = module_texts[0] if module_texts is not None else self.encode_prompt(prompts)
        uncond_text = None
        if guided:
            uncond_text = (self.encode_prompt([""] * b) if self.config.diffusion.uncond_type == "empty_seq"
                           else torch.zeros_like(text))
        # Image tokens of the conditioning image, and of a zero image for the unconditional branch.
        image_tokens = self.encode_image_tokens(pixels)
        uncond_image_tokens = self.encode_image_tokens(torch.zeros_like(pixels)) if guided else None
        # Latent of the conditioning frame, repeated over the frames (concatenated to the UNet input).
        z = self.encode_latents(pixels[:, :, None], generator)  # (b, 4, 1, h, w)
        return Conditioning(
            context=torch.cat([text, image_tokens], dim=1).to(self.dtype),
            concat=z.expand(-1, -1, num_frames, -1, -1).to(self.dtype),
            uncond_context=torch.cat([uncond_text, uncond_image_tokens], dim=1).to(self.dtype) if guided else None,
            module_contexts=None if module_texts is None else
            [torch.cat([m.to(self.device), image_tokens], dim=1).to(self.dtype) for m in module_texts],
        )

    def check_inputs(self, height: int, width: int, output_type: str, images: int, prompts: int) -> None:
        factor = self.config.vae_scale * 2 ** (len(self.config.unet.channel_mult) - 1)
        if height % factor or width % factor:
            raise InputError(f"height and width must be multiples of {factor}, got {height}x{width}.")
        if output_type not in ("pt", "np", "latent"):
            raise InputError(f"output_type must be 'pt', 'np' or 'latent', not {output_type!r}.")
        if images != prompts:
            raise InputError(f"Got {images} images but {prompts} prompts; give one prompt per image.")

    # ------------------------------------------------------------------ the pipeline
    def __call__(
        self,
        image: ImageInput | list[ImageInput],
        prompt: str | list[str],
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        eta: float | None = None,
        fs: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        latents: torch.Tensor | None = None,
        show_progress: bool = True,
        image_fit: ImageFit = "crop",
    ) -> DynamiCrafterOutput:
        """Animate `image` under `prompt`. Every sampling setting left None is the variant's
        (`config.sampling`, upstream's scripts/run.sh: 50 DDIM steps, guidance 7.5, eta 1.0, fs 24 for
        the 512 model), except fs, which follows a loaded adapter (`default_fs`). `image_fit`: how a
        picture of another aspect becomes the frame (`ImageFit`)."""
        s = self.config.sampling
        num_frames, height, width = num_frames or s.frames, height or s.height, width or s.width
        num_inference_steps = s.ddim_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = s.cfg_scale if guidance_scale is None else guidance_scale
        eta = s.eta if eta is None else eta
        guidance_rescale = s.guidance_rescale if guidance_rescale is None else guidance_rescale
        fs = self.default_fs if fs is None else fs

        # 1. Check the inputs and bring the images to (b, 3, height, width) in [-1, 1].
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        pixels = self.prepare_image(image, height, width, image_fit)
        content = None
        if image_fit == "pad":
            first = image[0] if isinstance(image, list) else image
            first_hw = tuple(first.shape[-2:]) if isinstance(first, torch.Tensor) else np.asarray(first).shape[:2]
            content = fit_box(first_hw, height, width)
        self.check_inputs(height, width, output_type, pixels.shape[0], len(prompts))
        b = pixels.shape[0]

        # 2. Conditioning: text and image tokens, and the first frame's latent (see encode_conditioning).
        cond = self.encode_conditioning(pixels, prompts, num_frames, guidance_scale != 1.0, generator)

        # 3. Starting noise.
        shape = (b, self.config.unet.out_channels, num_frames, *cond.concat.shape[-2:])
        if latents is None:
            latents = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu")
        latents = latents.to(self.device, torch.float32)
        fs_t = torch.full((b,), fs, dtype=torch.long, device=self.device)

        # 4. DDIM with classifier-free guidance.
        with make_progress(transient=True, disable=not show_progress) as bar:
            task = bar.add_task("DynamiCrafter", total=num_inference_steps, status="")
            latents = self.denoise(latents, cond, fs_t, num_inference_steps, guidance_scale, guidance_rescale, eta,
                                   generator=generator, callback=lambda i, n: bar.update(task, completed=i))
        if output_type == "latent":
            return DynamiCrafterOutput(latents, content)

        # 5. Decode frame by frame (or in chunks of `vae_chunk`).
        video = self.decode_latents(latents)
        if output_type == "pt":
            return DynamiCrafterOutput(video, content)

        # 6. To uint8 frames (b, t, H, W, 3).
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        return DynamiCrafterOutput(frames, content)

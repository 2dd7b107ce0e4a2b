"""DynamiCrafter's outputs for a parity fixture made by the upstream code (`storyagent.models.parity`
compares them and is the command: `python -m storyagent.models.parity FIXTURE_DIR`).

Everything is built from the fixture's config and loaded through the converter's key mapping;
nothing about a particular fixture is assumed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from storyagent.models.dynamicrafter.config import DynamiCrafterConfig
from storyagent.models.dynamicrafter.convert import split_checkpoint
from storyagent.models.dynamicrafter.pipeline import Conditioning, DynamiCrafterPipeline
from storyagent.models.dynamicrafter.resampler import Resampler
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
from storyagent.models.dynamicrafter.vae import build_vae


def load_fixture_pipeline(fixture: Path) -> DynamiCrafterPipeline:
    config = DynamiCrafterConfig.from_json(fixture / "config.json")
    parts = split_checkpoint(load_file(fixture / "weights.safetensors"), config)
    unet, vae, resampler = DynamiCrafterUNet(config.unet), build_vae(config.vae), Resampler(config.resampler)
    for module, name in ((unet, "unet"), (vae, "vae"), (resampler, "resampler")):
        module.load_state_dict(parts[name], strict=True)
    return DynamiCrafterPipeline(config, unet, vae, resampler)


def compute_outputs(fixture: Path) -> dict[str, torch.Tensor]:
    """Everything the fixture records, recomputed by our modules."""
    pipe = load_fixture_pipeline(fixture)
    cfg = pipe.config
    inputs = load_file(fixture / "inputs.safetensors")
    ours: dict[str, torch.Tensor] = {}

    with torch.no_grad():
        ours["alphas_cumprod"] = pipe.scheduler.alphas_cumprod
        if pipe.scheduler.scale_arr is not None:
            ours["scale_arr"] = pipe.scheduler.scale_arr

        image_tokens = pipe.resample(inputs["clip_image_tokens"])
        ours["image_tokens"] = image_tokens

        x_t = inputs["x_T"]
        frames = x_t.shape[2]
        # (b, 4, h, w) -> (b, 4, t, h, w): the conditioning latent repeated over the frames.
        concat = inputs["image_latent"][:, :, None].expand(-1, -1, frames, -1, -1)
        context = torch.cat([inputs["text_context"], image_tokens], dim=1)
        fs = inputs["fs"].long()
        probe = inputs["probe_timestep"].long()
        ours["unet_out"] = pipe.unet(torch.cat([x_t, concat], dim=1), probe, context, fs=fs)

        uncond = None
        if "uncond_text_context" in inputs and "uncond_clip_image_tokens" in inputs:
            uncond = torch.cat([inputs["uncond_text_context"], pipe.resample(inputs["uncond_clip_image_tokens"])], dim=1)
        s = cfg.sampling
        samples = pipe.denoise(
            x_t.clone(), Conditioning(context, concat, uncond), fs, s.ddim_steps, s.cfg_scale, s.guidance_rescale,
            s.eta, s.timestep_spacing, generator=torch.Generator().manual_seed(0),
        )
        ours["ddim_samples"] = samples
        ours["decoded_video"] = pipe.decode_latents(samples)
    return ours


if __name__ == "__main__":
    from storyagent.models.parity import main

    raise SystemExit(main([*sys.argv[1:], "--family", "dynamicrafter"]))

"""Numerical parity against outputs of the upstream DynamiCrafter code.

    python -m storyagent.models.dynamicrafter.parity FIXTURE_DIR [--tolerance 1e-4]

A fixture folder holds `config.json` (upstream config names), `weights.safetensors` (the upstream
state dict, official key names), `inputs.safetensors` and `outputs.safetensors`. Everything is
built from the config and loaded through the converter's key mapping; nothing about a particular
fixture is assumed. One line per output with the relative error ||ours - ref|| / ||ref||; the exit
status is 0 only when every error is below the tolerance.
"""

from __future__ import annotations

import argparse
import json
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


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double(), ref.double()
    if ours.shape != ref.shape:
        return float("inf")
    denom = ref.norm()
    return float((ours - ref).norm() / denom) if denom > 0 else float((ours - ref).norm())


def load_fixture_pipeline(fixture: Path) -> DynamiCrafterPipeline:
    config = DynamiCrafterConfig.from_dict(json.loads((fixture / "config.json").read_text()))
    parts = split_checkpoint(load_file(fixture / "weights.safetensors"), config)
    unet, vae, resampler = DynamiCrafterUNet(config.unet), build_vae(config.vae), Resampler(config.resampler)
    for module, name in ((unet, "unet"), (vae, "vae"), (resampler, "resampler")):
        module.load_state_dict(parts[name], strict=True)
    return DynamiCrafterPipeline(config, unet, vae, resampler)


def run_fixture(fixture: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Compute every output the fixture has a reference for: name -> (ours, reference)."""
    fixture = Path(fixture)
    pipe = load_fixture_pipeline(fixture)
    cfg = pipe.config
    inputs = load_file(fixture / "inputs.safetensors")
    refs = load_file(fixture / "outputs.safetensors")
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
    return {name: (value, refs[name]) for name, value in ours.items() if name in refs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture", type=Path, help="fixture folder (config.json, weights/inputs/outputs.safetensors)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    missing = [f for f in ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors")
               if not (args.fixture / f).exists()]
    if missing:
        print(f"error: {args.fixture} lacks {', '.join(missing)}; point at a parity fixture folder.", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    results = run_fixture(args.fixture)
    refs = load_file(args.fixture / "outputs.safetensors")
    ok = True
    for name in refs:
        if name not in results:
            print(f"{name:16s} not computed (no implementation for this output)  FAIL")
            ok = False
            continue
        ours, ref = results[name]
        err = relative_error(ours, ref)
        passed = err < args.tolerance
        ok &= passed
        print(f"{name:16s} shape={tuple(ref.shape)!s:22s} rel_err={err:.3e}  {'ok' if passed else 'FAIL'}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

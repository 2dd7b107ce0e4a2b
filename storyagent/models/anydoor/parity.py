"""AnyDoor's outputs for a parity fixture made by the upstream code (`storyagent.models.parity`
compares them and is the command: `python -m storyagent.models.parity FIXTURE_DIR`), and
`write_fixture`, which lays out fixtures of other sizes the same way.

The fixture's `inputs.safetensors` holds reference, hint, x_T and probe_timestep; the models are
built from its config and the weights go through the converter's key mapping.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from storyagent.models.anydoor.config import AnyDoorConfig
from storyagent.models.anydoor.convert import load_official_components
from storyagent.models.anydoor.pipeline import AnyDoorPipeline


@torch.no_grad()
def compute_outputs(fixture: Path) -> dict[str, torch.Tensor]:
    """Everything the fixture records, recomputed by our modules."""
    config = AnyDoorConfig.from_json(fixture / "config.json")
    components = load_official_components(load_file(str(fixture / "weights.safetensors")), config)
    pipe = AnyDoorPipeline(**components, config=config)
    inputs = load_file(str(fixture / "inputs.safetensors"))
    reference, hint, x_t = inputs["reference"].float(), inputs["hint"].float(), inputs["x_T"].float()
    probe = inputs["probe_timestep"].long().reshape(-1)
    sampling = config.sampling

    context = pipe.encode_reference(reference)
    uncond = pipe.image_encoder(torch.zeros_like(reference))
    outputs = {"context": context, "uncond_context": uncond}
    residuals = pipe.control_residuals(x_t, probe, context, hint, sampling.control_scale)
    outputs |= {f"control_{i:02d}": r for i, r in enumerate(residuals)}
    outputs["unet_eps"] = pipe.predict_noise(x_t, probe, context, hint, sampling.control_scale)
    samples = pipe.denoise(x_t, hint, context, uncond, sampling.ddim_steps, sampling.cfg_scale,
                           eta=sampling.eta, control_scale=sampling.control_scale)
    outputs["ddim_samples"] = samples
    outputs["decoded_image"] = pipe.decode_latents(samples)
    outputs["alphas_cumprod"] = pipe.scheduler.alphas_cumprod
    return outputs


def write_fixture(folder: str | Path, config: AnyDoorConfig, seed: int = 0) -> Path:
    """Write a fixture folder laid out like the upstream-made ones, for another config and seed.

    Weights are drawn the way the upstream fixtures draw them (norm weights and layer-scale gammas
    near 1, everything else N(0, 0.08^2)) directly in the official key layout, so loading them goes
    through the converter like a real checkpoint. The outputs are computed by this implementation:
    such a fixture checks that nothing depends on the sizes of `anydoor_tiny` and that the
    official-layout round trip is exact, not upstream numerics (that is what `anydoor_tiny` does).
    """
    from storyagent.fileio import atomic_save_safetensors, atomic_write_json
    from storyagent.models.anydoor.components import build_components
    from storyagent.models.anydoor.convert import to_official_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    official = to_official_state_dict(build_components(config), config)
    for key, value in official.items():
        if key in ("betas", "alphas_cumprod"):
            continue
        # 1-D weights are GroupNorm/LayerNorm scales; convs and linears are at least 2-D.
        near_one = key.endswith(".gamma") or (key.endswith(".weight") and value.ndim == 1)
        noise = torch.randn(value.shape, generator=gen)
        official[key] = 1.0 + 0.05 * noise if near_one else 0.08 * noise
    atomic_save_safetensors(folder / "weights.safetensors", official)
    config.sampling.probe_timestep = int(torch.randint(1, config.diffusion.timesteps, (1,), generator=gen))
    atomic_write_json(folder / "config.json", config.to_dict())

    side = config.dinov2.input_size
    h, w = config.sampling.latent_hw
    image_side = h * 2 ** (len(config.vae.ch_mult) - 1)
    collage = torch.rand(1, 3, image_side, image_side, generator=gen) * 2 - 1
    region = (torch.rand(1, 1, image_side, image_side, generator=gen) > 0.5).float()
    inputs = {
        "reference": torch.rand(1, 3, side, side, generator=gen),
        "hint": torch.cat([collage, region], dim=1),
        "x_T": torch.randn(1, config.unet.in_channels, h, w, generator=gen),
        "probe_timestep": torch.tensor([config.sampling.probe_timestep]),
    }
    atomic_save_safetensors(folder / "inputs.safetensors", inputs)
    atomic_save_safetensors(folder / "outputs.safetensors",
                            {k: v.contiguous() for k, v in compute_outputs(folder).items()})
    return folder


if __name__ == "__main__":
    from storyagent.models.parity import main

    raise SystemExit(main([*sys.argv[1:], "--family", "anydoor"]))

"""Numerical parity with upstream AnyDoor on a fixture folder.

    python -m storyagent.models.anydoor.parity FIXTURE_DIR [--tolerance 1e-4]

The folder holds `config.json` (upstream settings), `weights.safetensors` (the upstream
`state_dict()`, official key names), `inputs.safetensors` (reference, hint, x_T, probe_timestep)
and `outputs.safetensors` (what upstream computed). The models are built from the config, the
weights go through the converter's key mapping, and every output is recomputed and compared by
relative error ||ours - ref|| / ||ref||. Exit status 0 only if all are below the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from storyagent.models.anydoor.config import AnyDoorConfig
from storyagent.models.anydoor.convert import load_official_components
from storyagent.models.anydoor.pipeline import AnyDoorPipeline


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
    if ours.shape != ref.shape:
        return float("inf")
    return float((ours - ref).norm() / ref.norm().clamp_min(1e-30))


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


def run(fixture: str | Path, tolerance: float = 1e-4) -> dict[str, float]:
    fixture = Path(fixture)
    expected = load_file(str(fixture / "outputs.safetensors"))
    ours = compute_outputs(fixture)
    errors = {}
    for name in sorted(expected):
        errors[name] = relative_error(ours[name], expected[name]) if name in ours else float("inf")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="AnyDoor parity against an upstream fixture folder.")
    parser.add_argument("fixture", help="folder with config.json, weights/inputs/outputs.safetensors")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted")
    args = parser.parse_args(argv)
    fixture = Path(args.fixture)
    missing = [n for n in ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors")
               if not (fixture / n).is_file()]
    if missing:
        print(f"{fixture} is not a parity fixture (missing {', '.join(missing)}).", file=sys.stderr)
        return 2
    errors = run(fixture, args.tolerance)
    width = max(map(len, errors))
    for name, err in errors.items():
        print(f"{name:<{width}}  rel_err={err:.3e}  {'ok' if err < args.tolerance else 'FAIL'}")
    worst = max(errors.values())
    print(f"{'all' if worst < args.tolerance else 'NOT all'} {len(errors)} outputs below {args.tolerance:g} "
          f"(worst {worst:.3e})")
    return 0 if worst < args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())

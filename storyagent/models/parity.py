"""Numerical parity against outputs of the upstream implementations, for every model family.

    python -m storyagent.models.parity FIXTURE_DIR [--tolerance 1e-4] [--family dynamicrafter|anydoor]

A fixture folder holds `config.json` (upstream config names), `weights.safetensors` (the upstream
state dict, official key names), `inputs.safetensors` and `outputs.safetensors` (what upstream
computed). The family is read off the weights (a ControlNet means AnyDoor, a Resampler
DynamiCrafter) unless given. The models are built from the config and loaded through the
family's converter, every output is recomputed by the family's `compute_outputs(fixture)`, and
one line per output gives the relative error ||ours - ref|| / ||ref||. The exit status is 0 only
when every error is below the tolerance (1 otherwise, 2 for a folder that is not a fixture).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURE_FILES = ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors")
# family -> (a weights prefix only that family's checkpoints have, the module with compute_outputs)
FAMILIES = {
    "anydoor": ("control_model.", "storyagent.models.anydoor.parity"),
    "dynamicrafter": ("image_proj_model.", "storyagent.models.dynamicrafter.parity"),
}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """||ours - ref|| / ||ref|| in float64; the absolute error where the reference is zero, inf on a shape mismatch."""
    ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
    if ours.shape != ref.shape:
        return float("inf")
    denom = ref.norm()
    return float((ours - ref).norm() / denom) if denom > 0 else float((ours - ref).norm())


def detect_family(fixture: Path) -> str:
    with safe_open(str(fixture / "weights.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    for family, (prefix, _) in FAMILIES.items():
        if any(k.startswith(prefix) for k in keys):
            return family
    raise ValueError(f"{fixture} holds weights of no known family ({', '.join(FAMILIES)}).")


def run(fixture: str | Path, family: str | None = None) -> dict[str, float]:
    """Relative error of every output the fixture records (inf for one this implementation lacks)."""
    fixture = Path(fixture)
    module = importlib.import_module(FAMILIES[family or detect_family(fixture)][1])
    torch.manual_seed(0)
    ours = module.compute_outputs(fixture)
    expected = load_file(str(fixture / "outputs.safetensors"))
    return {name: relative_error(ours[name], ref) if name in ours else float("inf")
            for name, ref in sorted(expected.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture", type=Path, help="fixture folder (config.json, weights/inputs/outputs.safetensors)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="model family (default: read off the weights)")
    args = parser.parse_args(argv)
    missing = [n for n in FIXTURE_FILES if not (args.fixture / n).is_file()]
    if missing:
        print(f"error: {args.fixture} is not a parity fixture (missing {', '.join(missing)}).", file=sys.stderr)
        return 2
    errors = run(args.fixture, args.family)
    shapes = {name: tuple(t.shape) for name, t in load_file(str(args.fixture / "outputs.safetensors")).items()}
    width = max(map(len, errors))
    for name, err in errors.items():
        verdict = "ok" if err < args.tolerance else "FAIL"
        print(f"{name:<{width}}  shape={shapes[name]!s:22s} rel_err={err:.3e}  {verdict}")
    worst = max(errors.values())
    print(f"{'all' if worst < args.tolerance else 'NOT all'} {len(errors)} outputs below {args.tolerance:g} "
          f"(worst {worst:.3e})")
    return 0 if worst < args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())

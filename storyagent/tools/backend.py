"""Which backend renders the film, and what the `diffusion` backend needs before it starts."""

from __future__ import annotations

from storyagent.config import RunConfig
from storyagent.errors import WeightsNotFoundError
from storyagent.weights import weights_available

# Everything the paper's pipeline loads, in the order the stages use them.
DIFFUSION_WEIGHTS = ("sdxl-base", "grounding-dino-base", "sam-vit-h", "anydoor", "dynamicrafter-512")


def check_backend(cfg: RunConfig) -> None:
    """Fail before any work when the chosen backend cannot run here (one sentence, with the fix)."""
    if cfg.backend != "diffusion":
        return
    missing = [name for name in DIFFUSION_WEIGHTS if not weights_available(name)]
    if missing:
        raise WeightsNotFoundError(
            f"--backend diffusion needs weights that are not on this machine ({', '.join(missing)}); "
            f"run `storyagent weights fetch {' '.join(missing)}` or leave out --backend for the offline animatic."
        )

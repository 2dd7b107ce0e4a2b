"""Tiny random-weight copies of every model the diffusion backend loads, saved where its loaders read them.

tests/conftest.py builds each once per session (`tiny_sdxl_folder`, `tiny_langsam_weights`,
`tiny_anydoor_folder`, `tiny_dynamicrafter_folder`, and `tiny_weights`, all of them by weight name);
tests that write into a folder build their own with these functions."""

from pathlib import Path


def save_tiny_sdxl(folder: Path) -> Path:
    """A tiny random SDXL in diffusers layout."""
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    tiny_sdxl(seed=0).save_pretrained(folder)
    return folder


def save_tiny_langsam(root: Path) -> tuple[Path, Path]:
    """A tiny Grounding DINO folder and SAM checkpoint under `root`: (dino folder, sam .pth)."""
    from storyagent.models.langsam.testing import save_tiny_grounding_dino, save_tiny_sam

    return save_tiny_grounding_dino(root / "gdino"), save_tiny_sam(root / "sam_vit_b.pth")


def save_tiny_anydoor(folder: Path, config=None) -> Path:
    """A tiny random AnyDoor (default `tiny_config()`) as `AnyDoorPipeline.from_pretrained` reads it."""
    from storyagent.models.anydoor.testing import tiny_pipeline

    return tiny_pipeline(config).save_pretrained(folder)


def save_tiny_dynamicrafter(folder: Path) -> Path:
    """A tiny random DynamiCrafter, encoders and tokenizer included."""
    from storyagent.models.dynamicrafter.testing import tiny_pipeline

    return tiny_pipeline().save_pretrained(folder)


def tiny_weights_by_name(sdxl: Path, langsam: tuple[Path, Path], anydoor: Path, dynamicrafter: Path) -> dict[str, Path]:
    """Weight name (as `storyagent.weights` knows it) -> path."""
    return {"sdxl-base": sdxl, "grounding-dino-base": langsam[0], "sam-vit-h": langsam[1], "anydoor": anydoor,
            "dynamicrafter-512": dynamicrafter}


def use_weights(monkeypatch, weights: dict[str, Path]) -> dict[str, Path]:
    """Point each weight's `STORYAGENT_WEIGHTS_*` variable at its path in `weights` for the test (`monkeypatch`);
    returns `weights`."""
    from storyagent.weights import env_var

    for name, path in weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    return weights


def save_tiny_diffusion_weights(root: Path) -> dict[str, Path]:
    """Save tiny SDXL, Grounding DINO, SAM, AnyDoor and DynamiCrafter under `root`; returns weight name -> path."""
    return tiny_weights_by_name(save_tiny_sdxl(root / "sdxl"), save_tiny_langsam(root), save_tiny_anydoor(root / "anydoor"),
                                save_tiny_dynamicrafter(root / "dc"))

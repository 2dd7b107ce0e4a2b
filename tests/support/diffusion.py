"""Tiny random-weight copies of every model the diffusion backend loads, saved where its loaders read them."""

from pathlib import Path


def save_tiny_diffusion_weights(root: Path) -> dict[str, Path]:
    """Save tiny SDXL, Grounding DINO, SAM, AnyDoor and DynamiCrafter under `root`; returns weight name -> path."""
    from storyagent.models.anydoor.testing import tiny_pipeline as anydoor_tiny
    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.langsam.testing import save_tiny_grounding_dino, save_tiny_sam
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    tiny_sdxl().save_pretrained(root / "sdxl")
    save_tiny_grounding_dino(root / "gdino")
    sam = save_tiny_sam(root / "sam_vit_b.pth")
    anydoor_tiny().save_pretrained(root / "anydoor")
    tiny_pipeline().save_pretrained(root / "dc")
    return {"sdxl-base": root / "sdxl", "grounding-dino-base": root / "gdino", "sam-vit-h": sam,
            "anydoor": root / "anydoor", "dynamicrafter-512": root / "dc"}

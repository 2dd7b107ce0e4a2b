"""Configuration of subject removal: how far the mask grows and how the hole is refilled."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RemovalConfig:
    """How far the subject's mask grows and how the hole is refilled."""

    dilate_fraction: float = 0.02
    """Mask growth as a share of the image's longer side; covers soft edges and shadows SAM leaves out."""
    min_dilate_px: int = 3
    """Never grow the mask by less than this many pixels."""
    opencv_radius: int = 5
    """Neighbourhood radius of OpenCV's inpainting, in pixels."""
    num_inference_steps: int = 30
    """Diffusion inpainting steps."""
    guidance_scale: float = 7.0
    """Diffusion inpainting guidance."""
    strength: float = 0.99
    """How much of the hole's content is replaced (1 ignores what was there)."""

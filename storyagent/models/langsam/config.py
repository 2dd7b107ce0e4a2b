"""LangSAM settings: how sure the detector must be before SAM is asked for a mask."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LangSAMConfig:
    box_threshold: float = 0.3
    """A box is kept when its best text-token probability exceeds this (Grounding DINO's usual 0.3)."""
    text_threshold: float = 0.25
    """A prompt token names a kept box when its probability exceeds this (Grounding DINO's usual 0.25)."""
    batch_size: int = 4
    """Images per detector forward pass."""
    multimask: bool = False
    """Ask SAM for three candidate masks per box and keep the one with the best predicted IoU."""

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")

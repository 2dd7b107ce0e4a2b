"""Settings of the SAM 2 mask propagation: how a mask logit becomes a pixel, and where the clip is kept.

Plain data, no torch: the animatic path reads it without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from storyagent.models.configuration import ConfigFileMixin

DTYPES = ("float32", "bfloat16", "float16")
"""Precisions the model and its inference session may run in."""


@dataclass
class Sam2VideoMasksConfig(ConfigFileMixin):
    """How `Sam2VideoMasks` runs the SAM 2 video predictor over a clip."""

    mask_threshold: float = 0.0
    """A pixel is on the subject when its upsampled mask logit exceeds this (0.0 is SAM 2's own cut)."""
    dtype: str = "float32"
    """Precision of the weights and of the tracking memory: "float32", "bfloat16" or "float16"."""
    offload_video_to_cpu: bool = False
    """Keep the clip's preprocessed frames (3x1024x1024 floats each) in CPU memory instead of on the
    device, for long clips on a small GPU; each frame is moved over when it is processed."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")

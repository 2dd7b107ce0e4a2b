"""Configuration of the animatic renderer: frame size, frame rate, subtitles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnimaticConfig:
    """How every animatic clip is rendered."""

    width: int = 512
    """Frame width in pixels (even)."""
    height: int = 320
    """Frame height in pixels (even)."""
    fps: float = 8.0
    """Frames per second of every clip."""
    subtitles: bool = True
    """Burn the narration in as a subtitle."""
    sprite_fps: float = 4.0
    """How fast the reference frames cycle (subject animation)."""
    acting: bool = True
    """The subject acts the shot's action (hops, falls, swims, sleeps ...; see `motion.VERB_MOTION`); off,
    every subject glides with the camera."""

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 64:
            raise ValueError(f"frame size must be even and at least 64 px, got {self.width}×{self.height}")

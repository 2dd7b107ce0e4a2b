"""Configuration of the offline template planner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PlannerConfig:
    """What the template planner cannot read from the prompt."""

    shot_duration: float = 2.5
    """Seconds every shot lasts."""

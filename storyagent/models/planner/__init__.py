"""The offline Story Designer: a deterministic template planner (no LLM)."""

from storyagent.models.planner.config import PlannerConfig
from storyagent.models.planner.pipeline import TemplatePlanner

__all__ = ["PlannerConfig", "TemplatePlanner"]

"""The offline Story Designer: a deterministic template planner (no LLM), and shot revision from a reviewer's words."""

from storyagent.models.planner.config import PlannerConfig
from storyagent.models.planner.pipeline import TemplatePlanner
from storyagent.models.planner.revise import Revision, parse_feedback, revise_shot, understood

__all__ = ["PlannerConfig", "Revision", "TemplatePlanner", "parse_feedback", "revise_shot", "understood"]

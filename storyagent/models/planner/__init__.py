"""The offline Story Designer: a deterministic template planner (no LLM), shot revision from a reviewer's
words, and the check that a story keeps its prompt's action and place."""

from storyagent.models.planner.config import PlannerConfig
from storyagent.models.planner.keeps import Requirements, check_keeps_prompt, prompt_requirements
from storyagent.models.planner.pipeline import TemplatePlanner
from storyagent.models.planner.revise import Revision, parse_feedback, revise_shot, understood

__all__ = ["PlannerConfig", "Requirements", "Revision", "TemplatePlanner", "check_keeps_prompt", "parse_feedback",
           "prompt_requirements", "revise_shot", "understood"]

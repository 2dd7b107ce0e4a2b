"""The offline Story Designer: a deterministic template planner (no LLM) for one character or a cast, shot
revision from a reviewer's words (which may name a character), and the check that a story keeps its prompt's
action and place."""

from storyagent.models.planner.config import PlannerConfig
from storyagent.models.planner.keeps import Requirements, check_keeps_prompt, prompt_requirements
from storyagent.models.planner.pipeline import TemplatePlanner
from storyagent.models.planner.feedback import CastFeedback, not_in_cast, parse_cast_feedback
from storyagent.models.planner.revise import Revision, parse_feedback, revise_shot, understood

__all__ = ["CastFeedback", "PlannerConfig", "Requirements", "Revision", "TemplatePlanner", "check_keeps_prompt",
           "not_in_cast", "parse_cast_feedback", "parse_feedback", "prompt_requirements", "revise_shot", "understood"]

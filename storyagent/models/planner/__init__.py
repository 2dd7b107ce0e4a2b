from storyagent.models.planner.template_planner import TemplatePlanner

__all__ = ["TemplatePlanner"]

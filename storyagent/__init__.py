"""StoryAgent: customized storytelling video from a prompt and a few clips of your own character."""

__version__ = "0.1.0"

"""StoryAgent Studio: the crew in a browser (`storyagent studio`, pip extra `studio`)."""

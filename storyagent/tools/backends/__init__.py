"""The backends: `animatic` (the CPU default) and `diffusion` (the paper's pipeline); looked up by
name in `storyagent.tools.run.BACKENDS`."""

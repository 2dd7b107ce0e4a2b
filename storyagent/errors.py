"""Errors a user can act on. The CLI prints their message as one line, never a traceback."""


class StoryAgentError(Exception):
    """Base class: the message says what is wrong and what to do about it."""


class InputError(StoryAgentError):
    """The user's input (prompt, subject media, options, output folder) cannot be used."""


class WeightsNotFoundError(StoryAgentError):
    """A model's weights are not on this machine; the message names the command that fetches them."""


class UnsafeCheckpointError(StoryAgentError):
    """A pickled checkpoint needs more than `torch.load(weights_only=True)` allows, so it is refused."""


class ConversionError(InputError):
    """An upstream checkpoint does not match the layout its converter expects (extra or missing keys)."""


class EmptyMaskError(InputError, ValueError):
    """A subject mask with (next to) no pixels set: there is no subject to box, remove or redraw."""

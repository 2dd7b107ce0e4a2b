"""What several layers read from the environment, and the one rule for what may be shown of a URL."""

from __future__ import annotations

import math
import os
import re

from storyagent.errors import InputError

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")


def without_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URL in it removed, for anything shown or recorded."""
    return _URL_CREDENTIALS.sub("", text)


def timeout_from_env(variable: str, default: float) -> float:
    """Seconds to wait, from the environment variable `variable` (`default` when unset); anything but a
    positive number is refused in one sentence."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{variable}={raw!r} is not a timeout; set it to a number of seconds above 0 "
                         f"(e.g. 300) or unset it for the default {default:g}.")
    return value

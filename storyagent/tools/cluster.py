"""Ray, for the commands that spread their work over a cluster (`--ray auto|ADDRESS`).

Ray is an optional extra: nothing imports it until a command is given `--ray`, and without it
that command says in one sentence what to install. `connect` joins a running cluster (`auto`: the
one this machine belongs to, as `ray start` left it; else an address such as `10.0.0.5:6379`).
"""

from __future__ import annotations

from typing import Any

from storyagent.errors import InputError

INSTALL_HINT = 'pip install -e ".[ray]"'


def import_ray() -> Any:
    """The `ray` module, or an `InputError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed; run `{INSTALL_HINT}` (or pip install ray).") from None
    return ray


def connect(address: str) -> Any:
    """Join the Ray cluster at `address` (`auto`: the one `ray start` made on this machine) and return
    the `ray` module; joined once per process. The driver logs to the terminal only what goes wrong."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"Could not join the Ray cluster at {address!r} ({first}); start one with "
                             "`ray start --head` or give its address, e.g. --ray 10.0.0.5:6379.") from None
    return ray

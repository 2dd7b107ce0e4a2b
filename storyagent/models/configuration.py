"""What every model family's `*Config` shares: reading itself from a dict or a `config.json`.

Config dataclasses keep the upstream names for their fields, so a config copied from an upstream
YAML or a parity fixture's `config.json` loads as it is; keys a dataclass does not know (upstream
configs carry many) are ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from storyagent.errors import InputError

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any] | None) -> C:
    """Dataclass `cls` from `data`; lists become tuples and unknown keys are ignored."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (data or {}).items() if k in names})


class ConfigFileMixin:
    """`from_json` / `to_dict` for a top-level config whose class defines `from_dict`."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        raise NotImplementedError

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]):
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"Cannot read the config {path}: {exc}.") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

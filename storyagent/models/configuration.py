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
from typing import Any, ClassVar, TypeVar

from storyagent.errors import InputError

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any] | None) -> C:
    """Dataclass `cls` from `data`; lists become tuples and unknown keys are ignored."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (data or {}).items() if k in names})


class ConfigFileMixin:
    """`from_dict` / `from_json` / `to_dict` for a top-level config dataclass.

    The default `from_dict` reads a flat config; a config made of sections overrides it and
    starts from `field_data(data)`.
    """

    json_names: ClassVar[dict[str, str]] = {}
    """Fields written under their upstream name in config.json: field -> JSON key."""

    @classmethod
    def field_data(cls, data: dict[str, Any]) -> dict[str, Any]:
        """`data` keyed by field names; an upstream JSON key wins over the field's own name."""
        return {**data, **{name: data[key] for name, key in cls.json_names.items() if key in data}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return config_from_dict(cls, cls.field_data(data))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]):
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"Cannot read the config {path}: {exc}.") from exc

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        for name, key in self.json_names.items():
            out[key] = out.pop(name)
        return out

"""What `storyagent weights fetch` recorded: one small JSON file in the StoryAgent cache.

Per weights name: its source (repository, commit, the URL of every file), its licence, and every
file it left on disk with its size and sha256 — the upstream files in the Hugging Face cache and,
for weights that are converted, the converted folder in the StoryAgent cache (a path relative to
the cache, so a moved cache keeps working). `weights verify` checks the files against it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyagent.hashing import sha256_file
from storyagent.weights.cache import cache_dir

REGISTRY = "weights.json"
"""The registry's file name inside the StoryAgent cache."""


def registry_path() -> Path:
    return cache_dir(REGISTRY)


def load_registry() -> dict[str, dict[str, Any]]:
    """Every recorded weights entry by name; an unreadable registry reads as empty (fetch rewrites it)."""
    try:
        data = json.loads(registry_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("weights") if isinstance(data, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def record_entry(name: str, entry: dict[str, Any]) -> None:
    """Store `entry` for `name` (read again just before writing, so other names' entries survive)."""
    from storyagent.fileio import atomic_write_json

    entries = load_registry()
    entries[name] = entry
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(registry_path(), {"version": 1, "weights": dict(sorted(entries.items()))})


def converted_folder(name: str, source_commit: str | None = None) -> Path | None:
    """The converted folder recorded for `name` if it is still on disk; with `source_commit`, only if
    it was converted from that commit."""
    entry = load_registry().get(name, {})
    converted = entry.get("converted")
    if not isinstance(converted, dict) or not isinstance(converted.get("folder"), str):
        return None
    if source_commit is not None and entry.get("revision") != source_commit:
        return None
    folder = cache_dir(converted["folder"])
    return folder if folder.is_dir() else None


def describe_folder(folder: Path, advance: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """Size and sha256 of every file under `folder`, by relative path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [{"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p, advance)}
            for p in files]


@dataclass(frozen=True)
class RecordedFile:
    """One file the registry vouches for."""

    name: str
    """The weights it belongs to."""
    path: Path
    size: int
    sha256: str


def recorded_files(entry: dict[str, Any], name: str) -> list[RecordedFile]:
    """The upstream files (where they are still expected) and the converted files of one entry."""
    out = [RecordedFile(name, Path(f["local"]), int(f["size"]), f["sha256"]) for f in entry.get("files", [])]
    converted = entry.get("converted") or {}
    if isinstance(converted.get("folder"), str):
        root = cache_dir(converted["folder"])
        out += [RecordedFile(name, root / f["path"], int(f["size"]), f["sha256"]) for f in converted.get("files", [])]
    return out


def file_problem(file: RecordedFile, advance: Callable[[int], Any] | None = None) -> str | None:
    """Why `file` no longer is what was recorded ("missing", "size ...", "corrupt ..."), or None."""
    if not file.path.is_file():
        return "missing"
    size = file.path.stat().st_size
    if size != file.size:
        return f"corrupt (size {size} bytes, recorded {file.size})"
    if sha256_file(file.path, advance) != file.sha256:
        return "corrupt (sha256 differs from the one recorded)"
    return None


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes the upstream download of one entry holds."""
    return sum(int(f.get("size", 0)) for f in entry.get("files", []))


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def names_in(entries: dict[str, dict[str, Any]], names: Iterable[str] | None) -> list[str]:
    return sorted(entries) if not names else [n for n in names if n in entries]

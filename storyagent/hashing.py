"""Hashes of files and data, one chunked sha256 loop for all of them.

`hash_file` and `hash_json` are the short (16 hex) content hashes the run manifest records;
`sha256_file` is the full digest `storyagent weights fetch` records and `weights verify` checks.
Imports nothing from StoryAgent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

CHUNK = 1 << 22
"""Bytes read at a time (4 MiB)."""


def sha256_of(path: str | os.PathLike[str], advance: Callable[[int], Any] | None = None) -> Any:
    """The sha256 object of a file's bytes, read in chunks (`advance(n)` after each): `.hexdigest()` it,
    or go on `.update()`-ing it with bytes that follow (a resumed download)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return h


def sha256_file(path: str | os.PathLike[str], advance: Callable[[int], Any] | None = None) -> str:
    """A file's full sha256 (64 hex), as the Hub and `weights verify` state it."""
    return sha256_of(path, advance).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """A file's content hash for the manifest: the first 16 hex of its sha256."""
    return sha256_file(path)[:16]


def hash_json(obj: Any) -> str:
    """A stable hash of JSON-able data (keys sorted), for input hashes."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

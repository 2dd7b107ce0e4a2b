"""The StoryAgent cache (`STORYAGENT_CACHE`, default ~/.cache/storyagent) and the keys of what is in it.
Imports nothing from StoryAgent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder in the StoryAgent cache (`STORYAGENT_CACHE`, default ~/.cache/storyagent): converted
    checkpoints and the subjects' fine-tunes, shared by every run on this machine."""
    root = Path(os.environ.get("STORYAGENT_CACHE", Path.home() / ".cache" / "storyagent")).expanduser()
    return root.joinpath(*parts)


def weights_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap identity of a weights file or folder, for cache keys of what was trained on it.

    Per file: its relative name, its size and the hash of its first and last MiB. Hashing whole
    multi-GB checkpoints on every run would cost more than the rest of the key is worth; a
    changed checkpoint of the same size with identical ends is not a case worth that price.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(root) if root.is_dir() else f.name}|{size}|".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]

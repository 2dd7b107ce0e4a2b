"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted write leaves either the old file or the new one, never half of one. A process
killed mid-write (SIGKILL, power loss) leaves its temp file behind; `remove_temp_files` clears
those, and it matches only the names `atomic_path` makes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# `.{stem}.{8 hex digits}.tmp{suffix}`: hidden, and the suffix kept so writers that infer the format
# from it work. The names are made here rather than by `tempfile` so that TEMP_NAME matches exactly
# them; its alphabet also takes `tempfile.mkstemp`'s 8 characters, which earlier versions used.
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?")


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0644 under the usual umask 022).

    The temp file is made 0600 so nobody reads half a file; the finished one is a user's film and
    must be as readable as anything else they save."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def _temp_path(path: Path) -> Path:
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_path(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files `atomic_path` left in `folder` and its subfolders; returns them.

    Only for a folder no live process writes to (a run folder under its lock). Symlinked folders
    are not followed, so nothing outside `folder` is touched.
    """
    removed = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            p = Path(dirpath, name)
            if TEMP_NAME.fullmatch(name) and not p.is_symlink() and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_save_safetensors(path: str | os.PathLike[str], tensors: dict, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def slugify(text: str, limit: int = 40) -> str:
    """A folder name a person recognises: 'a-day-at-the-seaside'. Keeps non-Latin letters."""
    text = unicodedata.normalize("NFKC", text).lower()
    slug = re.sub(r"[^\w]+", "-", text).strip("-_")
    return slug[:limit].rstrip("-_") or "story"

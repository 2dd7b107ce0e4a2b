"""The run folder: every artifact on disk, and a manifest that makes the run resumable.

`manifest.json` records the inputs, settings, seeds, versions, each stage's status and every
artifact with the hash of what it was made from. An artifact is reused on `--resume` only when
its file still exists, its content hash matches, and the hash of its inputs is unchanged; so
editing one shot in `story.json` redoes that shot alone. Every write is atomic.

One run at a time owns a folder: `Workspace.open` takes the folder's lock (`run_lock.py`) and
keeps it until the Workspace is closed. The manifest is checked against its schema on load
(`manifest.py`), so a damaged or tampered one is refused in one sentence.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, Self

from storyagent.errors import InputError
from storyagent.fileio import remove_temp_files
from storyagent.hashing import hash_file
from storyagent.manifest import MANIFEST, Manifest, holds_nothing, inside, read_run
from storyagent.run_lock import lock, unlock
from storyagent.schemas import Artifact


def check_out(root: Path) -> None:
    """Refuse, in one sentence, a run folder that is a file or a non-empty folder holding no run."""
    if root.exists() and not root.is_dir():
        raise InputError(f"Output path {root} is a file; give a folder for --out.")
    if root.is_dir() and not (root / MANIFEST).exists() and not holds_nothing(root):
        raise InputError(f"{root} is not empty and holds no StoryAgent run; choose a new or empty folder for --out.")


class Workspace:
    """A run folder and its manifest; the folder is locked while the Workspace is open (a worker's
    view, `attach`, takes no lock and cannot change the manifest)."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest
        self._release: weakref.finalize | None = None

    # ---- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike[str], inputs: dict[str, Any], resume: bool) -> Workspace:
        """Create a new run folder, or reopen an existing run when `resume` is set; either way, lock it.

        Refuses, with one sentence, a path that is a file, a folder that cannot be written, a
        folder another run holds, an existing run without `--resume`, a damaged manifest, and a
        non-empty folder that holds something else. Temp files of a run that died are removed.
        """
        root = Path(root).expanduser()
        check_out(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create output folder {root}: {exc.strerror or exc}.") from exc
        if not os.access(root, os.W_OK):
            raise InputError(f"Output folder {root} is not writable; choose another --out.")
        held = lock(root)
        try:
            manifest = read_run(root)
            if manifest is not None and not resume:
                raise InputError(f"{root} already holds a run; add --resume to continue it, or choose another --out.")
            # The lock says no live run writes here, so any temp file is a dead run's.
            remove_temp_files(root)
            if manifest is None:
                manifest = Manifest.new(root, inputs)
                manifest.save()
            else:
                manifest.reopen(inputs)
            ws = cls(root, manifest)
        except BaseException:
            unlock(held)
            raise
        ws._release = weakref.finalize(ws, unlock, held)
        return ws

    @classmethod
    def attach(cls, root: str | os.PathLike[str], journal: bool = False) -> Workspace:
        """A worker's view of the run folder `root`, which its driver holds open: files are read and
        written there, the manifest is read as it is on disk now and never written (`Manifest.view`:
        read-only, or with `journal` its changes kept for the driver to replay)."""
        root = Path(root).expanduser()
        return cls(root, Manifest.view(root, journal=journal))

    def close(self) -> None:
        """Let go of the run folder's lock (also done when the Workspace is collected, and at exit)."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state ------------------------------------------------------------------------------

    def path(self, rel: str) -> Path:
        """A path inside the run folder; anything that would lead outside it is refused."""
        full = inside(self.root, rel)
        if full is None:
            raise InputError(f"{rel!r} lies outside the run folder {self.root}; tools only read and write inside it.")
        return full

    def fresh(self, key: str, input_hash: str) -> bool:
        """Whether the artifact `key` exists, is intact, and was made from these inputs."""
        entry = self.manifest.artifact(key)
        if not entry or entry.get("input_hash") != input_hash:
            return False
        paths = Artifact.model_construct(**entry).files
        hashes = entry.get("meta", {}).get("file_hashes", {})
        for rel in paths:
            p = self.root / rel
            try:  # a regular file only: a folder or a FIFO in its place is not the artifact
                if not p.is_file() or hashes.get(rel) != hash_file(p):
                    return False
            except OSError:
                return False
        return True

    def record(self, key: str, artifact: Artifact) -> Artifact:
        """Store an artifact (whose files are already written) with its files' content hashes."""
        artifact.meta["file_hashes"] = self.file_hashes(artifact)
        self.manifest.record(key, artifact.model_dump(mode="json"))
        return artifact

    def file_hashes(self, artifact: Artifact) -> dict[str, str]:
        """The content hash of each of an artifact's files (`Artifact.files`), by path."""
        return {rel: hash_file(self.root / rel) for rel in artifact.files}

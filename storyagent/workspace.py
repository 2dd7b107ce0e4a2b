"""The run folder: every artifact on disk, and a manifest that makes the run resumable.

`manifest.json` records the inputs, settings, seeds, versions, each stage's status and every
artifact with the hash of what it was made from. An artifact is reused on `--resume` only when
its file still exists, its content hash matches, and the hash of its inputs is unchanged; so
editing one shot in `story.json` redoes that shot alone. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
import unicodedata
from importlib import metadata
from pathlib import Path
from typing import Any

from storyagent import __version__
from storyagent.errors import InputError
from storyagent.fileio import atomic_write_json
from storyagent.schemas import Artifact

MANIFEST = "manifest.json"
STAGES = ("subject", "story", "storyboard", "video", "film")


def hash_json(obj: Any) -> str:
    """A stable hash of JSON-able data (keys sorted), for input hashes."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def hash_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def slugify(text: str, limit: int = 40) -> str:
    """A folder name a person recognises: 'a-day-at-the-seaside'. Keeps non-Latin letters."""
    text = unicodedata.normalize("NFKC", text).lower()
    slug = re.sub(r"[^\w]+", "-", text).strip("-_")
    return slug[:limit].rstrip("-_") or "story"


def versions() -> dict[str, str]:
    out = {"storyagent": __version__, "python": platform.python_version()}
    for pkg in ("torch", "diffusers", "transformers", "autogen", "av", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


class Workspace:
    """A run folder and its manifest."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest

    # ---- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike[str], inputs: dict[str, Any], resume: bool) -> Workspace:
        """Create a new run folder, or reopen an existing run when `resume` is set.

        Refuses, with one sentence, a path that is a file, a folder that cannot be written, an
        existing run without `--resume`, and a non-empty folder that holds something else.
        """
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise InputError(f"Output path {root} is a file; give a folder for --out.")
        manifest_path = root / MANIFEST
        if root.is_dir() and manifest_path.exists():
            if not resume:
                raise InputError(f"{root} already holds a run; add --resume to continue it, or choose another --out.")
            manifest = cls._read_manifest(manifest_path)
            manifest["inputs"] = inputs
            manifest["versions"] = versions()
            ws = cls(root, manifest)
        else:
            if root.is_dir() and any(p.name != ".DS_Store" for p in root.iterdir()):
                raise InputError(f"{root} is not empty and holds no StoryAgent run; choose a new or empty folder for --out.")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"Cannot create output folder {root}: {exc.strerror or exc}.") from exc
            ws = cls(root, {
                "storyagent_manifest": 1,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "inputs": inputs,
                "versions": versions(),
                "stages": {s: "pending" for s in STAGES},
                "artifacts": {},
                "speakers": [],
            })
        if not os.access(root, os.W_OK):
            raise InputError(f"Output folder {root} is not writable; choose another --out.")
        ws.save()
        return ws

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is damaged ({exc}); move it away to start that run afresh.") from exc
        if not isinstance(data, dict) or "artifacts" not in data:
            raise InputError(f"{path} is not a StoryAgent manifest; choose another --out.")
        data.setdefault("stages", {s: "pending" for s in STAGES})
        data.setdefault("speakers", [])
        return data

    # ---- state ------------------------------------------------------------------------------

    def save(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            atomic_write_json(self.root / MANIFEST, self.manifest)
        except OSError as exc:
            raise InputError(f"Cannot write to {self.root}: {exc.strerror or exc}; check the folder's permissions and free space.") from exc

    def path(self, rel: str) -> Path:
        """A path inside the run folder; anything that would lead outside it is refused."""
        full = (self.root / rel).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise InputError(f"{rel!r} lies outside the run folder {self.root}; tools only read and write inside it.")
        return full

    def set_stage(self, stage: str, status: str, note: str | None = None) -> None:
        self.manifest["stages"][stage] = status if note is None else f"{status}: {note}"
        self.save()

    def fresh(self, key: str, input_hash: str) -> bool:
        """Whether the artifact `key` exists, is intact, and was made from these inputs."""
        entry = self.manifest["artifacts"].get(key)
        if not entry or entry.get("input_hash") != input_hash:
            return False
        paths = [entry["path"]] + ([entry["mask_path"]] if entry.get("mask_path") else [])
        hashes = entry.get("meta", {}).get("file_hashes", {})
        for rel in paths:
            p = self.root / rel
            if not p.exists() or hashes.get(rel) != hash_file(p):
                return False
        return True

    def record(self, key: str, artifact: Artifact) -> Artifact:
        """Store an artifact (whose files are already written) with its files' content hashes."""
        rels = [artifact.path] + ([artifact.mask_path] if artifact.mask_path else [])
        artifact.meta["file_hashes"] = {rel: hash_file(self.root / rel) for rel in rels}
        self.manifest["artifacts"][key] = artifact.model_dump(mode="json")
        self.save()
        return artifact

    def artifact(self, key: str) -> dict[str, Any] | None:
        return self.manifest["artifacts"].get(key)

    def log_speaker(self, name: str, summary: str = "") -> None:
        self.manifest["speakers"].append({"speaker": name, "summary": summary[:200]})
        self.save()

"""The run folder: every artifact on disk, and a manifest that makes the run resumable.

`manifest.json` records the inputs, settings, seeds, versions, each stage's status and every
artifact with the hash of what it was made from. An artifact is reused on `--resume` only when
its file still exists, its content hash matches, and the hash of its inputs is unchanged; so
editing one shot in `story.json` redoes that shot alone. Every write is atomic.

One run at a time owns a folder: `Workspace.open` takes an advisory lock (`flock` on
`.storyagent.lock`, which holds the owner's PID) and keeps it until the run's Workspace is closed
or collected, or the process ends; the OS frees it when the process dies, however it dies. The
manifest is checked against a schema on load, so a damaged or tampered one is refused in one
sentence and never trusted for sizes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import time
import unicodedata
import weakref
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Self

from annotated_types import Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storyagent import __version__
from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.fileio import TEMP_NAME, atomic_write_json, remove_temp_files
from storyagent.schemas import Artifact, Film, ShotClip, StoryboardFrame

MANIFEST = "manifest.json"
LOCK = ".storyagent.lock"
STAGES = ("subject", "story", "storyboard", "video", "film")
MAX_MANIFEST_BYTES = 16 << 20
"""A 32-shot run's manifest is ~100 KB; anything near this was not written by a run."""
MAX_TAKES = 1000
"""Reviewer redos of one shot; each take moves the shot's seed by 1000."""
MAX_REFERENCE_FRAMES = next(m.le for m in RunConfig.model_fields["max_reference_frames"].metadata if isinstance(m, Le))


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


def inside(root: Path, rel: str) -> Path | None:
    """`rel` resolved inside the folder `root`; None when it leads outside (or cannot be resolved)."""
    try:
        full = (root / rel).resolve()
        return full if full.is_relative_to(root.resolve()) else None
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return None


# ---- the run folder's lock ------------------------------------------------------------------


@dataclass
class _Held:
    fd: int
    path: Path
    pid: int = field(default_factory=os.getpid)
    users: int = 0

    def current(self) -> bool:
        """Whether this is still the folder's lock file (a folder removed and made again is not the same)."""
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(self.path))
        except OSError:
            return False


_HELD: dict[tuple[int, int], _Held] = {}
"""This process's locks, by run folder (device, inode): any spelling of a folder is one lock."""


def _lock(root: Path) -> _Held:
    """Take `root`'s lock for this process; give it to `_unlock` when done.

    A process that opens a folder it already holds shares the lock: a process runs one run at a
    time, so the earlier Workspace is finished, only not yet collected (tests and benchmarks reopen
    a folder in one process).
    """
    st = root.stat()
    key = (st.st_dev, st.st_ino)
    held = _HELD.get(key)
    if held is None or not held.current():
        held = _HELD[key] = _acquire(root)
    held.users += 1
    return held


def _acquire(root: Path) -> _Held:
    path = root / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"Cannot create the lock file in {root}: {exc.strerror or exc}; check the folder's permissions.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"{root} is in use by another StoryAgent run (PID {holder}); "
                             "wait for it to end, or choose another --out.") from None
        except OSError as exc:
            os.close(fd)
            raise InputError(f"Cannot lock {root} ({exc.strerror or exc}); choose an --out on a local disk.") from exc
        held = _Held(fd, path)
        # An owner that ended removed the file before unlocking it: a lock on a removed file guards nothing.
        if held.current():
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return held


def _holder(fd: int) -> str:
    """The PID the lock's owner wrote; it writes it just after locking, so wait a moment for it."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"


def _unlock(held: _Held) -> None:
    # A forked child inherits the table but not the lock's ownership: only the locking process lets go.
    if held.pid != os.getpid() or held.users == 0:
        return
    held.users -= 1
    if held.users:
        return
    for key, entry in list(_HELD.items()):
        if entry is held:
            del _HELD[key]
    # Removed while still locked, so no other process can lock the old file after this one lets go.
    if held.current():
        with contextlib.suppress(OSError):
            held.path.unlink()
    os.close(held.fd)


# ---- the manifest's schema -------------------------------------------------------------------


class _Strict(BaseModel):
    # Values are used as loaded (the manifest stays a dict), so a "5" where 5 belongs is refused, not converted.
    model_config = ConfigDict(extra="allow", strict=True)


Take = Annotated[int, Field(ge=0, le=MAX_TAKES)]


class _Redo(_Strict):
    take: Take
    feedback: str = ""


class _IdentityPass(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True)  # becomes IdentityPass(**pass)
    prompts: list[str]
    seeds: list[Annotated[int, Field(ge=0)]]


class _Identity(_Strict):
    shared: str
    identity: _IdentityPass = Field(alias="pass")


class _Manifest(_Strict):
    """Every value of a manifest that code reads back, typed and bounded; other keys are kept unread."""

    artifacts: dict[str, dict[str, Any]]
    stages: dict[str, str] = {}
    speakers: list[dict[str, str]] = []
    inputs: dict[str, Any] = {}
    subject_frames: int = Field(default=0, ge=0, le=MAX_REFERENCE_FRAMES)
    takes: dict[str, dict[str, Take]] = {}
    redos: dict[str, dict[str, list[_Redo]]] = {}
    storyboard_identity: _Identity | None = None  # tools/diffusion.py's IDENTITY


class _Meta(_Strict):
    """What the tools read from an artifact's `meta`."""

    file_hashes: dict[str, str] = {}
    mask_method: str | None = None
    source: str | None = None


_KINDS: dict[str, type[Artifact]] = {m.model_fields["kind"].default: m for m in (StoryboardFrame, ShotClip, Film)}
"""The schema an artifact's `kind` names (others are plain Artifacts): the tools validate entries with it."""


class _Damaged(Exception):
    """What is wrong with a manifest, as the end of a sentence."""


def _problem(exc: ValidationError, *prefix: object) -> _Damaged:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (*prefix, *err["loc"]))
    return _Damaged(f"{where}: {err['msg'][:200]}" if where else err["msg"][:200])


def _check_artifact(root: Path, key: str, entry: dict[str, Any]) -> None:
    kind = entry.get("kind")
    try:
        (_KINDS.get(kind, Artifact) if isinstance(kind, str) else Artifact).model_validate(entry, strict=True)
    except ValidationError as exc:
        raise _problem(exc, "artifacts", key) from exc
    try:
        meta = _Meta.model_validate(entry.get("meta", {}))
    except ValidationError as exc:
        raise _problem(exc, "artifacts", key, "meta") from exc
    for name in ("path", "mask_path"):
        rel = entry.get(name)
        if rel is not None and inside(root, rel) is None:
            raise _Damaged(f"artifacts.{key}.{name} {rel[:200]!r} lies outside the run folder")
    # prepare_subject rebuilds each reference frame from these.
    if kind == "subject_frame" and None in (entry.get("mask_path"), meta.mask_method, meta.source):
        raise _Damaged(f"artifacts.{key} lacks its mask, mask method or source")


def _load_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, checked against the schema; refused in one sentence when it is not sound."""
    try:
        if not path.is_file():
            raise _Damaged("it is not a regular file")
        if (size := path.stat().st_size) > MAX_MANIFEST_BYTES:
            raise _Damaged(f"it is {size >> 20} MB, far more than a run writes")
        try:
            data = json.loads(path.read_bytes())
        except RecursionError:
            raise _Damaged("its JSON is nested too deeply") from None
        except ValueError as exc:  # bad JSON, bad UTF-8, an integer too long to read
            raise _Damaged(f"it is not valid JSON ({str(exc)[:200]})") from None
        if not isinstance(data, dict) or "artifacts" not in data:
            raise InputError(f"{path} is not a StoryAgent manifest; choose another --out.")
        try:
            _Manifest.model_validate(data)
        except ValidationError as exc:
            raise _problem(exc) from exc
        for key, entry in data["artifacts"].items():
            _check_artifact(path.parent, key, entry)
    except _Damaged as exc:
        raise InputError(f"{path} is damaged: {exc}; move it away to start that run afresh.") from None
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}; check its permissions.") from exc
    data.setdefault("stages", {s: "pending" for s in STAGES})
    data.setdefault("speakers", [])
    return data


def read_run(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checked manifest of the run in `root`; None when a new run may start there.

    A first run that failed before finishing anything (subject media that cannot be read, say)
    leaves a manifest with no artifact and no finished stage. That counts as no run, so the
    corrected command can use the folder: the folder cannot wait until every input is valid,
    since some inputs fail only when the run reads them.
    """
    path = Path(root).expanduser() / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    manifest = _load_manifest(path)
    finished = any(status.startswith("done") for status in manifest["stages"].values())
    return manifest if manifest["artifacts"] or finished else None


def _holds_nothing(root: Path) -> bool:
    """Whether `root` holds nothing a person made (a Finder file, a dead run's lock or temp files)."""
    return all(p.name in (".DS_Store", LOCK) or TEMP_NAME.fullmatch(p.name) for p in root.iterdir())


class Workspace:
    """A run folder and its manifest; the folder is locked while the Workspace is open."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
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
        if root.exists() and not root.is_dir():
            raise InputError(f"Output path {root} is a file; give a folder for --out.")
        if root.is_dir() and not (root / MANIFEST).exists() and not _holds_nothing(root):
            raise InputError(f"{root} is not empty and holds no StoryAgent run; choose a new or empty folder for --out.")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create output folder {root}: {exc.strerror or exc}.") from exc
        if not os.access(root, os.W_OK):
            raise InputError(f"Output folder {root} is not writable; choose another --out.")
        held = _lock(root)
        try:
            manifest = read_run(root)
            if manifest is None:
                manifest = {
                    "storyagent_manifest": 1,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "inputs": inputs,
                    "versions": versions(),
                    "stages": {s: "pending" for s in STAGES},
                    "artifacts": {},
                    "speakers": [],
                }
            elif not resume:
                raise InputError(f"{root} already holds a run; add --resume to continue it, or choose another --out.")
            else:
                manifest["inputs"] = inputs
                manifest["versions"] = versions()
            # The lock says no live run writes here, so any temp file is a dead run's.
            remove_temp_files(root)
            ws = cls(root, manifest)
            ws.save()
        except BaseException:
            _unlock(held)
            raise
        ws._release = weakref.finalize(ws, _unlock, held)
        return ws

    def close(self) -> None:
        """Let go of the run folder's lock (also done when the Workspace is collected, and at exit)."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state ------------------------------------------------------------------------------

    def save(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            atomic_write_json(self.root / MANIFEST, self.manifest)
        except OSError as exc:
            raise InputError(f"Cannot write to {self.root}: {exc.strerror or exc}; check the folder's permissions and free space.") from exc

    def path(self, rel: str) -> Path:
        """A path inside the run folder; anything that would lead outside it is refused."""
        full = inside(self.root, rel)
        if full is None:
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
            try:  # a regular file only: a folder or a FIFO in its place is not the artifact
                if not p.is_file() or hashes.get(rel) != hash_file(p):
                    return False
            except OSError:
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

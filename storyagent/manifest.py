"""`manifest.json`: the one module that reads and writes it.

`Manifest` is the typed API every stage goes through (stages, artifacts, takes, redos, approvals,
fine-tunes, speakers); no other module indexes the manifest's dict. Writes are serialised by a
lock, so the studio's threads (and a batch driver recording its workers' results) never interleave
two saves. A worker gets a read-only view (`Manifest.view`): it reads the takes and redos it works
from, and any change it tries is refused, so the driver stays the manifest's one writer. A worker
that makes a whole stage (a film's diffusion storyboard) gets a journaling view instead: its
changes are kept in memory and in `journal`, and the driver replays them (`replay`). On load the
file is checked against a schema: every value the tools read back is typed and bounded, so a
damaged or tampered manifest is refused in one sentence and never trusted for sizes.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storyagent import __version__
from storyagent.cast import LEAD_FOLDER
from storyagent.config import RunConfig
from storyagent.errors import InputError, StoryAgentError
from storyagent.fileio import TEMP_NAME, atomic_write_json
from storyagent.run_lock import LOCK
from storyagent.schemas import Artifact, Film, ShotClip, StoryboardFrame

MANIFEST = "manifest.json"
STAGES = ("subject", "story", "storyboard", "video", "sound", "film")
MAX_MANIFEST_BYTES = 16 << 20
"""A 32-shot run's manifest is ~100 KB; anything near this was not written by a run."""
MAX_TAKES = 1000
"""Reviewer redos of one shot; each take moves the shot's seed by 1000."""
MAX_REFERENCE_FRAMES = next(m.le for m in RunConfig.model_fields["max_reference_frames"].metadata if isinstance(m, Le))


def inside(root: Path, rel: str) -> Path | None:
    """`rel` resolved inside the folder `root`; None when it leads outside (or cannot be resolved)."""
    try:
        full = (root / rel).resolve()
        return full if full.is_relative_to(root.resolve()) else None
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return None


class _Strict(BaseModel):
    # Values are used as loaded (the manifest stays a dict), so a "5" where 5 belongs is refused, not converted.
    model_config = ConfigDict(extra="allow", strict=True)


Take = Annotated[int, Field(ge=0, le=MAX_TAKES)]


class _Redo(_Strict):
    take: Take
    feedback: str = ""
    rewrote_story: bool = False


class _IdentityPass(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True)  # becomes IdentityPass(**pass)
    prompts: list[str]
    seeds: list[Annotated[int, Field(ge=0)]]


class _Approval(_Strict):
    by: str
    work: str


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
    cast_frames: dict[str, Annotated[int, Field(ge=0, le=MAX_REFERENCE_FRAMES)]] = {}  # the reference frames of each character after the lead, by folder
    takes: dict[str, dict[str, Take]] = {}
    redos: dict[str, dict[str, list[_Redo]]] = {}
    storyboard_identity: _Identity | None = None  # Manifest.storyboard_identity (the diffusion storyboard)
    approved: dict[str, _Approval] = {}  # agents/manager.py: a stage a reviewer approved, and what it covered


class _Meta(_Strict):
    """What the tools read from an artifact's `meta`."""

    file_hashes: dict[str, str] = {}
    mask_method: str | None = None
    source: str | None = None
    character_masks: dict[str, str] = {}


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
    for name, rel in meta.character_masks.items():
        if inside(root, rel) is None:
            raise _Damaged(f"artifacts.{key}.meta.character_masks.{name[:80]} {rel[:200]!r} lies outside the run folder")
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


def read_run(root: str | os.PathLike[str]) -> Manifest | None:
    """The checked manifest of the run in `root`; None when a new run may start there.

    A first run that failed before finishing anything (subject media that cannot be read, say)
    leaves a manifest with no artifact and no finished stage. That counts as no run, so the
    corrected command can use the folder: the folder cannot wait until every input is valid,
    since some inputs fail only when the run reads them.
    """
    path = Path(root).expanduser() / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    data = _load_manifest(path)
    finished = any(status.startswith("done") for status in data["stages"].values())
    return Manifest(path.parent, data) if data["artifacts"] or finished else None


def holds_nothing(root: Path) -> bool:
    """Whether `root` holds nothing a person made (a Finder file, a dead run's lock or temp files)."""
    return all(p.name in (".DS_Store", LOCK) or TEMP_NAME.fullmatch(p.name) for p in root.iterdir())


def versions() -> dict[str, str]:
    out = {"storyagent": __version__, "python": platform.python_version()}
    for pkg in ("torch", "diffusers", "transformers", "autogen", "av", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


class ReadOnlyManifestError(StoryAgentError):
    """A change asked of a read-only view of a manifest (a worker's): only the run's driver records."""


JOURNALED: set[str] = set()
"""The methods that change a manifest, which a journaling view keeps and `Manifest.replay` repeats."""


def _journaled(method):
    JOURNALED.add(method.__name__)

    @functools.wraps(method)
    def change(self: Manifest, *args: Any, **kwargs: Any) -> Any:
        if self.journal is not None:
            self.journal.append((method.__name__, args, kwargs))
        return method(self, *args, **kwargs)

    return change


class Manifest:
    """A run's `manifest.json`, read and written through typed methods only.

    Every method that changes it saves it at once (atomically, under a lock), so an interrupted
    run loses nothing that was recorded. A read-only view (`view`) refuses every change before
    making it, in memory or on disk.
    """

    def __init__(self, root: Path, data: dict[str, Any], read_only: bool = False) -> None:
        self.root = root
        self._data = data
        self._lock = threading.RLock()
        self.read_only = read_only
        self.journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]] | None = None
        """A journaling view's changes, in order: (method, args, kwargs)."""

    @classmethod
    def view(cls, root: str | os.PathLike[str], journal: bool = False) -> Manifest:
        """The manifest of the run in `root` as it is on disk now, for a worker: read-only, or with `journal`
        changed in memory only, each change kept in `journal` for the driver to `replay`."""
        path = Path(root).expanduser() / MANIFEST
        if not path.exists():
            raise InputError(f"{path.parent} holds no StoryAgent run; a worker needs the folder its driver made "
                             "(run folders must be on storage every node sees).")
        manifest = cls(path.parent, _load_manifest(path), read_only=not journal)
        manifest.journal = [] if journal else None
        return manifest

    def replay(self, journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        """Make the changes a worker's journaling view kept, in order, here (the driver)."""
        for name, args, kwargs in journal:
            if name not in JOURNALED:
                raise InputError(f"A worker handed back {name!r}, which is no change of a manifest.")
            getattr(self, name)(*args, **kwargs)

    @classmethod
    def new(cls, root: Path, inputs: dict[str, Any]) -> Manifest:
        return cls(root, {"storyagent_manifest": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "inputs": inputs, "versions": versions(), "stages": {s: "pending" for s in STAGES},
                          "artifacts": {}, "speakers": []})

    def save(self) -> None:
        self._refuse_if_read_only()
        if self.journal is not None:  # a journaling view: its driver saves what it replays
            return
        with self._lock:
            self._data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            try:
                atomic_write_json(self.root / MANIFEST, self._data)
            except OSError as exc:
                raise InputError(f"Cannot write to {self.root}: {exc.strerror or exc}; "
                                 "check the folder's permissions and free space.") from exc

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise ReadOnlyManifestError(f"{self.root / MANIFEST} is open read-only here (a worker's view); only the "
                                        "run's driver records in it.")

    def _change(self, change) -> None:
        self._refuse_if_read_only()
        with self._lock:
            change(self._data)
            self.save()

    # ---- the run's inputs -------------------------------------------------------------------

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self._data.get("inputs", {}))

    @_journaled
    def reopen(self, inputs: dict[str, Any]) -> None:
        """A resumed run: its current inputs and versions."""
        self._change(lambda d: d.update(inputs=inputs, versions=versions()))

    # ---- stages and artifacts ---------------------------------------------------------------

    @property
    def stages(self) -> dict[str, str]:
        return dict(self._data["stages"])

    @_journaled
    def set_stage(self, stage: str, status: str, note: str | None = None) -> None:
        self._change(lambda d: d["stages"].__setitem__(stage, status if note is None else f"{status}: {note}"))

    def artifact(self, key: str) -> dict[str, Any] | None:
        return self._data["artifacts"].get(key)

    def artifact_keys(self, prefix: str = "") -> list[str]:
        """The keys of the recorded artifacts that start with `prefix` (`subject/`, `shots/`), sorted."""
        return sorted(k for k in self._data["artifacts"] if k.startswith(prefix))

    @_journaled
    def record(self, key: str, entry: dict[str, Any]) -> None:
        self._change(lambda d: d["artifacts"].__setitem__(key, entry))

    # ---- review: takes, redos, approvals ------------------------------------------------------

    def take(self, stage: str, shot: int) -> int:
        """How many times a reviewer asked for this shot's `stage` again (the seed rule uses it)."""
        return int(self._data.get("takes", {}).get(stage, {}).get(str(shot), 0))

    @_journaled
    def add_redo(self, stage: str, shots: list[int], feedback: str, rewritten: set[int]) -> None:
        """A new take of each of `shots` at `stage`, the reviewer's words kept with it, and whether the
        words rewrote that shot's text (`rewrote_story`)."""
        def change(d: dict[str, Any]) -> None:
            takes = d.setdefault("takes", {}).setdefault(stage, {})
            redos = d.setdefault("redos", {}).setdefault(stage, {})
            for i in shots:
                takes[str(i)] = takes.get(str(i), 0) + 1
                redos.setdefault(str(i), []).append({"take": takes[str(i)], "feedback": feedback,
                                                     "rewrote_story": i in rewritten})
        self._change(change)

    def redos(self, stage: str, shot: int) -> list[dict[str, Any]]:
        return list(self._data.get("redos", {}).get(stage, {}).get(str(shot), []))

    def approval(self, stage: str) -> dict[str, str] | None:
        return self._data.get("approved", {}).get(stage)

    @_journaled
    def approve(self, stage: str, approval: dict[str, str]) -> None:
        self._change(lambda d: d.setdefault("approved", {}).__setitem__(stage, approval))

    # ---- who spoke --------------------------------------------------------------------------

    @property
    def speakers(self) -> list[str]:
        return [s["speaker"] for s in self._data["speakers"]]

    @_journaled
    def start_session(self) -> None:
        """A new conversation: the speakers of this session only."""
        self._change(lambda d: d.__setitem__("speakers", []))

    @_journaled
    def log_speaker(self, name: str, summary: str = "") -> None:
        self._change(lambda d: d["speakers"].append({"speaker": name, "summary": summary[:200]}))

    # ---- what the backend made once per subject or story -------------------------------------

    def reference_frames(self, folder: str = LEAD_FOLDER) -> int:
        """How many reference frames the character in `folder` (`subject`, `cast/crong`) has."""
        if folder == LEAD_FOLDER:
            return int(self._data.get("subject_frames", 0))
        return int(self._data.get("cast_frames", {}).get(folder, 0))

    @_journaled
    def set_reference_frames(self, count: int, folder: str = LEAD_FOLDER) -> None:
        def change(d: dict[str, Any]) -> None:
            if folder == LEAD_FOLDER:
                d["subject_frames"] = count
            else:
                d.setdefault("cast_frames", {})[folder] = count
        self._change(change)

    @_journaled
    def set_finetunes(self, finetunes: dict[str, Any]) -> None:
        self._change(lambda d: d.__setitem__("finetunes", finetunes))

    @property
    def storyboard_identity(self) -> dict[str, Any]:
        return dict(self._data.get("storyboard_identity") or {})

    @_journaled
    def set_storyboard_identity(self, identity: dict[str, Any]) -> None:
        self._change(lambda d: d.__setitem__("storyboard_identity", identity))

"""`manifest.json`, checked against a schema on load: every value the tools read back is typed and
bounded, so a damaged or tampered manifest is refused in one sentence and never trusted for sizes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.fileio import TEMP_NAME
from storyagent.run_lock import LOCK
from storyagent.schemas import Artifact, Film, ShotClip, StoryboardFrame

MANIFEST = "manifest.json"
STAGES = ("subject", "story", "storyboard", "video", "film")
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
    takes: dict[str, dict[str, Take]] = {}
    redos: dict[str, dict[str, list[_Redo]]] = {}
    storyboard_identity: _Identity | None = None  # tools/diffusion.py's IDENTITY
    approved: dict[str, _Approval] = {}  # agents/manager.py: a stage a reviewer approved, and what it covered


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


def holds_nothing(root: Path) -> bool:
    """Whether `root` holds nothing a person made (a Finder file, a dead run's lock or temp files)."""
    return all(p.name in (".DS_Store", LOCK) or TEMP_NAME.fullmatch(p.name) for p in root.iterdir())

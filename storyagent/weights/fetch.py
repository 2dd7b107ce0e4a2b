"""`storyagent weights fetch`: the only code that uses the network, and only when the user asks.

Each file is found through huggingface_hub (its URL, commit and ETag from `get_hf_file_metadata`,
a snapshot's file list from `HfApi.model_info`; `HF_ENDPOINT` and the token are honoured) and
downloaded into the Hugging Face cache in its own layout (`blobs/<etag>`, `snapshots/<commit>/<file>`,
`refs/<revision>`), so `resolve_weights` finds it offline afterwards. The download keeps its
partial file (`blobs/<etag>.incomplete`) when it is interrupted and continues it with an HTTP
Range request next time: huggingface_hub itself drops a partial file when its call fails, and a
multi-GB checkpoint should not start again after a dropped connection or a Ctrl-C. Weights that
need converting are converted once into the StoryAgent cache; everything is recorded (size,
sha256, licence, source) in the registry (`storyagent.weights.registry`).

The conversion itself belongs to the model families: the caller passes it in (`convert`, which
`storyagent weights fetch` takes from `storyagent.models.conversion`), so this package never imports
`storyagent.models` and the models may look their weights up here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from storyagent.errors import StoryAgentError
from storyagent.hashing import sha256_file, sha256_of
from storyagent.progress import console
from storyagent.weights.cache import cache_dir, weights_fingerprint
from storyagent.weights.lookup import resolve_weights
from storyagent.weights.registry import describe_folder, file_problem, load_registry, record_entry, recorded_files
from storyagent.weights.specs import WEIGHTS, WeightSpec

Convert = Callable[..., Any]
"""`convert(converter, files, out_dir, *, name, needs, config)`: the upstream `files` of weights `name` into
`out_dir` by the module `converter` names (`storyagent.models.conversion.convert_downloaded`)."""


class DownloadError(StoryAgentError):
    """A download stopped or arrived damaged; the message says how to continue."""


def endpoint() -> str:
    """The Hub to download from: `HF_ENDPOINT` as it is now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def fetch_order(names: list[str]) -> list[str]:
    """`names` with the weights their conversions need placed before them, each once."""
    order: list[str] = []

    def add(name: str) -> None:
        for need in WEIGHTS[name].needs:
            add(need)
        if name not in order:
            order.append(name)

    for name in names:
        add(name)
    return order


def fetch_weights(name: str, config: Path | None = None, show_progress: bool = True,
                  convert: Convert | None = None) -> Path:
    """Download `name` as its repository's main branch holds it now (resuming a partial download), convert
    it once with `convert` when its loader needs that, record it in the registry, and return what
    `resolve_weights(name)` now finds (the offline lookup reads `main` too)."""
    revision = "main"
    spec = WEIGHTS[name]
    if spec.converter is not None and convert is None:
        raise ValueError(f"{name} needs converting: pass convert= (storyagent.models.conversion.convert_downloaded).")
    previous = load_registry().get(name, {}).get("converted")
    with byte_progress(show_progress) as progress:
        commit, files = remote_files(spec, revision)
        fetched = [download_file(spec.repo_id, f, commit, progress) for f in files]
    _point_ref(spec.repo_id, revision, commit)
    entry: dict[str, Any] = {
        "repo_id": spec.repo_id, "revision": commit, "requested_revision": revision, "licence": spec.licence,
        "licence_url": spec.licence_url, "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": [f.record() for f in fetched],
    }
    # Recorded before converting, so a failed conversion still leaves the downloads described.
    record_entry(name, entry)
    if spec.converter is not None:
        with byte_progress(show_progress) as progress:
            entry["converted"] = convert_once(spec, fetched, config, previous, progress, convert)
        record_entry(name, entry)
    return resolve_weights(name)


def remote_files(spec: WeightSpec, revision: str) -> tuple[str, list[str]]:
    """(the commit `revision` names now, the repository files to fetch)."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint()).model_info(spec.repo_id, revision=revision)
    names = [s.rfilename for s in info.siblings or []]
    if spec.files:
        missing = [f for f in spec.files if f not in names]
        if missing:
            raise DownloadError(f"{spec.repo_id} at {revision} has no {missing[0]}; the repository changed, "
                                "so StoryAgent's list of its files needs updating.")
        return info.sha, list(spec.files)
    if spec.allow_patterns:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in spec.allow_patterns)]
    # The same weights as a pickle beside their safetensors copy: the loaders read the safetensors.
    with_safetensors = {posixpath.dirname(n) for n in names if n.endswith("model.safetensors")}
    return info.sha, [n for n in names if not (n.endswith("pytorch_model.bin")
                                               and posixpath.dirname(n) in with_safetensors)]


@dataclass
class Fetched:
    """One file in the Hugging Face cache, as fetched."""

    path: str
    """Its name inside the repository."""
    local: Path
    url: str
    size: int
    sha256: str

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "local": os.fspath(self.local), "url": self.url, "size": self.size,
                "sha256": self.sha256}


def _storage(repo_id: str) -> Path:
    """The repository's folder in the Hugging Face cache."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def _point_ref(repo_id: str, revision: str, commit: str) -> None:
    """`refs/<revision>` -> `commit`, once every file is there (the offline lookup reads the ref)."""
    if revision != commit:
        from storyagent.fileio import atomic_write_text

        atomic_write_text(_storage(repo_id) / "refs" / revision, commit)


def download_file(repo_id: str, filename: str, commit: str, progress: Progress) -> Fetched:
    """One repository file into the Hugging Face cache at `commit`. A copy already there is checked against
    the Hub's ETag (sha256 for LFS files, git's sha1 otherwise) and fetched anew only when damaged."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    url = hf_hub_url(repo_id, filename, revision=commit, endpoint=endpoint())
    meta = get_hf_file_metadata(url, endpoint=endpoint())
    if meta.etag is None or meta.size is None:
        raise DownloadError(f"{url} answered without an ETag or a size; is HF_ENDPOINT a Hugging Face Hub?")
    storage = _storage(repo_id)
    pointer, blob = storage / "snapshots" / commit / filename, storage / "blobs" / meta.etag
    # The lock huggingface_hub itself takes for this blob, so the two never write it at once.
    locks = Path(constants.HF_HUB_CACHE) / ".locks" / repo_folder_name(repo_id=repo_id, repo_type="model")
    with WeakFileLock(locks / f"{meta.etag}.lock"):
        local = pointer.resolve() if pointer.is_file() else blob if blob.is_file() else None
        if local is not None:
            digest = _hash_with_progress(local, filename, progress)
            if local.stat().st_size == meta.size and _etag_matches(meta.etag, digest, local):
                _link(pointer, local)
                return Fetched(filename, pointer, url, meta.size, digest)
            console.print(f"{filename} in the cache is damaged; fetching it anew")
            local.unlink()
            pointer.unlink(missing_ok=True)
        digest = _download(meta.location, blob, meta.size, meta.etag, filename, progress)
        _link(pointer, blob)
    return Fetched(filename, pointer, url, meta.size, digest)


def _link(pointer: Path, blob: Path) -> None:
    """`snapshots/<commit>/<file>` -> its blob, as huggingface_hub lays the cache out."""
    if pointer.resolve() == blob.resolve() and pointer.is_file():
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # no symlinks here (Windows without developer mode): the snapshot holds the file itself
        shutil.copyfile(blob, pointer)


def _etag_matches(etag: str, sha256: str, path: Path) -> bool:
    """Whether a file is the one the Hub's ETag names: an LFS file's ETag is its sha256, a git file's the
    sha1 of its git blob; any other ETag form cannot be checked (its size was)."""
    if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        return sha256 == etag
    if len(etag) == 40 and all(c in "0123456789abcdef" for c in etag):
        data = path.read_bytes()  # only small files live in git itself
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == etag
    return True


def _download(url: str, blob: Path, size: int, etag: str, label: str, progress: Progress) -> str:
    """Stream `url` into `blob`, continuing `blob.incomplete` with a Range request; return its sha256."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    blob.parent.mkdir(parents=True, exist_ok=True)
    part = blob.with_name(blob.name + ".incomplete")
    have = part.stat().st_size if part.exists() else 0
    if have > size:  # not this file's beginning: start again
        part.unlink()
        have = 0
    task = progress.add_task(label, total=size, completed=0)
    h = sha256_of(part, lambda n: progress.advance(task, n)) if have else hashlib.sha256()
    headers = build_hf_headers() | {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
            hf_raise_for_status(response)
            if have and response.status_code != 206:  # the server ignored the Range: take it from the start
                part.unlink()
                h, have = hashlib.sha256(), 0
                progress.update(task, completed=0)
            with open(part, "ab") as fh:
                for chunk in response.iter_bytes():  # as it arrives: a dropped connection loses nothing received
                    fh.write(chunk)
                    h.update(chunk)
                    progress.advance(task, len(chunk))
    except Exception as exc:  # the Hub's HTTP errors are OSErrors; a dropped connection is the client's own
        if not isinstance(exc, (OSError, *_transport_errors())):
            raise
        done = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"The download of {label} stopped after {done} of {size} bytes ({_first_line(exc)}); "
                            "run the same command again to continue it.") from exc
    got = part.stat().st_size
    if got != size:
        raise DownloadError(f"The download of {label} stopped after {got} of {size} bytes; run the same "
                            "command again to continue it.")
    digest = h.hexdigest()
    # A damaged download is caught here, not when it is loaded.
    if not _etag_matches(etag, digest, part):
        part.unlink()
        raise DownloadError(f"The download of {label} arrived damaged (its sha256 is not the one the Hub "
                            "states); run the same command again to fetch it anew.")
    os.replace(part, blob)
    return digest


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's "connection dropped" errors (huggingface_hub's client is httpx2, before 2.x httpx)."""
    found = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hash_with_progress(path: Path, label: str, progress: Progress) -> str:
    task = progress.add_task(f"{label} (checking)", total=path.stat().st_size)
    return sha256_file(path, lambda n: progress.advance(task, n))


def byte_progress(show: bool = True) -> Progress:
    """Progress bars counted in bytes (downloads, checksums)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, disable=not show)


def convert_once(spec: WeightSpec, fetched: list[Fetched], config: Path | None,
                 recorded: dict[str, Any] | None, progress: Progress, convert: Convert) -> dict[str, Any]:
    """The converted folder of `fetched` in the StoryAgent cache (converted now unless it already is),
    as the registry records it: its folder relative to the cache, its key's inputs, and its files."""
    needs = {n: resolve_weights(n) for n in spec.needs}
    key_inputs = {"files": [f.sha256 for f in fetched], "converter": spec.converter,
                  "config": sha256_file(config) if config else None,
                  "needs": {n: weights_fingerprint(p) for n, p in needs.items()}}
    key = hashlib.sha256(repr(sorted(key_inputs.items())).encode()).hexdigest()[:16]
    folder = f"converted/{spec.name}-{key}"
    out = cache_dir(folder)
    if recorded and recorded.get("folder") == folder and out.is_dir() and _intact(spec.name, recorded, progress):
        return recorded
    console.print(f"converting {spec.name} into {out} (once) ...")
    convert(spec.converter, [f.local for f in fetched], out, name=spec.name, needs=needs, config=config)
    if recorded and isinstance(recorded.get("folder"), str) and recorded["folder"] != folder:
        # The conversion it replaces (another revision or config) would only take disk space.
        shutil.rmtree(cache_dir(recorded["folder"]), ignore_errors=True)
    task = progress.add_task(f"{spec.name} (recording the conversion)",
                             total=sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    return {"folder": folder, "config": os.fspath(config) if config else None,
            "files": describe_folder(out, lambda n: progress.advance(task, n))}


def _intact(name: str, converted: dict[str, Any], progress: Progress) -> bool:
    """Whether every file of a recorded conversion is still what was recorded."""
    files = recorded_files({"converted": converted}, name)
    task = progress.add_task(f"{name} (checking the conversion)", total=sum(f.size for f in files))
    return bool(files) and all(file_problem(f, lambda n: progress.advance(task, n)) is None for f in files)

"""Finding weights offline: a local path, `STORYAGENT_WEIGHTS_*`, the folder `storyagent weights fetch`
converted them into, or the Hugging Face cache (`HF_HOME`) with `local_files_only=True`; never the network.

A missing weight raises `WeightsNotFoundError` naming the `storyagent weights` command that downloads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from storyagent.errors import WeightsNotFoundError
from storyagent.weights.cache import cache_dir
from storyagent.weights.registry import converted_folder
from storyagent.weights.specs import WEIGHTS, WeightSpec, env_var, fetch_hint


def resolve_weights(name: str, local_path: str | os.PathLike[str] | None = None) -> Path:
    """Return a local folder or file holding the weights `name`, without touching the network.

    Looked for in order: `local_path`, the environment variable `env_var(name)`, then what
    `storyagent weights fetch` left: for weights it converts, the converted folder in the StoryAgent
    cache (unless the Hugging Face cache now holds another revision than the one converted, which
    then wins), else the Hugging Face cache (`HF_HOME`) with `local_files_only=True`.
    """
    if local_path is None and os.environ.get(env_var(name)):
        local_path = os.environ[env_var(name)]
    if local_path is not None:
        path = Path(local_path).expanduser()
        if not path.exists():
            raise WeightsNotFoundError(f"Weights path {path} does not exist; {fetch_hint(name)}.")
        return path
    spec = WEIGHTS.get(name)
    if spec is None:
        raise WeightsNotFoundError(f"Unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS))}.")
    raw = hf_cached(spec)
    if spec.converter is not None:
        folder = converted_folder(name, snapshot_commit(raw) if raw is not None else None)
        if folder is not None:
            return folder
    if raw is None:
        raise WeightsNotFoundError(f"Weights {name!r} ({spec.purpose}) are not in the local cache; {fetch_hint(name)}.")
    return raw


def hf_cached(spec: WeightSpec) -> Path | None:
    """The upstream files of `spec` in the Hugging Face cache (a file, or their folder), or None."""
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        if spec.files:
            paths = [hf_hub_download(spec.repo_id, f, local_files_only=True) for f in spec.files]
            return Path(paths[0]).parent if len(paths) > 1 else Path(paths[0])
        return Path(snapshot_download(spec.repo_id, local_files_only=True))
    except Exception:  # huggingface_hub raises several types for "not cached"
        return None


def snapshot_commit(path: Path) -> str | None:
    """The commit a path inside the Hugging Face cache belongs to (`.../snapshots/<commit>/...`)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def weights_state(name: str) -> str:
    """Where `name` stands here: "local path" (its environment variable), "converted", "downloaded",
    "not converted" (downloaded, but its loader needs the conversion `weights fetch` does) or "missing"."""
    if os.environ.get(env_var(name)):
        return "local path" if Path(os.environ[env_var(name)]).expanduser().exists() else "missing"
    try:
        path = resolve_weights(name)
    except WeightsNotFoundError:
        return "missing"
    spec = WEIGHTS[name]
    if spec.converter is None:
        return "downloaded"
    if path.is_relative_to(cache_dir("converted")):
        return "converted"
    return "downloaded" if spec.loads_upstream else "not converted"


def weights_available(name: str) -> bool:
    """Whether the loader of `name` finds weights it can use, offline."""
    return weights_state(name) in ("local path", "converted", "downloaded")


def resolve_weights_file(name: str, local_path: str | os.PathLike[str] | None = None, what: str = "checkpoint") -> Path:
    """`resolve_weights` narrowed to one checkpoint file: a folder gives its first `.safetensors`, else its first `.pth`."""
    path = resolve_weights(name, local_path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth"))
        if not candidates:
            raise WeightsNotFoundError(f"No {what} (.safetensors or .pth) in {path}.")
        path = candidates[0]
    return path

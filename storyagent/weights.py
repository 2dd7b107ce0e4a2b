"""Where model weights come from: a local path or the Hugging Face cache, never the network.

Every model family names its weights here once. `resolve_weights` finds them offline
(`local_files_only=True`, or the folder `storyagent weights fetch` converted them into) or raises
`WeightsNotFoundError` naming the `storyagent weights` command that downloads them;
`storyagent.weights_fetch` is the only code that touches the network, and only when the user runs
that command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyagent.errors import UnsafeCheckpointError, WeightsNotFoundError


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable set of weights."""

    name: str
    """Short name used on the command line: `storyagent weights fetch NAME`."""
    repo_id: str
    """Hugging Face repository that holds the files."""
    files: tuple[str, ...] = field(default_factory=tuple)
    """Files to fetch from the repository; empty means the whole snapshot (narrowed by `allow_patterns`)."""
    purpose: str = ""
    """What the weights are for, shown by `storyagent weights list` and `storyagent doctor`."""
    licence: str = "see model card"
    """The terms the weights come under, as the model card states them (shown by `weights list`)."""
    allow_patterns: tuple[str, ...] = ()
    """For a snapshot: the files worth fetching (fnmatch patterns); empty fetches every file."""
    converter: str | None = None
    """Module whose `convert_downloaded` turns the upstream files into the folder our loader reads,
    once, at fetch time; None when the loaders read the files as they are."""
    needs: tuple[str, ...] = ()
    """Other weights the conversion reads (fetched first by `storyagent weights fetch`)."""
    loads_upstream: bool = False
    """Whether the loader also reads the upstream files as they are (the conversion then only saves
    work at load time)."""

    @property
    def licence_url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


_DC = "storyagent.models.dynamicrafter.convert"
_DC_LICENCE = "Apache-2.0 code; weights: see model card"
# The OpenCLIP towers sit inside DynamiCrafter's model.ckpt; only the tokenizer comes from here.
_CLIP_TOKENIZER = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
# Diffusers' own layout; the repository also holds single-file and fp16 copies (tens of GB more).
_DIFFUSERS = ("model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors")
# Transformers' layout; `weights fetch` skips pytorch_model.bin where model.safetensors is beside it.
_TRANSFORMERS = ("*.json", "*.txt", "model.safetensors", "pytorch_model.bin")

WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec("dynamicrafter-512", "Doubiiu/DynamiCrafter_512", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 320x512 (Video Creator)", _DC_LICENCE, converter=_DC,
                   needs=("open-clip-vit-h-14",), loads_upstream=True),
        WeightSpec("dynamicrafter-256", "Doubiiu/DynamiCrafter", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 256x256", _DC_LICENCE, converter=_DC, needs=("open-clip-vit-h-14",),
                   loads_upstream=True),
        WeightSpec("dynamicrafter-1024", "Doubiiu/DynamiCrafter_1024", ("model.ckpt",),
                   "DynamiCrafter image-to-video, 576x1024", _DC_LICENCE, converter=_DC,
                   needs=("open-clip-vit-h-14",), loads_upstream=True),
        WeightSpec("open-clip-vit-h-14", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", (),
                   "OpenCLIP ViT-H/14 tokenizer (DynamiCrafter prompts)", "MIT", allow_patterns=_CLIP_TOKENIZER),
        WeightSpec("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", (),
                   "SDXL base for the StoryDiffusion storyboard", "CreativeML Open RAIL++-M",
                   allow_patterns=_DIFFUSERS),
        WeightSpec("grounding-dino-base", "IDEA-Research/grounding-dino-base", (),
                   "Grounding DINO text-prompted detector (LangSAM)", "Apache-2.0", allow_patterns=_TRANSFORMERS),
        WeightSpec("sam-vit-h", "ybelkada/segment-anything", ("checkpoints/sam_vit_h_4b8939.pth",),
                   "Segment Anything ViT-H (LangSAM masks)", "Apache-2.0"),
        WeightSpec("anydoor", "xichenhku/AnyDoor", ("epoch=1-step=8687.ckpt",),
                   "AnyDoor subject redraw (storyboard)", "MIT code; weights: see model card",
                   converter="storyagent.models.anydoor.convert"),
        WeightSpec("dinov2-vitg14", "facebook/dinov2-giant", (),
                   "DINOv2 ViT-g/14 identity encoder (AnyDoor)", "Apache-2.0", allow_patterns=_TRANSFORMERS),
        WeightSpec("clip-vit-l-14", "openai/clip-vit-large-patch14", (),
                   "CLIP ViT-L/14 (aesthetic predictor, CLIP metrics)", "MIT code; weights: see model card",
                   allow_patterns=_TRANSFORMERS),
        WeightSpec("clip-vit-b-32", "openai/clip-vit-base-patch32", (),
                   "CLIP ViT-B/32 (CLIP-score and CLIP-temp as EvalCrafter computes them)",
                   "MIT code; weights: see model card", allow_patterns=_TRANSFORMERS),
        WeightSpec("laion-aesthetic-v2", "camenduru/improved-aesthetic-predictor",
                   ("sac+logos+ava1-l14-linearMSE.pth",),
                   "LAION improved aesthetic predictor head (Observer)", "Apache-2.0",
                   converter="storyagent.models.aesthetic.convert", loads_upstream=True),
    ]
}


def fetch_hint(name: str) -> str:
    return f"run `storyagent weights fetch {name}` (needs a network) or set {env_var(name)} to a local copy"


def env_var(name: str) -> str:
    """The environment variable that points `name` at a local path: STORYAGENT_WEIGHTS_SDXL_BASE, ..."""
    return "STORYAGENT_WEIGHTS_" + "".join(c if c.isalnum() else "_" for c in name).upper()


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
        from storyagent.weights_registry import converted_folder

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
    import hashlib

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


def weights_available(name: str) -> bool:
    """Whether the loader of `name` finds weights it can use, offline."""
    return weights_state(name) in ("local path", "converted", "downloaded")


def download_weights(name: str) -> Path:
    """Fetch (and convert) `name` into the caches; the network is used only here, when the user asks."""
    from storyagent.weights_fetch import fetch_weights

    return fetch_weights(name)


def load_pickled_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a pickled checkpoint safely (`weights_only=True`, memory-mapped where possible).

    A checkpoint that needs arbitrary objects to unpickle is refused: it could run code.
    """
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise UnsafeCheckpointError(_unsafe_message(path, exc)) from exc
        # Legacy (non-zip) pickles cannot be memory-mapped; still load them weights-only.
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as inner:
            raise UnsafeCheckpointError(_unsafe_message(path, inner)) from inner
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(_unsafe_message(path, exc)) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UnsafeCheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__}).")
    return obj


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's tensors: a `.safetensors` file, or a pickle loaded weights-only."""
    if os.fspath(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(os.fspath(path))
    return load_pickled_state_dict(path)


def resolve_weights_file(name: str, local_path: str | os.PathLike[str] | None = None, what: str = "checkpoint") -> Path:
    """`resolve_weights` narrowed to one checkpoint file: a folder gives its first `.safetensors`, else its first `.pth`."""
    path = resolve_weights(name, local_path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth"))
        if not candidates:
            raise WeightsNotFoundError(f"No {what} (.safetensors or .pth) in {path}.")
        path = candidates[0]
    return path


def _unsafe_message(path: Any, exc: Exception) -> str:
    text = str(exc).strip()
    # torch's refusal runs to a page of advice; its first sentence says what failed
    first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
    return (f"Refusing checkpoint {path}: it needs more than plain tensors to load ({first}); "
            "convert it to safetensors in a trusted environment.")

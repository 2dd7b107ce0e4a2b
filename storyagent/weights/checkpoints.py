"""Reading checkpoints safely: safetensors, or pickles loaded weights-only (a pickle that needs more
than plain tensors is refused, since it could run code)."""

from __future__ import annotations

import os
from typing import Any

from storyagent.errors import UnsafeCheckpointError


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


def _unsafe_message(path: Any, exc: Exception) -> str:
    text = str(exc).strip()
    # torch's refusal runs to a page of advice; its first sentence says what failed
    first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
    return (f"Refusing checkpoint {path}: it needs more than plain tensors to load ({first}); "
            "convert it to safetensors in a trusted environment.")

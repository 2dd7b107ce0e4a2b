"""Read the published aesthetic head (`.pth`, weights-only) or its safetensors copy, and convert one to the other."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from storyagent.weights import load_state_dict


def load_head_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The head's tensors from a `.safetensors` file or a pickled `.pth` (loaded with weights_only=True)."""
    state = load_state_dict(path)
    # Checkpoints saved from a wrapping module sometimes carry a `model.` or `module.` prefix.
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_head_to_safetensors(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a safetensors copy of the published `.pth` head, so later loads need no unpickling."""
    from storyagent.fileio import atomic_save_safetensors
    from storyagent.models.aesthetic.head import AestheticHead

    head = AestheticHead.from_pretrained(src)
    atomic_save_safetensors(dst, head.state_dict(), metadata={"source": Path(src).name})
    return Path(dst)


def convert_downloaded(files: list[Path], out_dir: Path, *, name: str, needs: Mapping[str, Path],
                       config: Path | None = None) -> Path:
    """`storyagent weights fetch`'s entry point: the published head as `out_dir/model.safetensors`."""
    convert_head_to_safetensors(files[0], Path(out_dir) / "model.safetensors")
    return Path(out_dir)

"""Convert the published aesthetic head (`.pth`, read weights-only by `head.load_head_state_dict`) to safetensors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from storyagent.models.aesthetic.head import AestheticHead


def convert_head_to_safetensors(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a safetensors copy of the published `.pth` head, so later loads need no unpickling."""
    from storyagent.fileio import atomic_save_safetensors

    head = AestheticHead.from_pretrained(src)
    atomic_save_safetensors(dst, head.state_dict(), metadata={"source": Path(src).name})
    return Path(dst)


def convert_downloaded(files: list[Path], out_dir: Path, *, name: str, needs: Mapping[str, Path],
                       config: Path | None = None) -> Path:
    """`storyagent weights fetch`'s entry point: the published head as `out_dir/model.safetensors`."""
    convert_head_to_safetensors(files[0], Path(out_dir) / "model.safetensors")
    return Path(out_dir)

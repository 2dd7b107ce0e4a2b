"""Files a converter must refuse, and how a refusal must read: shared by the AnyDoor and DynamiCrafter
converter tests (tests/models/test_*_convert.py)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import torch
from safetensors.torch import save_file


class NotATensor:
    """A custom class: unpickling it would import and run project code."""

    def __init__(self) -> None:
        self.payload = "anything a pickle could carry"


def write_bad_checkpoint(kind: str, folder: Path) -> Path:
    """A file a converter must refuse: missing, random bytes, truncated or unrelated safetensors, or a
    pickle that needs code to load."""
    path = folder / f"{kind}.ckpt"
    if kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind in ("truncated", "unrelated"):
        path = folder / f"{kind}.safetensors"
        save_file({"model.diffusion_model.out.2.bias": torch.ones(64), "other.weight": torch.ones(32, 32)}
                  if kind == "truncated" else {"text.embedding": torch.ones(8, 4), "head.bias": torch.zeros(4)}, path)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:-100])
    elif kind == "pickle":
        torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "callback": NotATensor()}, path)
    return path


BAD_FILES = {"missing": "does not exist", "random": "is neither a PyTorch checkpoint nor a safetensors file",
             "truncated": "is a damaged safetensors file", "pickle": "Refusing checkpoint",
             "unrelated": r"is not an? \w+ checkpoint: it holds none of the model's \d+ UNet weights "
                          r"\(model\.diffusion_model\."}
"""Each kind of bad file -> a regex of the one line that refuses it."""


def assert_refused_in_one_line(captured, needle: str, out: Path) -> None:
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(needle, lines[0]), captured.err
    assert "Traceback" not in captured.err
    assert not out.exists(), "no output folder is left behind"

"""Which torch device the models run on: the one place that decides it.

torch is imported when asked, not when this module is, so a tool can name its default device
without loading torch at import time.
"""

from __future__ import annotations


def default_device() -> str:
    """Where the models run: CUDA when there is a GPU, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

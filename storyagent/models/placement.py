"""Where a model sits while it works.

Every big model (SDXL, LangSAM, AnyDoor, DynamiCrafter) is loaded on the CPU and visits the GPU
only for its own stage (`on_device`), so two of them never share the GPU. With `low_vram` the
model does not even move whole: its pipeline's own CPU offload brings one part at a time to the
GPU for that part's forward, and its VAE decodes a frame or an image at a time.

A CUDA out-of-memory error is recognised by `is_out_of_memory` and cleaned up by `free_memory`,
so a per-shot loop can try the shot once more with lower-memory settings.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from storyagent.models.device import default_device

M = TypeVar("M")
T = TypeVar("T")

CPU = "cpu"


compute_device = default_device
"""Where the models run (`device.default_device`, the one device choice), by the name the backends call and
tests replace."""


def place(model: Any, device: str | torch.device) -> None:
    """Move `model` (a module or a pipeline with `.to`) to `device`; the one place models move, so a
    test can watch every move."""
    model.to(device)


def free_memory() -> None:
    """Give the memory of dropped tensors back: Python's garbage, then CUDA's cached blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, whichever way torch raised it."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # Some kernels (cuDNN, cuBLAS) raise a plain RuntimeError for the same condition.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def peak_memory_reset() -> None:
    """Start a new peak of GPU memory (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float | None:
    """The GPU memory peak since `peak_memory_reset`, in GiB (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def enable_offload(model: Any, device: str | torch.device) -> bool:
    """Turn on `model`'s own CPU offload (its parts visit `device` one at a time); False when it has none."""
    enable = getattr(model, "enable_model_cpu_offload", None)
    if enable is None:
        return False
    enable(device=device)
    return True


def disable_offload(model: Any) -> None:
    """Undo `enable_offload`: remove the hooks and leave every part on the CPU."""
    for name in ("disable_model_cpu_offload", "remove_all_hooks"):
        undo = getattr(model, name, None)
        if undo is not None:
            undo()
            break


@contextlib.contextmanager
def on_device(model: M, device: str | torch.device, *, low_vram: bool = False) -> Iterator[M]:
    """`model` on `device` for the block, and back on the CPU after it (its GPU memory released).

    With `low_vram` the model's own CPU offload is used instead, when it has one. On the CPU alone
    nothing moves; low_vram still turns the offload on there, which only costs a little time.
    """
    on_cpu = torch.device(device).type == CPU
    if on_cpu and not low_vram:
        yield model
        return
    offloaded = low_vram and enable_offload(model, device)
    if not offloaded:
        place(model, device)
    try:
        yield model
    finally:
        if offloaded:
            disable_offload(model)
        if not on_cpu:
            place(model, CPU)
        free_memory()


class StillOutOfMemory(Exception):
    """The retry with lower-memory settings ran out of GPU memory too."""


def retry_out_of_memory(run: Callable[[bool], T], low_vram: bool) -> tuple[T, bool]:
    """`run(low_vram)`; after a GPU out-of-memory error, the memory freed and `run(True)` once more.

    Returns (the result, whether it took the retry); raises `StillOutOfMemory` when the retry fails too.
    Any other error passes through.
    """
    for attempt, setting in enumerate((low_vram, True)):
        try:
            return run(setting), attempt > 0
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Outside the except block: the error's traceback, and the GPU tensors its frames hold, are
        # gone before the cache is emptied.
        free_memory()
    raise StillOutOfMemory

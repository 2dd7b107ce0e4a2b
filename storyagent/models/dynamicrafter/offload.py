"""Where the DynamiCrafter models live: one device, or the CPU with each model moved to the GPU
only while it runs (model CPU offload)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class ModelOffloadMixin:
    """Placement for a pipeline whose `modules` property lists its models."""

    device: torch.device
    offload: bool

    @property
    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        if device is not None:
            self.device = torch.device(device)
        for module in self.modules.values():
            kwargs: dict[str, Any] = {} if self.offload else {"device": self.device}
            if dtype is not None and next(module.parameters()).dtype != dtype:
                kwargs["dtype"] = dtype
            if kwargs:
                module.to(**kwargs)
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda"):
        """Keep every model on the CPU and move each to `device` only while it runs."""
        self.offload = True
        self.device = torch.device(device)
        for module in self.modules.values():
            module.to("cpu")
        return self

    @contextlib.contextmanager
    def running(self, module: nn.Module) -> Iterator[nn.Module]:
        """`module`, on the pipeline's device for the duration of the block."""
        if not self.offload:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

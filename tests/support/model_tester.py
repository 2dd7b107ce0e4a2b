"""The checks every model family's tests share (after diffusers' `ModelTesterMixin`): a
save_pretrained/from_pretrained round trip gives the same outputs, a float16/bfloat16 cast keeps the
output shapes and runs, and a checkpoint with a key the model does not have is refused.

A family's test class subclasses `ModelTesterMixin` and provides the `model` fixture (or `make_model()`),
`dummy_inputs()` and, where the default `model(**inputs)` does not fit, `forward()`; `save`, `load` and
`cast` have defaults for the usual `save_pretrained(folder)` / `from_pretrained(folder)` / `.to(dtype=)`.
`strict_weights` names the weight files (relative to what `save` returned; "" is that path itself) whose
loader must refuse an unknown key; a family whose loaders are all lenient (diffusers and transformers
modules only warn) sets `test_unknown_checkpoint_keys_raise = None`, saying why.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

DTYPES = [pytest.param(torch.float16, id="float16"), pytest.param(torch.bfloat16, id="bfloat16")]


def assert_same(a: Any, b: Any, path: str = "output") -> None:
    """Exact equality through tensors, arrays, dataclasses, mappings and sequences."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, path
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=path)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for field in dataclasses.fields(a):
            assert_same(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def structure(out: Any) -> Any:
    """The shapes of an output (what a dtype cast must keep), with every float value checked finite."""
    if isinstance(out, torch.Tensor):
        assert torch.isfinite(out.float()).all(), "non-finite values"
        return ("tensor", tuple(out.shape))
    if isinstance(out, np.ndarray):
        assert out.dtype.kind not in "fc" or np.isfinite(out).all(), "non-finite values"
        return ("array", out.shape)
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return {f.name: structure(getattr(out, f.name)) for f in dataclasses.fields(out)}
    if isinstance(out, dict):
        return {k: structure(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [structure(x) for x in out]
    if isinstance(out, float):
        assert np.isfinite(out), "non-finite value"
        return "float"
    return type(out).__name__


def add_unknown_key(file: Path, key: str) -> None:
    """Write `key` (a small zero tensor) into the safetensors `file`, keeping its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(file), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(file))
    assert key not in tensors
    tensors[key] = torch.zeros(2, 2)
    save_file(tensors, str(file), metadata=metadata)


class ModelTesterMixin:
    strict_weights: tuple[str, ...] = ()
    """Weight files, relative to the saved path, whose loader refuses an unknown key."""
    unknown_key = "not_a_weight_of_this_model.weight"
    """The key written into each of them."""
    unknown_key_error: type[BaseException] | tuple[type[BaseException], ...] = RuntimeError
    """What loading such a checkpoint raises."""
    unknown_key_match: str | None = None
    """A regex the error message matches (default: the key itself)."""

    # ------------------------------------------------------------------ what a family provides
    def make_model(self) -> Any:
        """A fresh float32 model; override this or the `model` fixture."""
        raise NotImplementedError

    @pytest.fixture
    def model(self):
        return self.make_model()

    def dummy_inputs(self) -> dict[str, Any]:
        return {}

    def forward(self, model: Any, inputs: dict[str, Any]) -> Any:
        """A deterministic output of `model` (seeded where the model samples)."""
        return model(**inputs)

    def save(self, model: Any, folder: Path) -> Path:
        return model.save_pretrained(folder)

    def load(self, path: Path, model: Any) -> Any:
        """The model saved at `path`; `model` is the one saved, for settings its files do not hold."""
        raise NotImplementedError

    def cast(self, model: Any, dtype: torch.dtype) -> Any:
        return model.to(dtype=dtype)

    def modules(self, model: Any) -> list[torch.nn.Module]:
        """The torch modules a cast must reach (checked to hold `dtype` afterwards)."""
        return []

    def assert_same_outputs(self, ours: Any, theirs: Any) -> None:
        assert_same(ours, theirs)

    # ------------------------------------------------------------------ the shared checks
    def test_save_pretrained_round_trip_gives_the_same_outputs(self, model, tmp_path):
        inputs = self.dummy_inputs()
        before = self.forward(model, inputs)
        again = self.load(self.save(model, tmp_path / "saved"), model)
        self.assert_same_outputs(before, self.forward(again, inputs))
        if hasattr(model, "config"):
            assert_same(again.config, model.config, "config")

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtype_cast_keeps_shapes_and_runs(self, model, dtype):
        inputs = self.dummy_inputs()
        full = structure(self.forward(model, inputs))
        cast = self.cast(model, dtype)
        for module in self.modules(cast):
            floats = {p.dtype for p in module.parameters() if p.is_floating_point()}
            assert floats <= {dtype}, f"{type(module).__name__} kept {floats - {dtype}} after the cast"
        assert structure(self.forward(cast, inputs)) == full

    def test_unknown_checkpoint_keys_raise(self, model, tmp_path):
        assert self.strict_weights, "name the strict weight files, or set this test to None"
        saved = self.save(model, tmp_path / "saved")
        for name in self.strict_weights:
            file = saved / name if name else saved
            original = file.read_bytes()
            add_unknown_key(file, self.unknown_key)
            with pytest.raises(self.unknown_key_error, match=self.unknown_key_match or re.escape(self.unknown_key)):
                self.load(saved, model)
            file.write_bytes(original)
        self.load(saved, model)  # the untouched checkpoint loads


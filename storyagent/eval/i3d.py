"""Inflated 3D Inception-v1 (I3D), the video classifier FVD measures with.

Carreira and Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
CVPR 2017. Module names follow the widely used PyTorch port's state-dict layout
(`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`, ...), so its
Kinetics-400 RGB checkpoints load as they are. TensorFlow-style "SAME" padding is computed per
input, as in the original model. With the same weights its logits equal piergiaj/pytorch-i3d's
`InceptionI3d` (tests/support/fixtures/parity/i3d_fvd) wherever that model's final [2, 7, 7] average pool
covers the whole feature map, as it does for FVD's 16-frame 224×224 clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Inception blocks: name -> (branch0, branch1 reduce, branch1, branch2 reduce, branch2, pool proj).
MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


@dataclass
class I3DConfig:
    num_classes: int = field(default=400, metadata={"help": "Classes of the logits layer (400 for Kinetics-400)."})
    width_mult: float = field(default=1.0, metadata={"help": "Scales every layer's width; 1.0 is the real I3D, tests use ~1/16."})

    def width(self, channels: int) -> int:
        return max(1, round(channels * self.width_mult))


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d with SAME padding, then BatchNorm and ReLU (the logits layer has neither)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int, int] = 1, stride: int | tuple[int, int, int] = 1,
                 batch_norm: bool = True, activation: bool = True) -> None:
        super().__init__()
        self.kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel
        self.stride = (stride,) * 3 if isinstance(stride, int) else stride
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not batch_norm)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if batch_norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero padding (as the original): inputs here follow a ReLU, so zeros never win a max wrongly.
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        c0, c1r, c1, c2r, c2, c3 = widths
        self.b0 = Unit3D(cin, c0)
        self.b1a, self.b1b = Unit3D(cin, c1r), Unit3D(c1r, c1, 3)
        self.b2a, self.b2b = Unit3D(cin, c2r), Unit3D(c2r, c2, 3)
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c3)
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, 400) logits, or the (B, 1024) pooled features."""

    def __init__(self, config: I3DConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or I3DConfig()
        w = cfg.width
        self.Conv3d_1a_7x7 = Unit3D(3, w(64), 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.Conv3d_2c_3x3 = Unit3D(w(64), w(192), 3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = w(192)
        for name, widths in MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionBlock(cin, tuple(w(c) for c in widths))
            setattr(self, name, block)
            cin = block.out_channels
        self.feature_dim = cin
        self.logits = Unit3D(cin, cfg.num_classes, batch_norm=False, activation=False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                     "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                     "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor, features: str = "logits") -> torch.Tensor:
        x = self.trunk(x)  # (B, 1024, T/8, H/32, W/32)
        # The original averages a [2, 7, 7] window; for the 16-frame 224 px clips FVD uses that window
        # covers the whole map, which the spatial mean here reproduces at any input size.
        x = x.mean(dim=(3, 4), keepdim=True)  # (B, 1024, T', 1, 1)
        if features == "pool":
            return x.mean(dim=(2, 3, 4))
        return self.logits(x).mean(dim=(2, 3, 4))  # logits averaged over time: (B, classes)


def load_i3d(path, num_classes: int | None = None) -> I3D:
    """A full-size I3D with weights from a local `.pt`/`.pth` (weights-only) or `.safetensors` file."""
    from pathlib import Path

    from storyagent.errors import WeightsNotFoundError
    from storyagent.weights import load_pickled_state_dict

    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(
            f"I3D weights {path} do not exist; pass a local Kinetics-400 I3D checkpoint (e.g. rgb_imagenet.pt).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_pickled_state_dict(path)
    classes = num_classes or int(state["logits.conv3d.weight"].shape[0])
    width_mult = state["Conv3d_1a_7x7.conv3d.weight"].shape[0] / 64
    model = I3D(I3DConfig(num_classes=classes, width_mult=width_mult if not math.isclose(width_mult, 1.0) else 1.0))
    model.load_state_dict(state, strict=True)
    return model.eval()

"""LPIPS: the learned perceptual distance of Zhang et al., CVPR 2018 ("The Unreasonable Effectiveness
of Deep Features as a Perceptual Metric"), rebuilt on torchvision's AlexNet / VGG16 feature stacks.

Distance = sum over layers l of the spatial mean of w_l · (f̂_l(x) - f̂_l(y))², where f̂_l are the
backbone activations at five ReLUs, each unit-normalised along channels, and w_l are the learned
non-negative 1×1 "linear" heads. Inputs are scaled to [-1, 1] then shifted and scaled per channel.

Computed exactly as torchmetrics' `LearnedPerceptualImagePatchSimilarity` (its `_LPIPS`, a port of
the authors' `lpips` package); the tests check the two agree. Weights come from local files only:
the backbone from a torchvision state dict (e.g. `alexnet-owt-7be5be79.pth`), the heads by default
from the v0.1 heads torchmetrics ships (`torchmetrics/functional/image/lpips_models/alex.pth`, the
`lpips` package's `weights/v0.1/alex.pth`, keys `lin{l}.model.1.weight`), or one safetensors/pth
file holding both in this module's layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from storyagent.errors import WeightsNotFoundError
from storyagent.eval.frames import VideoLike, as_video, match_length
from storyagent.weights import load_pickled_state_dict

# Where the five tapped ReLUs sit in torchvision's `features` stack, and their widths.
TAPS = {
    "alex": ((1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": ((3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
}
# The input normalisation LPIPS was trained with (its `ScalingLayer`).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """`LPIPS(net)(x, y) -> (N,)` distances for (N, 3, H, W) images in [0, 1]."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        from torchvision.models import alexnet, vgg16

        if net not in TAPS:
            raise ValueError(f"net must be one of {sorted(TAPS)}")
        self.net = net
        taps, widths = TAPS[net]
        # weights=None: the architecture only; trained weights arrive through `load_weights`.
        features = (alexnet(weights=None) if net == "alex" else vgg16(weights=None)).features
        self.features = features[: taps[-1] + 1]
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.taps = taps
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, kernel_size=1, bias=False) for w in widths)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = (x * 2 - 1 - self.shift) / self.scale
        y = (y * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins):
            # eps inside the root, as torchmetrics' and the lpips package's `normalize_tensor`
            fx = fx / torch.sqrt(1e-8 + fx.pow(2).sum(dim=1, keepdim=True))
            fy = fy / torch.sqrt(1e-8 + fy.pow(2).sum(dim=1, keepdim=True))
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total

    def load_weights(self, heads: str | os.PathLike[str] | None = None,
                     backbone: str | os.PathLike[str] | None = None) -> LPIPS:
        """Load the linear heads (default: torchmetrics' copy of LPIPS v0.1) and, when given, the backbone
        from local files, refusing partial loads."""
        heads = heads if heads is not None else default_heads(self.net)
        state: dict[str, torch.Tensor] = {}
        for path, kind in ((backbone, "backbone"), (heads, "heads")):
            if path is None:
                continue
            path = Path(path)
            if not path.exists():
                raise WeightsNotFoundError(f"LPIPS {kind} weights {path} do not exist; pass the local file path.")
            state.update(_read(path))
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("features."):  # torchvision AlexNet/VGG state dict
                idx = int(key.split(".")[1])
                if idx <= self.taps[-1]:
                    mapped[key] = value
            elif key.startswith("lin") and ".model." in key:  # lpips package: lin{l}.model.1.weight
                mapped[f"lins.{int(key[3:].split('.')[0])}.weight"] = value
            elif key.startswith(("lins.", "net.")):
                mapped[key.removeprefix("net.")] = value
        missing, _ = self.load_state_dict(mapped, strict=False)
        if missing:
            raise WeightsNotFoundError(
                f"LPIPS weights are incomplete (missing {sorted(missing)[:3]}); give both the linear heads "
                f"and the torchvision {self.net} backbone file.")
        return self


def default_heads(net: str = "alex") -> Path:
    """The LPIPS v0.1 linear heads torchmetrics installs with itself (no download)."""
    import torchmetrics.functional.image.lpips as tm_lpips

    return Path(tm_lpips.__file__).with_name("lpips_models") / f"{net}.pth"


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return load_pickled_state_dict(path)


@torch.no_grad()
def lpips_frames(model: LPIPS, a: torch.Tensor, b: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """LPIPS of each frame pair (T,)."""
    device = next(model.parameters()).device
    out = [model(a[i:i + batch_size].to(device), b[i:i + batch_size].to(device)).cpu()
           for i in range(0, len(a), batch_size)]
    return torch.cat(out)


def lpips(video: VideoLike, reference: VideoLike, model: LPIPS) -> float:
    """Mean per-frame LPIPS (Zhang et al. 2018) of `video` against `reference`; 0 = identical, lower is better."""
    a, b = match_length(as_video(video), as_video(reference))
    if a.shape[-2:] != b.shape[-2:]:
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return float(lpips_frames(model, a, b).mean())

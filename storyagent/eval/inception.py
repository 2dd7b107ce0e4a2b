"""Inception Score (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016):
IS = exp(E_x KL(p(y|x) || p(y))), computed by torchmetrics' `InceptionScore` over `splits` (10)
random parts of all frames pooled, with p(y|x) from an ImageNet Inception-v3 and p(y) the part's
mean prediction.

Higher is better: confident (low-entropy) per-frame predictions that vary across frames.
The original uses TensorFlow's Inception graph (1008 classes); torchvision's port (1000 classes)
gives close but not identical numbers, so compare IS values computed with the same network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.eval.frames import VideoLike, as_video, resize_video
from storyagent.weights import load_pickled_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_inception(path: str | os.PathLike[str]) -> nn.Module:
    """torchvision's Inception-v3 architecture with weights from a local file (weights-only / safetensors)."""
    from torchvision.models import inception_v3

    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(
            f"Inception-v3 weights {path} do not exist; pass a local torchvision checkpoint "
            "(inception_v3_google-0cc3c7bd.pth).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_pickled_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    # weights=None: no download; init_weights=False: the random init is overwritten anyway.
    # transform_input=True as torchvision sets it for these weights (ported from TensorFlow, they
    # expect [-1, 1] inputs; the model re-normalises the ImageNet-normalised input itself).
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def class_probabilities(frames: torch.Tensor, classifier: nn.Module, size: tuple[int, int] = (299, 299),
                        batch_size: int = 32) -> torch.Tensor:
    """p(y|x) of (N, 3, H, W) frames in [0, 1]: resized, ImageNet-normalised, softmax of the logits."""
    return torch.cat([F.softmax(_logits(frames[i:i + batch_size], classifier, size), dim=-1)
                      for i in range(0, len(frames), batch_size)])


def _logits(frames: torch.Tensor, classifier: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    device = next(classifier.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = classifier(((resize_video(frames, size) - mean) / std).to(device))
    return (out.logits if hasattr(out, "logits") else out).float().cpu()


class InceptionLogits(nn.Module):
    """The feature extractor torchmetrics' `InceptionScore(feature=...)` calls: frames in [0, 1] -> logits."""

    def __init__(self, classifier: nn.Module, size: tuple[int, int] = (299, 299), batch_size: int = 32) -> None:
        super().__init__()
        self.classifier, self.size, self.batch_size = classifier, size, batch_size

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([_logits(frames[i:i + self.batch_size], self.classifier, self.size)
                          for i in range(0, len(frames), self.batch_size)])


def inception_score_and_std(videos: Sequence[VideoLike], classifier: nn.Module, splits: int = 10,
                            size: tuple[int, int] = (299, 299), seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the Inception Score by torchmetrics' `InceptionScore` over all frames of all `videos`."""
    from torchmetrics.image.inception import InceptionScore

    frames = torch.cat([as_video(v) for v in videos])
    if len(frames) < splits:
        raise InputError(f"The Inception Score needs at least {splits} frames for {splits} splits (got {len(frames)}).")
    metric = InceptionScore(feature=InceptionLogits(classifier, size), splits=splits)
    metric.update(frames)
    # torchmetrics shuffles the frames before splitting them with the global RNG: seed it, locally.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(videos: Sequence[VideoLike], classifier: nn.Module, splits: int = 10,
                    size: tuple[int, int] = (299, 299), seed: int = 0) -> float:
    """Inception Score (Salimans et al. 2016) as torchmetrics computes it: the frames of all `videos`
    pooled, shuffled, cut into `splits` (10) parts, exp(E KL(p(y|x) || p(y))) per part, averaged.

    The network is torchvision's Inception-v3 (1000 classes); torchmetrics' default is torch-fidelity's
    port of the TensorFlow graph (1008 classes), so values are close to, not equal to, published ones.
    Higher is better; 1 = uninformative, at most the number of classes.
    """
    return inception_score_and_std(videos, classifier, splits, size, seed)[0]

"""Inception Score (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016):
IS = exp(E_x KL(p(y|x) || p(y))), computed over `splits` disjoint parts of the frames and
averaged, with p(y|x) from an ImageNet Inception-v3 and p(y) the part's mean prediction.

Higher is better: confident (low-entropy) per-frame predictions that vary across frames.
The original uses TensorFlow's Inception graph (1008 classes); torchvision's port (1000 classes)
gives close but not identical numbers, so compare IS values computed with the same network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from storyagent.errors import WeightsNotFoundError
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
    device = next(classifier.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(frames), batch_size):
        x = (resize_video(frames[i:i + batch_size], size) - mean) / std
        logits = classifier(x.to(device))
        logits = logits.logits if hasattr(logits, "logits") else logits
        out.append(F.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def inception_score_from_probs(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` parts of the (N, K) class probabilities."""
    probs = probs.double()
    splits = max(1, min(splits, len(probs)))
    scores = []
    for part in torch.tensor_split(probs, splits):
        marginal = part.mean(dim=0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-12)) - torch.log(marginal.clamp_min(1e-12)))).sum(dim=1)
        scores.append(float(torch.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(videos: Sequence[VideoLike], classifier: nn.Module, splits: int = 10,
                    size: tuple[int, int] = (299, 299)) -> float:
    """Inception Score (Salimans et al. 2016) over all frames of `videos`, as the StoryAgent paper's
    Table 1 reports it for generated clips: exp(E KL(p(y|x) || p(y))), mean over `splits` parts.
    Higher is better; 1 = uninformative, at most the number of classes."""
    frames = torch.cat([as_video(v) for v in videos])
    return inception_score_from_probs(class_probabilities(frames, classifier, size), splits)[0]

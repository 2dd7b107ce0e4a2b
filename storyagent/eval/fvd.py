"""Fréchet Video Distance (Unterthiner et al., "Towards Accurate Generative Models of Video: A New
Metric & Challenges", 2018): the Fréchet distance between Gaussians fitted to I3D features of two
sets of clips, ||mu_1 - mu_2||² + Tr(S_1 + S_2 - 2 (S_1 S_2)^½).

Clips are sampled to 16 frames, resized to 224×224 and scaled to [-1, 1]; the features are the
400-way Kinetics logits, as the reference implementation takes them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import linalg

from storyagent.eval.frames import VideoLike, as_video, resize_video
from storyagent.eval.i3d import I3D

FVD_FRAMES = 16
FVD_SIZE = (224, 224)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson and Landau 1982)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Few samples give singular covariances; non-finite results are handled below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():
        # A singular product (few samples): nudge both covariances, as FID implementations do.
        eps = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = covmean.real
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean), 0.0))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(features, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def sample_frames(video: torch.Tensor, num_frames: int = FVD_FRAMES) -> torch.Tensor:
    """`num_frames` evenly spaced frames; shorter clips repeat frames to reach the length."""
    idx = torch.linspace(0, len(video) - 1, num_frames).round().long()
    return video[idx]


@torch.no_grad()
def i3d_features(videos: Sequence[VideoLike], model: I3D, num_frames: int = FVD_FRAMES,
                 size: tuple[int, int] = FVD_SIZE, batch_size: int = 4, features: str = "logits") -> np.ndarray:
    """(N, D) I3D features of N clips."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(videos), batch_size):
        clips = [resize_video(sample_frames(as_video(v), num_frames), size) for v in videos[start:start + batch_size]]
        x = torch.stack(clips).permute(0, 2, 1, 3, 4) * 2 - 1  # (B, T, 3, H, W) -> (B, 3, T, H, W) in [-1, 1]
        out.append(model(x.to(device), features=features).float().cpu())
    return torch.cat(out).numpy()


def fvd(videos: Sequence[VideoLike], references: Sequence[VideoLike], model: I3D, **kwargs) -> float:
    """FVD between generated `videos` and ground-truth `references`; 0 for identical sets, lower is better.

    Needs at least two clips per set (a covariance); the published numbers use hundreds to thousands.
    """
    if len(videos) < 2 or len(references) < 2:
        raise ValueError("FVD needs at least two clips in each set")
    a = i3d_features(videos, model, **kwargs)
    b = i3d_features(references, model, **kwargs)
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))

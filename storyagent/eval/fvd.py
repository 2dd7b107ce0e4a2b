"""Fréchet Video Distance (Unterthiner et al., "Towards Accurate Generative Models of Video: A New
Metric & Challenges", 2018), as StyleGAN-V's `src/metrics/frechet_video_distance.py` computes it:
the Fréchet distance ||mu_1 - mu_2||² + Tr(S_1 + S_2 - 2 (S_1 S_2)^½) between Gaussians fitted to the
400-way Kinetics I3D logits of 16-frame clips.

Each clip gives its first 16 consecutive frames (StyleGAN-V's `load_n_consecutive=16` for generated
videos), resized to 224×224 (bilinear) and scaled to [-1, 1]; shorter clips are refused, not padded
(StyleGAN-V discards them). Mean and covariance are the population statistics StyleGAN-V's
`FeatureStats` keeps (float64, covariance divided by N). How many clips: the covariance of D-dim
features has full rank only from D + 1 clips, so `fvd` refuses fewer than the feature dimension
+ 1 unless told otherwise (401 for the real I3D); published numbers use 2048 (StyleGAN-V's
`fvd2048_16f`), and values from a few hundred clips are biased upwards and only comparable with
numbers computed on the same count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from storyagent.errors import InputError
from storyagent.eval.frames import VideoLike, as_video
from storyagent.eval.i3d import I3D

FVD_FRAMES = 16
FVD_SIZE = (224, 224)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson and Landau 1982),
    with scipy's `sqrtm` and the real part of the result, as StyleGAN-V's `compute_fvd`."""
    m = np.square(mu1 - mu2).sum()
    s, _ = scipy.linalg.sqrtm(np.dot(sigma1, sigma2), disp=False)
    return float(np.real(m + np.trace(sigma1 + sigma2 - s * 2)))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population covariance (divided by N) in float64, as StyleGAN-V's `FeatureStats.get_mean_cov`."""
    feats = np.asarray(features, dtype=np.float64)
    mean = feats.mean(axis=0)
    return mean, feats.T @ feats / len(feats) - np.outer(mean, mean)


def sample_frames(video: torch.Tensor, num_frames: int = FVD_FRAMES, index: int | None = None) -> torch.Tensor:
    """The first `num_frames` consecutive frames; a shorter clip is refused (FVD's I3D sees 16-frame clips)."""
    if len(video) < num_frames:
        which = f"clip {index}" if index is not None else "a clip"
        raise InputError(f"FVD needs clips of at least {num_frames} frames, but {which} has {len(video)}; "
                         "use longer clips (short clips are not padded by repetition).")
    return video[:num_frames]


def preprocess(video: torch.Tensor, size: tuple[int, int] = FVD_SIZE) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> (3, T, *size) in [-1, 1]: I3D's input, bilinear resize without antialiasing."""
    if tuple(video.shape[-2:]) != tuple(size):
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    return video.permute(1, 0, 2, 3) * 2 - 1


@torch.no_grad()
def i3d_features(videos: Sequence[VideoLike], model: I3D, num_frames: int = FVD_FRAMES,
                 size: tuple[int, int] = FVD_SIZE, batch_size: int = 4, features: str = "logits") -> np.ndarray:
    """(N, D) I3D features of N clips: the logits (StyleGAN-V's "raw features before the softmax")."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(videos), batch_size):
        clips = [preprocess(sample_frames(as_video(v), num_frames, start + i), size)
                 for i, v in enumerate(videos[start:start + batch_size])]
        out.append(model(torch.stack(clips).to(device), features=features).double().cpu())
    return torch.cat(out).numpy()


def fvd(videos: Sequence[VideoLike], references: Sequence[VideoLike], model: I3D, min_clips: int | None = None,
        **kwargs) -> float:
    """FVD between generated `videos` and ground-truth `references`; 0 for identical sets, lower is better.

    `min_clips` (default: the feature dimension + 1, 401 with the real I3D) is the fewest clips
    each set must have; it cannot go below 2. See the module notes on how many clips are reliable.
    """
    dim = model.config.num_classes if kwargs.get("features", "logits") == "logits" else model.feature_dim
    check_clip_count(len(videos), len(references), dim, min_clips)
    return fvd_from_features(i3d_features(videos, model, **kwargs), i3d_features(references, model, **kwargs),
                             min_clips)


def check_clip_count(generated: int, references: int, dim: int, min_clips: int | None = None) -> None:
    """Refuse fewer clips than `min_clips` (default: `dim` + 1, the fewest a full-rank covariance needs)."""
    need = max(2, dim + 1 if min_clips is None else min_clips)
    for name, count in (("generated", generated), ("reference", references)):
        if count < need:
            raise InputError(f"FVD needs at least {need} {name} clips (got {count}): with fewer the "
                             f"{dim}-dim feature covariance is rank-deficient and the number meaningless; "
                             "published FVDs use 2048 clips.")


def fvd_from_features(generated: np.ndarray, references: np.ndarray, min_clips: int | None = None) -> float:
    """FVD from (N, D) I3D features already computed (e.g. a batch of clips at a time, on several machines)."""
    check_clip_count(len(generated), len(references), generated.shape[1], min_clips)
    return frechet_distance(*gaussian_stats(generated), *gaussian_stats(references))

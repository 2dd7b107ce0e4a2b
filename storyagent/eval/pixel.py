"""Full-reference pixel metrics, SSIM and PSNR, computed by torchmetrics frame by frame and averaged
over the clip (how story-visualisation papers, the StoryAgent paper's Table 1 among them, report them).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from storyagent.eval.frames import VideoLike, as_video, match_length


def ssim_frames(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each frame pair, (T, C, H, W) -> (T,), by torchmetrics' `structural_similarity_index_measure`.

    Wang et al., IEEE TIP 2004, with torchmetrics' defaults: an 11×11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, averaged over pixels and channels.
    """
    if min(a.shape[-2:]) < 11:
        raise ValueError("SSIM needs frames of at least 11×11 pixels")
    return structural_similarity_index_measure(a.double(), b.double(), data_range=data_range,
                                               reduction="none").float()


def ssim(video: VideoLike, reference: VideoLike) -> float:
    """Mean SSIM over the frames of `video` against `reference`; 1 = identical."""
    a, b = match_length(as_video(video), as_video(reference))
    return float(ssim_frames(a, b).mean())


def psnr_frames(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each frame pair in dB by torchmetrics: 10 log10(L² / MSE) over all pixels and channels. (T,)"""
    return peak_signal_noise_ratio(a.double(), b.double(), data_range=data_range, reduction="none",
                                   dim=(1, 2, 3)).float()


def psnr(video: VideoLike, reference: VideoLike) -> float:
    """Mean per-frame PSNR (dB) of `video` against `reference`.

    Not capped: identical frames give +inf (torchmetrics does not cap either), so a clip with one
    identical frame averages to inf; callers that need a finite number cap it themselves.
    """
    a, b = match_length(as_video(video), as_video(reference))
    return float(psnr_frames(a, b).mean())

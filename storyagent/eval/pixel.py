"""Full-reference pixel metrics: SSIM and PSNR, frame by frame, averaged over the clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from storyagent.eval.frames import VideoLike, as_video, match_length


def _gaussian_window(sigma: float, truncate: float, device: torch.device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_frames(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5,
                k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM of each frame pair, (T, C, H, W) -> (T,).

    Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 2004: local means, variances and covariance under an
    11×11 Gaussian window (sigma 1.5), SSIM = ((2 mu_a mu_b + C1)(2 cov + C2)) /
    ((mu_a² + mu_b² + C1)(var_a + var_b + C2)) with C1 = (K1 L)², C2 = (K2 L)², averaged over
    the pixels whose window lies inside the image and over the channels. This equals
    scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L, channel_axis=-1)`: it also discards the
    window-radius border, so its padding never enters the result and a "valid" convolution
    reproduces it exactly.
    """
    a, b = a.double(), b.double()
    g = _gaussian_window(sigma, 3.5, a.device)
    c = a.shape[1]
    gx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)

    if min(a.shape[-2:]) < len(g):
        raise ValueError(f"SSIM needs frames of at least {len(g)}×{len(g)} pixels")
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3)).float()


def ssim(video: VideoLike, reference: VideoLike) -> float:
    """Mean SSIM (Wang et al. 2004) over the frames of `video` against `reference`; 1 = identical."""
    a, b = match_length(as_video(video), as_video(reference))
    return float(ssim_frames(a, b).mean())


def psnr_frames(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each frame pair in dB: 10 log10(L² / MSE), MSE over all pixels and channels. (T,)"""
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(data_range**2 / mse)).float()


def psnr(video: VideoLike, reference: VideoLike) -> float:
    """Mean per-frame PSNR (dB) of `video` against `reference`; infinite for identical clips.

    The frame-wise average is how video-prediction and story-visualisation papers (and the
    StoryAgent paper's Table 2) report PSNR over clips.
    """
    a, b = match_length(as_video(video), as_video(reference))
    return float(psnr_frames(a, b).mean())

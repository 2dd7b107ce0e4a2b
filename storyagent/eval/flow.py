"""Optical-flow metrics: warping error (temporal consistency) and flow score (amount of motion).

EvalCrafter (Liu et al., CVPR 2024) computes both with RAFT (Teed and Deng, ECCV 2020); so does
`RAFTFlow` here, with torchvision's RAFT architecture and local weights. `FarnebackFlow`
(OpenCV's Farnebäck 2003 dense flow) needs no weights: it is the CPU default and the
independent estimator the tests use, and numbers computed with it are not comparable with
RAFT-based numbers in papers; reports name the estimator they used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from storyagent.errors import WeightsNotFoundError
from storyagent.eval.frames import VideoLike, as_video
from storyagent.weights import load_pickled_state_dict


class FlowEstimator(Protocol):
    name: str

    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> (N, 2, H, W) flow (dx, dy) in pixels: source x ↦ target x + flow."""
        ...


class FarnebackFlow:
    """Classical dense flow (Farnebäck, SCIA 2003) from OpenCV, on grey frames."""

    name = "farneback"

    def __init__(self, levels: int = 4, winsize: int = 15, iterations: int = 5) -> None:
        self.params = dict(pyr_scale=0.5, levels=levels, winsize=winsize, iterations=iterations,
                           poly_n=5, poly_sigma=1.2, flags=0)

    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flows = []
        for s, t in zip(source, target):
            gs = cv2.cvtColor((s.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            gt = cv2.cvtColor((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            flow = cv2.calcOpticalFlowFarneback(gs, gt, None, **self.params)  # (H, W, 2)
            flows.append(torch.from_numpy(flow).permute(2, 0, 1))
        return torch.stack(flows)


class RAFTFlow:
    """torchvision RAFT (large or small); inputs padded to a multiple of 8 (and at least 128 px), scaled to [-1, 1]."""

    name = "raft"

    def __init__(self, model: torch.nn.Module, iterations: int = 12) -> None:
        self.model = model.eval()
        self.iterations = iterations

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], small: bool = False, device: str = "cpu") -> RAFTFlow:
        """RAFT with weights from a local torchvision checkpoint (raft_large_C_T_SKHT_V2 / raft_small_C_T_V2)."""
        from torchvision.models.optical_flow import raft_large, raft_small

        path = Path(path)
        if not path.exists():
            raise WeightsNotFoundError(f"RAFT weights {path} do not exist; pass a local torchvision RAFT checkpoint.")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_pickled_state_dict(path)
        model = (raft_small if small else raft_large)(weights=None, progress=False)
        model.load_state_dict(state, strict=True)
        return cls(model.to(device))

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        h, w = source.shape[-2:]
        # RAFT works at 1/8 resolution and its correlation pyramid needs 16 cells: at least 128 px.
        ph, pw = max(-(-h // 8) * 8, 128) - h, max(-(-w // 8) * 8, 128) - w
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        a = F.pad(source * 2 - 1, pad, mode="replicate").to(device)
        b = F.pad(target * 2 - 1, pad, mode="replicate").to(device)
        flow = self.model(a, b, num_flow_updates=self.iterations)[-1].cpu()
        return flow[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` (N, C, H, W) at x + flow(x): backward warping, bilinear, border-clamped."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1  # (N, H, W), in grid_sample's [-1, 1]
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _pairs(video: torch.Tensor, estimator: FlowEstimator, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = []
    for i in range(0, len(video) - 1, batch_size):
        a, b = video[i:i + batch_size + 1][:-1], video[i + 1:i + batch_size + 1]
        out.append((a, b, estimator(a, b)))
    return out


def flow_magnitudes(video: VideoLike, estimator: FlowEstimator, batch_size: int = 8) -> np.ndarray:
    """Mean flow magnitude (pixels) of each consecutive frame pair, (T-1,)."""
    v = as_video(video)
    mags = [flow.norm(dim=1).mean(dim=(1, 2)) for _, _, flow in _pairs(v, estimator, batch_size)]
    return torch.cat(mags).numpy() if mags else np.zeros(0)


def flow_score(video: VideoLike, estimator: FlowEstimator) -> float:
    """Flow score: the average optical-flow magnitude, in pixels per frame, between consecutive frames.

    EvalCrafter's motion-quality metric (there with RAFT): how much a clip moves. A clip
    translating by d pixels per frame scores about d; a still clip scores 0.
    """
    mags = flow_magnitudes(video, estimator)
    return float(mags.mean()) if len(mags) else 0.0


def warping_errors(video: VideoLike, estimator: FlowEstimator, batch_size: int = 8) -> np.ndarray:
    """Per-pair warping error, (T-1,); see `warping_error`."""
    v = as_video(video)
    errors = []
    for a, b, fwd in _pairs(v, estimator, batch_size):
        bwd = estimator(b, a)
        warped = warp(b, fwd)  # frame t+1 pulled back onto frame t
        # Occlusions (Sundaram et al., ECCV 2010): where following the flow forward and back
        # does not return to the start, frame t+1 cannot predict frame t.
        bwd_at = warp(bwd, fwd)
        lhs = (fwd + bwd_at).pow(2).sum(dim=1)
        rhs = 0.01 * (fwd.pow(2).sum(dim=1) + bwd_at.pow(2).sum(dim=1)) + 0.5
        visible = (lhs < rhs).float()  # (N, H, W)
        diff = (a - warped).pow(2).sum(dim=1)  # squared L2 over RGB
        errors.append((visible * diff).sum(dim=(1, 2)) / visible.sum(dim=(1, 2)).clamp_min(1.0))
    return torch.cat(errors).numpy() if errors else np.zeros(0)


def warping_error(video: VideoLike, estimator: FlowEstimator) -> float:
    """Warping error: how badly each frame is predicted by the next one moved along the optical flow.

    Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018), as used by EvalCrafter:
    E = mean_t [ sum_x M_t(x) ||I_t(x) - warp(I_{t+1}, F_{t→t+1})(x)||² / sum_x M_t(x) ], with
    pixel values in [0, 1] and M_t the non-occlusion mask from a forward–backward flow check.
    0 for a still clip; flicker raises it. Lower is better.
    """
    errs = warping_errors(video, estimator)
    return float(errs.mean()) if len(errs) else 0.0


def propagate_mask(frames: VideoLike, first_mask: np.ndarray, estimator: FlowEstimator) -> list[np.ndarray]:
    """Carry a subject mask from frame 0 through the clip: mask_t(x) = mask_{t-1}(x + F_{t→t-1}(x)).

    Used to find the subject in every frame when only the storyboard's mask is known.
    """
    v = as_video(frames)
    h, w = v.shape[-2:]
    mask = torch.from_numpy(cv2.resize(first_mask.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST))
    masks = [mask.numpy() > 0.5]
    for t in range(1, len(v)):
        back = estimator(v[t:t + 1], v[t - 1:t])
        mask = warp(mask[None, None], back)[0, 0]
        mask = (mask > 0.5).float()
        masks.append(mask.numpy() > 0.5)
    return masks

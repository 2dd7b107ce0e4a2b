"""Optical-flow metrics: warping error (temporal consistency) and flow score (amount of motion).

Both follow EvalCrafter (Liu et al., CVPR 2024; metrics/RAFT/optical_flow_scores.py), the code the
StoryAgent paper's Table 2 cites, with RAFT (Teed and Deng, ECCV 2020). `RAFTFlow` runs
torchvision's `raft_large`; torchvision's `C_T_V1` weights are the original `raft-things.pth`
EvalCrafter loads, ported. `FarnebackFlow` (OpenCV's Farnebäck 2003 dense flow) needs no weights
and is only a labelled fallback: its numbers are not comparable with RAFT-based numbers in papers.
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

# torchvision's RAFT-large checkpoints, best match to EvalCrafter's raft-things.pth first.
RAFT_LARGE_FILES = ("raft_large_C_T_V1-22a6c225.pth", "raft_large_C_T_SKHT_V1-0b8c9e55.pth",
                    "raft_large_C_T_V2-1bb1363a.pth", "raft_large_C_T_SKHT_V2-ff5fadd5.pth")
# EvalCrafter runs RAFT with 20 refinement iterations (`iters=20, test_mode=True`).
EVALCRAFTER_ITERATIONS = 20


class FlowEstimator(Protocol):
    name: str

    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> (N, 2, H, W) flow (dx, dy) in pixels: source x ↦ target x + flow."""
        ...


class FarnebackFlow:
    """Classical dense flow (Farnebäck, SCIA 2003) from OpenCV, on grey frames: the weights-free fallback."""

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


def pad_to_multiple_of_8(x: torch.Tensor, min_size: int = 0) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """RAFT's `InputPadder` ("sintel" mode): replicate-pad H and W to multiples of 8, split evenly.

    `min_size` pads further (still centred) where torchvision's correlation pyramid needs a bigger
    map; the original RAFT fails on such small frames, so this never changes a reference number.
    """
    h, w = x.shape[-2:]
    th, tw = max(-(-h // 8) * 8, min_size), max(-(-w // 8) * 8, min_size)
    pad = ((tw - w) // 2, tw - w - (tw - w) // 2, (th - h) // 2, th - h - (th - h) // 2)
    return F.pad(x, pad, mode="replicate"), pad


class RAFTFlow:
    """torchvision RAFT; frames in [0, 1] are scaled to RAFT's [-1, 1] as the original does for [0, 255]."""

    name = "raft"

    def __init__(self, model: torch.nn.Module, iterations: int = EVALCRAFTER_ITERATIONS) -> None:
        self.model = model.eval()
        self.iterations = iterations

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], small: bool = False, device: str = "cpu") -> RAFTFlow:
        """RAFT with weights from a local torchvision checkpoint (raft_large_C_T_V1 / raft_small_C_T_V2 ...)."""
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

    @classmethod
    def find_cached(cls) -> Path | None:
        """A torchvision RAFT-large checkpoint already in the torch hub cache (no download), if any."""
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        return next((folder / f for f in RAFT_LARGE_FILES if (folder / f).exists()), None)

    @property
    def min_size(self) -> int:
        # The correlation pyramid works at 1/8 resolution and pools that map three times.
        return 128

    @torch.no_grad()
    def flow_padded(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Flow of frames whose sides are already multiples of 8 (and at least `min_size`)."""
        device = next(self.model.parameters()).device
        a, b = (source * 2 - 1).to(device), (target * 2 - 1).to(device)
        return self.model(a, b, num_flow_updates=self.iterations)[-1].float().cpu()

    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h, w = source.shape[-2:]
        a, pad = pad_to_multiple_of_8(source, self.min_size)
        b, _ = pad_to_multiple_of_8(target, self.min_size)
        return self.flow_padded(a, b)[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` (N, C, H, W) at x + flow(x): backward warping, bilinear, border-clamped.

    The same sampling as FlowNet2's `Resample2d` that EvalCrafter warps with (indices clamped to
    the image, so samples outside take the border value).
    """
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1  # (N, H, W), in grid_sample's [-1, 1]
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _padded_flow(estimator: FlowEstimator, a: torch.Tensor, b: torch.Tensor,
                 input_divisor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, flow a -> b), with a and b padded as RAFT's `InputPadder` pads them for a RAFT estimator.

    `input_divisor` divides only what the RAFT network sees (EvalCrafter's warping-error quirk).
    """
    if isinstance(estimator, RAFTFlow):
        a, _ = pad_to_multiple_of_8(a, estimator.min_size)
        b, _ = pad_to_multiple_of_8(b, estimator.min_size)
        return a, b, estimator.flow_padded(a / input_divisor, b / input_divisor)
    return a, b, estimator(a, b)


def flow_magnitudes(video: VideoLike, estimator: FlowEstimator) -> np.ndarray:
    """Mean flow magnitude (pixels) of each consecutive frame pair, (T-1,); see `flow_score`."""
    v = as_video(video)
    mags = [_padded_flow(estimator, v[i:i + 1], v[i + 1:i + 2])[2].norm(dim=1).mean() for i in range(len(v) - 1)]
    return torch.stack(mags).double().numpy() if mags else np.zeros(0)


def flow_score(video: VideoLike, estimator: FlowEstimator) -> float:
    """Flow score: the average optical-flow magnitude, in pixels per frame, between consecutive frames.

    As EvalCrafter's `calculate_flow_score`: RAFT on full-resolution frames padded to multiples
    of 8, |flow| averaged over the padded map, then over the frame pairs. A clip translating by
    d pixels per frame scores about d; a still clip scores 0.
    """
    mags = flow_magnitudes(video, estimator)
    return float(mags.mean()) if len(mags) else 0.0


def occlusion_mask(fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
    """Where frame t+1 cannot predict frame t (N, H, W), as EvalCrafter's `detect_occlusion`.

    Forward–backward inconsistency (Sundaram et al., ECCV 2010) or a motion boundary of the
    forward flow (Lai et al., ECCV 2018, after Ruder et al. 2016).
    """
    bwd_at = warp(bwd, fwd)  # backward flow carried to frame t along the forward flow
    mag = lambda f: f.pow(2).sum(dim=1)  # noqa: E731
    inconsistent = mag(fwd + bwd_at) > 0.01 * (mag(bwd_at) + mag(fwd)) + 0.5
    du = torch.zeros_like(fwd)
    dv = torch.zeros_like(fwd)
    du[..., :, :-1] = fwd[..., :, :-1] - fwd[..., :, 1:]
    dv[..., :-1, :] = fwd[..., :-1, :] - fwd[..., 1:, :]
    boundary = (du.pow(2) + dv.pow(2)).sum(dim=1) > 0.01 * mag(fwd) + 0.002
    return inconsistent | boundary


def warping_errors(video: VideoLike, estimator: FlowEstimator, evalcrafter_raft_scale: bool = True) -> np.ndarray:
    """Per-pair warping error, (T-1,); see `warping_error`."""
    v = as_video(video)
    # EvalCrafter gives RAFT frames in [0, 1] where RAFT expects [0, 255]; reproduce it for its numbers.
    divisor = 255.0 if evalcrafter_raft_scale and isinstance(estimator, RAFTFlow) else 1.0
    half = F.interpolate(v, scale_factor=0.5, mode="bilinear", align_corners=False)
    errors = []
    for i in range(len(half) - 1):
        a, b, fwd = _padded_flow(estimator, half[i:i + 1], half[i + 1:i + 2], divisor)
        bwd = _padded_flow(estimator, b, a, divisor)[2]
        visible = (~occlusion_mask(fwd, bwd)).to(a.dtype)[:, None]  # (1, 1, H, W)
        diff = ((warp(b, fwd) - a) * visible).pow(2)
        count = visible.sum()
        errors.append(diff.sum() / (count if count > 0 else diff.numel()))
    return torch.stack(errors).double().numpy() if errors else np.zeros(0)


def warping_error(video: VideoLike, estimator: FlowEstimator, evalcrafter_raft_scale: bool = True) -> float:
    """Warping error: how badly each frame is predicted by the next one moved along the optical flow.

    Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018), as EvalCrafter's
    `compute_video_warping_error` computes it: frames in [0, 1] halved in size (bilinear), padded
    to multiples of 8, forward and backward flow, E_t = sum_x M_t(x) ||I_t(x) - warp(I_{t+1},
    F_{t→t+1})(x)||² / sum_x M_t(x) with M_t the non-occluded pixels, averaged over the pairs.
    EvalCrafter feeds RAFT those [0, 1] frames where RAFT expects [0, 255]; with
    `evalcrafter_raft_scale` (default) a RAFT estimator sees the same, so the numbers match theirs.
    0 for a still clip; flicker raises it. Lower is better.
    """
    errs = warping_errors(video, estimator, evalcrafter_raft_scale)
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

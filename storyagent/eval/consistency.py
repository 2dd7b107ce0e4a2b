"""Subject consistency: does the subject in every frame look like the user's reference subject,
and like itself across shots? Not in the StoryAgent paper; the usual customisation metrics.

Following DreamBooth (Ruiz et al., CVPR 2023), identity similarity is the cosine similarity of
image embeddings: DINO (Caron et al. 2021, self-supervised ViT; sensitive to appearance, not
only category) and CLIP image embeddings ("CLIP-I"). Here they compare the reference subject
crops with each frame's subject crop. `ColorHistogramFeatures` is a weights-free stand-in
(hue/saturation/value histogram of the subject's pixels) for CPU runs without weights; its
numbers only rank runs against each other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from itertools import combinations
from typing import Protocol

import cv2
import numpy as np
import torch

from storyagent.eval.clip_metrics import CLIPEncoder
from storyagent.eval.frames import crop_to_box


class SubjectFeatures(Protocol):
    name: str

    def __call__(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        """Unit-length (N, D) embeddings of subject crops (H×W×3 uint8) with their masks (or None)."""
        ...


class ColorHistogramFeatures:
    """A joint HSV histogram of the masked subject pixels, square-rooted (Hellinger) and unit-normalised."""

    name = "color-hist"

    def __init__(self, bins: tuple[int, int, int] = (12, 4, 4)) -> None:
        self.bins = bins

    def __call__(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        out = []
        for crop, mask in zip(crops, masks):
            hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
            m = None if mask is None else mask.astype(np.uint8)
            hist = cv2.calcHist([hsv], [0, 1, 2], m, list(self.bins), [0, 180, 0, 256, 0, 256]).ravel()
            hist = np.sqrt(hist / max(hist.sum(), 1.0))
            out.append(torch.from_numpy(hist.astype(np.float32)))
        emb = torch.stack(out)
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class LightingRobustFeatures:
    """A weights-free subject descriptor that ignores the scene's light: colour + shape of the masked crop.

    Colour: each channel is divided by its mean over the subject's pixels (grey-world, which
    cancels any per-channel light: night, dusk, a coloured lamp), then a 2-D histogram of the
    log-chromaticities log(R/G), log(B/G) (dark pixels, whose chromaticity is noise, weigh less)
    and a histogram of log relative brightness. Shape: HOG-like gradient-orientation histograms
    (Dalal and Triggs, CVPR 2005) on the subject's silhouette and its rank-equalised grey
    levels, pooled with its mirror image (a subject walking the other way is the same subject).
    Each part is unit length; the embedding concatenates them with weights summing to one, so a
    cosine similarity is the weighted mean of the two parts' cosines.
    """

    name = "fallback: lighting-normalised colour+shape"

    def __init__(self, chroma_bins: int = 12, size: int = 48, cells: int = 4, orientations: int = 9,
                 colour_weight: float = 0.65) -> None:
        self.chroma_bins, self.size, self.cells, self.orientations = chroma_bins, size, cells, orientations
        self.colour_weight = colour_weight

    def __call__(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        out = []
        for crop, mask in zip(crops, masks):
            m = np.ones(crop.shape[:2], bool) if mask is None or mask.sum() < 16 else mask.astype(bool)
            balanced = _grey_world(crop, m)
            colour, shape = self._colour(balanced[m]), self._shape(balanced, m)
            wc = self.colour_weight
            out.append(torch.from_numpy(np.concatenate([math.sqrt(wc) * colour, math.sqrt(1 - wc) * shape])))
        emb = torch.stack(out).float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def _colour(self, px: np.ndarray) -> np.ndarray:
        brightness = px.mean(axis=1)
        a, b = np.log(px[:, 0] / px[:, 1]), np.log(px[:, 2] / px[:, 1])
        weight = np.clip(brightness, 0.0, 1.0)
        n = self.chroma_bins
        chroma, _, _ = np.histogram2d(a, b, bins=n, range=[[-1.5, 1.5], [-1.5, 1.5]], weights=weight)
        # A little blur so a hue near a bin edge does not flip bins between shots.
        chroma = cv2.GaussianBlur(chroma.astype(np.float32), (3, 3), 0.8).ravel()
        light, _ = np.histogram(np.log(np.maximum(brightness, 1e-3)), bins=8, range=(-2.0, 1.0))
        parts = [np.sqrt(h / max(h.sum(), 1e-9)) for h in (chroma, light.astype(np.float32))]
        vec = np.concatenate([parts[0], 0.5 * parts[1]])
        return vec / max(np.linalg.norm(vec), 1e-12)

    def _shape(self, balanced: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        grey = balanced[y0:y1, x0:x1].mean(axis=2)
        inside = mask[y0:y1, x0:x1]
        # Rank-equalised grey levels inside the silhouette, 0 outside: invariant to any monotonic change of light.
        ranks = np.zeros(grey.shape, np.float32)
        order = np.argsort(grey[inside], kind="stable")
        vals = np.empty(len(order), np.float32)
        vals[order] = np.linspace(0.3, 1.0, len(order), dtype=np.float32)
        ranks[inside] = vals
        side = max(ranks.shape)
        square = np.zeros((side, side), np.float32)
        oy, ox = (side - ranks.shape[0]) // 2, (side - ranks.shape[1]) // 2
        square[oy:oy + ranks.shape[0], ox:ox + ranks.shape[1]] = ranks
        img = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        vec = self._hog(img) + self._hog(img[:, ::-1])
        return vec / max(np.linalg.norm(vec), 1e-12)

    def _hog(self, img: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(img)
        gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(gx, gy)
        # Unsigned orientation, linearly split between the two nearest bins.
        pos = (np.degrees(np.arctan2(gy, gx)) % 180.0) / (180.0 / self.orientations)
        lo = np.floor(pos).astype(int) % self.orientations
        frac = pos - np.floor(pos)
        c = self.cells
        cell = (np.arange(self.size) * c // self.size)
        idx = (cell[:, None] * c + cell[None, :])
        hist = np.zeros((c * c, self.orientations), np.float32)
        np.add.at(hist, (idx, lo), mag * (1 - frac))
        np.add.at(hist, (idx, (lo + 1) % self.orientations), mag * frac)
        vec = hist.ravel()
        vec = np.minimum(vec / max(np.linalg.norm(vec), 1e-12), 0.2)  # HOG's clipping: no edge dominates
        return vec / max(np.linalg.norm(vec), 1e-12)


def _grey_world(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The crop (float) with each channel divided by its mean over the mask: a per-channel light cancels out."""
    img = crop.astype(np.float32) + 1.0
    means = img[mask].mean(axis=0)
    return img / np.maximum(means, 1e-6)


class CLIPImageFeatures:
    """CLIP image embeddings of the subject's box crop ("CLIP-I")."""

    name = "clip"

    def __init__(self, encoder: CLIPEncoder) -> None:
        self.encoder = encoder

    def __call__(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        return self.encoder.embed_images(list(crops))


class DINOFeatures:
    """The [CLS] embedding of a DINO / DINOv2 ViT (transformers `AutoModel`) of the subject's box crop."""

    name = "dino"

    def __init__(self, model, processor) -> None:
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str = "cpu") -> DINOFeatures:
        """`path` (e.g. facebook/dino-vits16 or a DINOv2 folder) or the cached `dinov2-vitg14`."""
        from transformers import AutoImageProcessor, AutoModel

        from storyagent.weights import resolve_weights

        folder = str(resolve_weights("dinov2-vitg14", path))
        return cls(AutoModel.from_pretrained(folder, local_files_only=True).to(device),
                   AutoImageProcessor.from_pretrained(folder, local_files_only=True))

    @torch.no_grad()
    def __call__(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        pixels = self.processor(images=list(crops), return_tensors="pt")["pixel_values"].to(device)
        cls_token = self.model(pixel_values=pixels).last_hidden_state[:, 0].float().cpu()
        return cls_token / cls_token.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def subject_crops(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
                  margin: float = 0.05) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Each frame cropped to its mask's box (the whole frame when the mask is missing or empty)."""
    crops, crop_masks = [], []
    for frame, mask in zip(frames, masks):
        crops.append(crop_to_box(frame, mask, margin))
        crop_masks.append(None if mask is None or not mask.any() else crop_to_box(mask, mask, margin))
    return crops, crop_masks


def subject_consistency_frames(reference: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
    """Per frame: the mean cosine similarity to every reference embedding. (N_frames,)"""
    return (frames @ reference.T).mean(dim=1).numpy()


def subject_consistency(reference_crops: Sequence[np.ndarray], reference_masks: Sequence[np.ndarray | None],
                        frame_crops: Sequence[np.ndarray], frame_masks: Sequence[np.ndarray | None],
                        features: SubjectFeatures) -> np.ndarray:
    """Subject consistency to the reference, one value per frame (higher = more alike).

    Mean over the reference crops of cos(phi(reference crop), phi(frame's subject crop)), with phi
    the DINO, CLIP or colour-histogram embedding (DreamBooth's DINO / CLIP-I, applied per frame).
    """
    ref = features(reference_crops, reference_masks)
    emb = features(frame_crops, frame_masks)
    return subject_consistency_frames(ref, emb)


def inter_shot_consistency(shot_embeddings: Sequence[torch.Tensor]) -> tuple[float, np.ndarray]:
    """Inter-shot consistency: mean cosine similarity of the subject between every pair of shots.

    Each shot is summarised by the normalised mean of its frames' subject embeddings; returns the
    mean over shot pairs and the (S, S) similarity matrix. 1 for a single shot.
    """
    means = torch.stack([e.mean(dim=0) for e in shot_embeddings])
    means = means / means.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    matrix = (means @ means.T).numpy()
    pairs = [matrix[i, j] for i, j in combinations(range(len(means)), 2)]
    return (float(np.mean(pairs)) if pairs else 1.0), matrix

"""LangSAM: a subject's mask from a word. Grounding DINO finds boxes, SAM turns the best box into a mask."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from storyagent.models.langsam.config import LangSAMConfig
from storyagent.models.langsam.detector import Detections, GroundingDinoDetector, grounding_prompt
from storyagent.models.langsam.segmenter import SamSegmenter


@dataclass
class SubjectMask:
    """The subject in one image, or the reason it is absent. "Not found" is a result, not an error."""

    found: bool
    """Whether the subject was found and masked."""
    mask: np.ndarray
    """(H, W) bool, True on the subject; all False when not found."""
    box: tuple[float, float, float, float] | None = None
    """Pixel box x0, y0, x1, y1 the mask was cut from."""
    score: float = 0.0
    """Detector confidence of that box (best text-token probability)."""
    mask_score: float = 0.0
    """SAM's own estimate of the mask's IoU."""
    label: str = ""
    """The prompt words the box matched."""
    reason: str = ""
    """Why the subject is absent; empty when found."""
    candidates: int = 0
    """How many boxes passed the thresholds."""


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to (height, width); no grey edges to re-threshold."""
    height, width = size
    if mask.shape[:2] == (height, width):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def resize_box(box: tuple[float, float, float, float], src: tuple[int, int], dst: tuple[int, int]) -> tuple[float, ...]:
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    x0, y0, x1, y1 = box
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


class LangSAMPipeline:
    """Text-prompted subject masks for storyboard frames and reference-video frames.

    On disk (`save_pretrained`): `grounding_dino/` (transformers layout), `sam/model.safetensors`
    and `config.json` (the `LangSAMConfig`).
    """

    def __init__(self, detector: GroundingDinoDetector, segmenter: SamSegmenter, config: LangSAMConfig | None = None):
        self.config = config or LangSAMConfig()
        self.detector = detector
        self.detector.box_threshold = self.config.box_threshold
        self.detector.text_threshold = self.config.text_threshold
        self.segmenter = segmenter
        self.segmenter.multimask = self.config.multimask

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        *,
        dino_path: str | os.PathLike[str] | None = None,
        sam_path: str | os.PathLike[str] | None = None,
        config: LangSAMConfig | None = None,
    ) -> LangSAMPipeline:
        """Both models from a folder written by `save_pretrained`, or each from `dino_path` / `sam_path`,
        or from the weights registry ("grounding-dino-base", "sam-vit-h") when neither is given."""
        if path is not None:
            folder = Path(path)
            dino_path = dino_path or folder / "grounding_dino"
            sam_path = sam_path or folder / "sam"
            if config is None and (folder / "config.json").exists():
                config = LangSAMConfig.from_json(folder / "config.json")
        return cls(GroundingDinoDetector.from_pretrained(dino_path, torch_dtype=torch_dtype, device=device),
                   SamSegmenter.from_pretrained(sam_path, torch_dtype=torch_dtype, device=device), config)

    def to(self, device: str | torch.device) -> LangSAMPipeline:
        """Both models to `device` (SAM's predictor follows its model)."""
        self.detector.model.to(device)
        self.segmenter.sam.to(device)
        return self

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        from storyagent.fileio import atomic_write_json

        folder = Path(path)
        self.detector.save_pretrained(folder / "grounding_dino")
        self.segmenter.save_pretrained(folder / "sam")
        atomic_write_json(folder / "config.json", self.config.to_dict())
        return folder

    def __call__(
        self,
        images: Sequence[np.ndarray],
        text: str,
        output_size: tuple[int, int] | None = None,
    ) -> list[SubjectMask]:
        """The best mask per image for `text` (e.g. the subject's class word, "rabbit").

        Masks come back at each image's own size, or at `output_size` (height, width) when given.
        """
        # 1. The detector's prompt: lower-case phrases, each closed by a full stop.
        prompt = grounding_prompt(text)
        results: list[SubjectMask] = []
        for start in range(0, len(images), self.config.batch_size):
            batch = [np.asarray(im)[..., :3] for im in images[start : start + self.config.batch_size]]
            # 2. Boxes for the prompt, best first, already above both thresholds.
            detections = self.detector(batch, prompt)
            # 3. SAM on each image's most confident box, the mask back at the caller's size.
            results.extend(self.subject_mask(image, found, prompt, output_size)
                           for image, found in zip(batch, detections))
        return results

    def subject_mask(self, image: np.ndarray, found: Detections, prompt: str,
                     output_size: tuple[int, int] | None = None) -> SubjectMask:
        """SAM on the most confident box only (the storyboard has one subject per shot), or why there is none."""
        size = image.shape[:2]
        target = output_size or size
        if len(found) == 0:
            return SubjectMask(found=False, mask=np.zeros(target, bool),
                               reason=(f"no '{prompt.rstrip('.')}' found above the box threshold "
                                       f"{self.config.box_threshold:.2f}"))
        box = found.boxes[0]
        masks, ious = self.segmenter(image, box[None])
        if not masks[0].any():
            return SubjectMask(found=False, mask=np.zeros(target, bool), box=tuple(map(float, box)),
                               score=float(found.scores[0]), label=found.labels[0], candidates=len(found),
                               reason="the subject's box was found but SAM returned an empty mask")
        return SubjectMask(
            found=True,
            mask=resize_mask(masks[0], target),
            box=tuple(float(v) for v in resize_box(tuple(box), size, target)),
            score=float(found.scores[0]),
            mask_score=float(ious[0]),
            label=found.labels[0],
            candidates=len(found),
        )

"""Grounding DINO through transformers: boxes for a text prompt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from storyagent.weights import resolve_weights


def grounding_prompt(text: str) -> str:
    """Grounding DINO was trained on lower-case phrases each closed by a full stop: 'grey rabbit.'"""
    phrases = [p.strip().lower() for p in text.replace(",", ".").split(".") if p.strip()]
    if not phrases:
        raise ValueError("the detection prompt is empty; name the subject, e.g. 'rabbit'")
    return " ".join(f"{p}." for p in phrases)


def _clean_label(label: object) -> str:
    words = [w for w in str(label).replace(".", " ").split() if not (w.startswith("[") and w.endswith("]"))]
    return " ".join(words)


@dataclass
class Detections:
    """Boxes found in one image, best first."""

    boxes: np.ndarray
    """(N, 4) float pixel boxes x0, y0, x1, y1 in the input image."""
    scores: np.ndarray
    """(N,) best text-token probability per box."""
    labels: list[str]
    """The prompt words each box matched (those over the text threshold)."""

    def __len__(self) -> int:
        return len(self.scores)


class GroundingDinoDetector:
    """Text-prompted boxes from any `AutoModelForZeroShotObjectDetection` Grounding DINO checkpoint."""

    def __init__(self, model, processor, box_threshold: float = 0.3, text_threshold: float = 0.25) -> None:
        self.model = model.eval()
        self.processor = processor
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        **thresholds: float,
    ) -> GroundingDinoDetector:
        """Load from a local folder or the HF cache; `WeightsNotFoundError` names the fetch command."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        folder = resolve_weights("grounding-dino-base", path)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True, dtype=torch_dtype)
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        return cls(model.to(device), processor, **thresholds)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """The model and its processor in transformers layout, which `from_pretrained(path)` reads back."""
        folder = Path(path)
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        return folder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray], text: str) -> list[Detections]:
        prompt = grounding_prompt(text)
        inputs = self.processor(images=list(images), text=[prompt] * len(images), return_tensors="pt")
        inputs = inputs.to(self.device)
        outputs = self.model(**inputs)
        # The processor resizes and pads; target sizes bring the boxes back to each input's pixels.
        results = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[im.shape[:2] for im in images],
        )
        found = []
        for res, image in zip(results, images):
            scores = res["scores"].float().cpu().numpy()
            order = np.argsort(-scores, kind="stable")
            boxes = res["boxes"].float().cpu().numpy().reshape(-1, 4)[order]
            height, width = image.shape[:2]
            # predicted boxes may reach past the frame; SAM and the crop both want them inside it
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
            labels = res["text_labels"] if "text_labels" in res else res["labels"]
            found.append(Detections(boxes=boxes, scores=scores[order], labels=[_clean_label(labels[i]) for i in order]))
        return found

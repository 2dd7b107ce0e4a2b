"""The Observer's aesthetic review: storyboard frames scoring under a threshold go back for redrawing."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

Frame = np.ndarray | Image.Image | str | os.PathLike[str]


class ShotReview(NamedTuple):
    shot: int
    """1-based shot index."""
    score: float
    """Aesthetic score on the AVA 1..10 scale."""
    ok: bool
    """Whether the score reached the threshold."""


class AestheticObserver:
    """Scores storyboard frames with the LAION aesthetic predictor v2 and flags the weak ones.

    `scorer` maps a list of RGB images to scores; by default the real predictor is loaded on first
    use from `clip_path` / `head_path` or the Hugging Face cache (a clear error names the
    `storyagent weights fetch` command when they are missing).
    """

    def __init__(self, scorer: Callable[[list[np.ndarray]], Sequence[float]] | None = None,
                 clip_path: str | os.PathLike[str] | None = None,
                 head_path: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        self._scorer = scorer
        self._paths = (clip_path, head_path, device)

    @property
    def scorer(self) -> Callable[[list[np.ndarray]], Sequence[float]]:
        if self._scorer is None:
            from storyagent.models.aesthetic import AestheticPredictor

            clip_path, head_path, device = self._paths
            self._scorer = AestheticPredictor.from_pretrained(clip_path=clip_path, head_path=head_path, device=device)
        return self._scorer

    def review(self, storyboard_frames: Sequence[Frame] | Mapping[int, Frame], min_score: float) -> list[ShotReview]:
        """One `(shot, score, ok)` per frame; a sequence is numbered from shot 1, a mapping keeps its keys."""
        items = (sorted(storyboard_frames.items()) if isinstance(storyboard_frames, Mapping)
                 else list(enumerate(storyboard_frames, start=1)))
        images = [_as_rgb(frame) for _, frame in items]
        scores = list(self.scorer(images)) if images else []
        return [ShotReview(shot, float(s), float(s) >= min_score) for (shot, _), s in zip(items, scores)]

    @staticmethod
    def feedback(reviews: Sequence[ShotReview], min_score: float) -> str:
        """The Observer's message: 'good', or which shots to redraw and why."""
        bad = [r for r in reviews if not r.ok]
        if not bad:
            return "good"
        listed = ", ".join(f"shot {r.shot} ({r.score:.2f})" for r in bad)
        return f"redo shots {[r.shot for r in bad]}: aesthetic score under {min_score:g} for {listed}"


def _as_rgb(frame: Frame) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        return frame if frame.ndim == 3 else np.dstack([frame] * 3)
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    with Image.open(Path(frame)) as img:
        return np.asarray(img.convert("RGB"))

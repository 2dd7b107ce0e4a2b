"""One frame geometry for generation and comparison in the dataset protocol.

The ground truth (PororoSV and FlintstonesSV frames are 128×128 squares) and the animator
(DynamiCrafter-512: 320×512) disagree on size and aspect. Every ground-truth frame is mapped once
into the model's frame, the generator starts from that aligned frame, and the generated clip is
compared with the aligned ground truth on the region that holds picture in both (the content box):
no crop drops rows the metric then pretends to see, and no squash distorts what is compared.

- `letterbox` (default): the whole frame, scaled to fit, centred, the bars filled by repeating the
  edge pixels (a plausible picture for the animator); the bars are left out of every metric.
- `crop`: scaled to cover the model's frame and centre-cropped; the metric sees the whole model
  frame, which is the same crop of the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from storyagent.errors import InputError

Box = tuple[int, int, int, int]
"""(y0, y1, x0, x1) in the model's frame."""


@dataclass(frozen=True)
class FrameGeometry:
    """Where a ground-truth frame lies in the model's frame, and which pixels are compared."""

    height: int = field(metadata={"help": "Model frame height in pixels (DynamiCrafter-512: 320)."})
    width: int = field(metadata={"help": "Model frame width in pixels (DynamiCrafter-512: 512)."})
    mode: Literal["letterbox", "crop"] = field(
        default="letterbox", metadata={"help": "letterbox (whole frame, bars ignored) or crop (centre crop)."})

    def __post_init__(self) -> None:
        if self.mode not in ("letterbox", "crop"):
            raise InputError(f"--geometry must be letterbox or crop, got {self.mode!r}.")
        if min(self.height, self.width) < 16:
            raise InputError(f"The model frame {self.width}×{self.height} is too small to compare frames on.")

    def describe(self) -> str:
        if self.mode == "letterbox":
            return (f"ground truth letterboxed into the model's {self.width}×{self.height} frame (scaled to fit, "
                    "edge-repeated bars); generated and ground-truth clips compared on the picture, bars left out")
        return (f"ground truth scaled to cover the model's {self.width}×{self.height} frame and centre-cropped; "
                "generated and ground-truth clips compared on that same crop")

    def _layout(self, h: int, w: int) -> tuple[float, int, int, Box]:
        """(scale, scaled height, scaled width, content box) for an h×w source frame."""
        pick = min if self.mode == "letterbox" else max
        s = pick(self.height / h, self.width / w)
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        if self.mode == "letterbox":
            y0, x0 = (self.height - sh) // 2, (self.width - sw) // 2
            return s, sh, sw, (y0, y0 + sh, x0, x0 + sw)
        return s, sh, sw, (0, self.height, 0, self.width)

    def content_box(self, shape: tuple[int, ...]) -> Box:
        return self._layout(shape[0], shape[1])[3]

    def align(self, frame: np.ndarray, interpolation: int | None = None) -> np.ndarray:
        """`frame` (H×W×C or H×W) in the model's frame."""
        h, w = frame.shape[:2]
        s, sh, sw, _ = self._layout(h, w)
        if interpolation is None:
            interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        scaled = cv2.resize(frame, (sw, sh), interpolation=interpolation)
        if self.mode == "crop":
            y0, x0 = (sh - self.height) // 2, (sw - self.width) // 2
            return np.ascontiguousarray(scaled[y0:y0 + self.height, x0:x0 + self.width])
        top, left = (self.height - sh) // 2, (self.width - sw) // 2
        return cv2.copyMakeBorder(scaled, top, self.height - sh - top, left, self.width - sw - left,
                                  cv2.BORDER_REPLICATE)

    def align_mask(self, mask: np.ndarray) -> np.ndarray:
        """A subject mask in the model's frame; the bars never hold the subject."""
        aligned = self.align(mask.astype(np.uint8), cv2.INTER_NEAREST).astype(bool)
        y0, y1, x0, x1 = self.content_box(mask.shape)
        inside = np.zeros_like(aligned)
        inside[y0:y1, x0:x1] = True
        return aligned & inside

    def compared(self, frames: list[np.ndarray], source_shape: tuple[int, ...]) -> list[np.ndarray]:
        """The pixels the metrics see: each model-frame picture cut to the source's content box."""
        y0, y1, x0, x1 = self.content_box(source_shape)
        for f in frames:
            if f.shape[:2] != (self.height, self.width):
                raise ValueError(f"a generated frame is {f.shape[1]}×{f.shape[0]}, not the model's "
                                 f"{self.width}×{self.height}")
        return [np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames]

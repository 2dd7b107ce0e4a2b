"""Subject removal: fill the subject's (slightly grown) mask with plausible background.

With an SDXL pipeline at hand the hole is inpainted by diffusion, prompted with the shot's
background; without one OpenCV's Telea inpainting fills it from the surrounding pixels. Either
way only the grown mask changes, and the mask and box are kept for the redraw (AnyDoor) step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

from storyagent.media.box import Box, mask_box
from storyagent.models.removal.config import RemovalConfig


@dataclass
class RemovalResult:
    """A frame with its subject removed, and where the subject was."""

    image: np.ndarray
    """H×W×3 uint8, the frame with the subject's region refilled."""
    mask: np.ndarray
    """H×W bool, the grown mask that was refilled: where the redraw may put the subject."""
    subject_mask: np.ndarray
    """H×W bool, the subject's mask as given."""
    box: Box
    """The subject mask's box (top, bottom, left, right; exclusive ends), for the redraw."""
    method: Literal["diffusion", "opencv"]
    """Which inpainting refilled the hole."""


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` grown by `pixels` in every direction (an elliptical kernel, so corners stay round)."""
    if pixels <= 0:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


class SubjectRemover:
    """Removes a masked subject; diffusion inpainting when an inpainting pipeline is given, else OpenCV."""

    def __init__(self, config: RemovalConfig | None = None, inpaint_pipe=None) -> None:
        self.config = config or RemovalConfig()
        self.inpaint_pipe = inpaint_pipe

    @classmethod
    def from_sdxl(cls, sdxl, config: RemovalConfig | None = None) -> SubjectRemover:
        """Share an already loaded SDXL's weights for inpainting (no second copy in memory)."""
        from diffusers import StableDiffusionXLInpaintPipeline

        pipe = StableDiffusionXLInpaintPipeline.from_pipe(sdxl)
        pipe.set_progress_bar_config(disable=True)
        return cls(config, pipe)

    @property
    def method(self) -> Literal["diffusion", "opencv"]:
        return "diffusion" if self.inpaint_pipe is not None else "opencv"

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        background: str = "",
        avoid: str = "",
        seed: int = 0,
    ) -> RemovalResult:
        """Refill `mask` (H×W bool) in `image` (H×W×3 uint8). `background` describes what belongs
        there, `avoid` what must not come back (the subject's words), both for diffusion only."""
        image = np.ascontiguousarray(image[..., :3])
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
        subject = mask.astype(bool)
        box = mask_box(subject)
        cfg = self.config
        # 1. Grow the mask: SAM's edge sits on the subject's outline, its soft border lies outside.
        grow = max(cfg.min_dilate_px, round(cfg.dilate_fraction * max(image.shape[:2])))
        hole = dilate_mask(subject, grow)

        # 2. Fill the hole.
        if self.inpaint_pipe is None:
            filled = cv2.inpaint(image, hole.astype(np.uint8) * 255, cfg.opencv_radius, cv2.INPAINT_TELEA)
        else:
            filled = self._diffuse(image, hole, background, avoid, seed)

        # 3. Pixels outside the hole stay exactly as drawn (diffusion's VAE round trip would blur them).
        out = np.where(hole[..., None], filled, image).astype(np.uint8)
        return RemovalResult(image=out, mask=hole, subject_mask=subject, box=box, method=self.method)

    def _diffuse(self, image: np.ndarray, hole: np.ndarray, background: str, avoid: str, seed: int) -> np.ndarray:
        """The SDXL inpainting of `hole`, prompted with `background`, at the image's own size."""
        height, width = image.shape[:2]
        # SDXL works on multiples of 8; pad by edge replication and crop back.
        ph, pw = -height % 8, -width % 8
        padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
        padded_hole = np.pad(hole, ((0, ph), (0, pw)), mode="constant")
        cfg = self.config
        result = self.inpaint_pipe(
            prompt=background or "empty background, no people, no animals",
            negative_prompt=avoid or None,
            image=Image.fromarray(padded),
            mask_image=Image.fromarray(padded_hole.astype(np.uint8) * 255),
            height=height + ph,
            width=width + pw,
            strength=cfg.strength,
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        ).images[0]
        return (np.clip(result, 0, 1) * 255).round().astype(np.uint8)[:height, :width]

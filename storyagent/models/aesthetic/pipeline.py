"""Aesthetic score of images: CLIP ViT-L/14 image embedding, L2-normalised, into the LAION MLP head.

Schuhmann et al., "LAION improved aesthetic predictor" (improved-aesthetic-predictor, v2
`sac+logos+ava1-l14-linearMSE.pth`): trained on SAC, LAION-Logos and AVA ratings; scores are on
the AVA 1..10 scale, and LAION-Aesthetics uses 5, 6 and 6.5 as cut-offs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.models.aesthetic.head import AestheticHead
from storyagent.weights import resolve_weights


def image_embeddings(output: object) -> torch.Tensor:
    """Projected image embeddings from any transformers CLIP output (tensor, or an output object)."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"no image embeddings in {type(output).__name__}")


def clip_vision_config(clip_dir: str | os.PathLike[str]):
    """The vision tower's config of a full CLIP checkpoint, with the model's projection size.

    A full `CLIPModel` checkpoint keeps `projection_dim` at the top level; the vision sub-config
    may carry a stale default, and loading the vision tower alone must use the real one.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(clip_dir), local_files_only=True)
    if getattr(config, "vision_config", None) is None:
        return config
    vision = config.vision_config
    vision.projection_dim = config.projection_dim
    return vision


class AestheticPredictor:
    """`AestheticPredictor.from_pretrained()(images) -> scores`, one float per image."""

    def __init__(self, vision_model: torch.nn.Module, processor, head: AestheticHead) -> None:
        self.vision_model = vision_model.eval()
        self.processor = processor
        self.head = head.eval()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, torch_dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", *, clip_path: str | os.PathLike[str] | None = None,
                        head_path: str | os.PathLike[str] | None = None) -> AestheticPredictor:
        """A folder written by `save_pretrained` (`image_encoder/`, `head/`), or CLIP ViT-L/14 from `clip_path`
        and the head from `head_path`, each defaulting to the cache ("clip-vit-l-14", "laion-aesthetic-v2")."""
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        if path is not None:
            clip_path = clip_path or Path(path) / "image_encoder"
            head_path = head_path or Path(path) / "head"
        clip_dir = resolve_weights("clip-vit-l-14", clip_path)
        head = AestheticHead.from_pretrained(head_path, torch_dtype=torch_dtype, device=device)
        vision = CLIPVisionModelWithProjection.from_pretrained(
            str(clip_dir), config=clip_vision_config(clip_dir), local_files_only=True, dtype=torch_dtype)
        processor = CLIPImageProcessor.from_pretrained(str(clip_dir), local_files_only=True)
        if vision.config.projection_dim != head.config.embed_dim:
            raise ValueError(f"CLIP embeds {vision.config.projection_dim}-d but the head expects {head.config.embed_dim}-d")
        return cls(vision.to(device), processor, head)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """`image_encoder/` (the CLIP vision tower and its image processor) and `head/`."""
        folder = Path(path)
        self.vision_model.save_pretrained(folder / "image_encoder")
        self.processor.save_pretrained(folder / "image_encoder")
        self.head.save_pretrained(folder / "head")
        return folder

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray | Image.Image], batch_size: int = 16) -> list[float]:
        scores: list[float] = []
        dtype = next(self.head.parameters()).dtype
        for start in range(0, len(images), batch_size):
            batch = [Image.fromarray(im) if isinstance(im, np.ndarray) else im.convert("RGB")
                     for im in images[start:start + batch_size]]
            # 1. CLIP preprocessing: shortest side to 224 (bicubic), centre crop, CLIP mean/std.
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device, dtype)
            # 2. The projected image embedding (768-d for ViT-L/14), as `clip.encode_image` gives.
            emb = image_embeddings(self.vision_model(pixel_values=pixels))
            # 3. The head was trained on unit-length embeddings.
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            # 4. The MLP maps the embedding to the AVA scale.
            scores.extend(self.head(emb).float().cpu().tolist())
        return scores

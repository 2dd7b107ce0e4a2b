"""CLIP-based no-reference metrics: text–frame alignment (CLIP-score) and frame-to-frame
smoothness (CLIP-temp), with any transformers `CLIPModel` from a local path or the cache."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from storyagent.eval.frames import VideoLike, as_video
from storyagent.weights import resolve_weights


def _embeds(output: object) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"no embeddings in {type(output).__name__}")


class CLIPEncoder:
    """Unit-length CLIP embeddings of images and texts."""

    def __init__(self, model, image_processor, tokenizer) -> None:
        self.model = model.eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str = "cpu") -> CLIPEncoder:
        """`path` or the cached `clip-vit-l-14` (the aesthetic predictor's CLIP); no network."""
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        folder = str(resolve_weights("clip-vit-l-14", path))
        model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device)
        return cls(model, CLIPImageProcessor.from_pretrained(folder, local_files_only=True),
                   AutoTokenizer.from_pretrained(folder, local_files_only=True))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: Sequence[np.ndarray], batch_size: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            batch = [Image.fromarray(im) for im in images[i:i + batch_size]]
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            out.append(_embeds(self.model.get_image_features(pixel_values=pixels)).float().cpu())
        emb = torch.cat(out)
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        emb = _embeds(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                   attention_mask=tokens["attention_mask"].to(self.device))).float().cpu()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _uint8_frames(video: VideoLike) -> list[np.ndarray]:
    v = as_video(video)
    return list((v.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())


def clip_score_frames(video: VideoLike, text: str, encoder: CLIPEncoder) -> np.ndarray:
    """Per-frame CLIP-score: 100 · max(cos(E_img(frame), E_txt(text)), 0)."""
    images = encoder.embed_images(_uint8_frames(video))
    txt = encoder.embed_texts([text])
    return (100 * (images @ txt.T).squeeze(1).clamp_min(0)).numpy()


def clip_score(video: VideoLike, text: str, encoder: CLIPEncoder) -> float:
    """CLIP-score: text–video alignment, the frame mean of 100 · max(cos(image, text), 0).

    Hessel et al., "CLIPScore" (EMNLP 2021) define the image–caption score from the cosine of
    CLIP embeddings; EvalCrafter (Liu et al., CVPR 2024) and the StoryAgent paper average it over
    the frames of a clip. The ×100 scale follows torchmetrics' CLIPScore. Higher is better.
    """
    return float(clip_score_frames(video, text, encoder).mean())


def clip_temp_pairs(video: VideoLike, encoder: CLIPEncoder) -> np.ndarray:
    """Cosine similarity of the CLIP image embeddings of each consecutive frame pair, (T-1,)."""
    emb = encoder.embed_images(_uint8_frames(video))
    return (emb[:-1] * emb[1:]).sum(dim=-1).numpy()


def clip_temp(video: VideoLike, encoder: CLIPEncoder) -> float:
    """CLIP-temp: the mean cosine similarity between CLIP image embeddings of consecutive frames.

    EvalCrafter's temporal-consistency metric; 1 for a clip whose frames are identical, lower
    when content changes or flickers from frame to frame. A one-frame clip scores 1.
    """
    pairs = clip_temp_pairs(video, encoder)
    return float(pairs.mean()) if len(pairs) else 1.0

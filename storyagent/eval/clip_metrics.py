"""CLIP-based no-reference metrics: text–frame alignment (CLIP-score) and frame-to-frame
smoothness (CLIP-temp), as EvalCrafter (Liu et al., CVPR 2024) computes them with CLIP ViT-B/32,
the model the StoryAgent paper's Table 2 uses; any transformers `CLIPModel` from a local path or
the cache works."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from storyagent.errors import InputError

from storyagent.eval.frames import VideoLike, as_video
from storyagent.weights import resolve_weights

PROTOCOLS = ("evalcrafter", "torchmetrics")


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
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str = "cpu",
                        name: str = "clip-vit-l-14") -> CLIPEncoder:
        """`path` or the cached weights `name` (`clip-vit-b-32` for the CLIP metrics as EvalCrafter
        computes them, `clip-vit-l-14` for the aesthetic predictor); no network."""
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        folder = str(resolve_weights(name, path))
        model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device)
        return cls(model, CLIPImageProcessor.from_pretrained(folder, local_files_only=True),
                   AutoTokenizer.from_pretrained(folder, local_files_only=True))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @torch.no_grad()
    def embed_pixels(self, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Unit-length embeddings of (N, 3, S, S) pixel tensors given to the model as they are."""
        out = [_embeds(self.model.get_image_features(pixel_values=pixels[i:i + batch_size].to(self.device))).float().cpu()
               for i in range(0, len(pixels), batch_size)]
        emb = torch.cat(out)
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

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
    def embed_texts(self, texts: Sequence[str], attention_mask: bool = True) -> torch.Tensor:
        """Unit-length text embeddings; `attention_mask=False` as EvalCrafter calls the model (one text, no padding)."""
        max_len = min(getattr(self.model.config.text_config, "max_position_embeddings", 77), 77)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        mask = tokens["attention_mask"].to(self.device) if attention_mask else None
        emb = _embeds(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                   attention_mask=mask)).float().cpu()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _uint8_frames(video: VideoLike) -> list[np.ndarray]:
    v = as_video(video)
    return list((v.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())


def _evalcrafter_pixels(frames: list[np.ndarray], size: int, resize: str) -> torch.Tensor:
    """Frames as EvalCrafter feeds them to CLIP: RGB resized to size×size, float in [0, 255], no
    CLIP mean/std normalisation. `resize="cv2"` (its CLIP-score: `cv2.resize`, bilinear) or
    `"torchvision"` (its CLIP-temp: `transforms.Resize`, bilinear with antialiasing)."""
    if resize == "cv2":
        return torch.stack([torch.from_numpy(cv2.resize(f, (size, size))).permute(2, 0, 1).float() for f in frames])
    from torchvision.transforms import Resize

    op = Resize([size, size])
    return torch.stack([op(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float()) for f in frames])


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"CLIP metric protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}.")


def clip_score_frames(video: VideoLike, text: str, encoder: CLIPEncoder, protocol: str = "evalcrafter") -> np.ndarray:
    """Per-frame cosine similarity of the CLIP image and text embeddings (see `clip_score`)."""
    _check_protocol(protocol)
    frames = _uint8_frames(video)
    if protocol == "evalcrafter":
        images = encoder.embed_pixels(_evalcrafter_pixels(frames, encoder.image_size, "cv2"))
        txt = encoder.embed_texts([text], attention_mask=False)
    else:
        images, txt = encoder.embed_images(frames), encoder.embed_texts([text])
    return (images @ txt.T).squeeze(1).numpy()


def clip_score(video: VideoLike, text: str, encoder: CLIPEncoder, protocol: str = "evalcrafter") -> float:
    """CLIP-score: text–video alignment, the frame mean of cos(E_img(frame), E_txt(text)), in [-1, 1].

    `protocol="evalcrafter"` (default) computes it as EvalCrafter's `calculate_clip_score`
    (metrics/Scores_with_CLIP, the code the StoryAgent paper's Table 2 cites, where CLIP-score is
    0.2053 with ViT-B/32): frames resized to the CLIP input size by `cv2.resize` and fed as floats
    in [0, 255] without CLIP's mean/std normalisation, text tokens without an attention mask, plain
    cosine, no clamping and no ×100. `protocol="torchmetrics"` uses CLIP's own preprocessing and
    equals torchmetrics' `CLIPScore` / 100 (which clamps the mean at 0). Higher is better.
    """
    score = float(clip_score_frames(video, text, encoder, protocol).mean())
    return score if protocol == "evalcrafter" else max(score, 0.0)


def clip_temp_pairs(video: VideoLike, encoder: CLIPEncoder, protocol: str = "evalcrafter") -> np.ndarray:
    """Cosine similarity of the CLIP image embeddings of each consecutive frame pair, (T-1,)."""
    _check_protocol(protocol)
    frames = _uint8_frames(video)
    if protocol == "evalcrafter":
        emb = encoder.embed_pixels(_evalcrafter_pixels(frames, encoder.image_size, "torchvision"))
    else:
        emb = encoder.embed_images(frames)
    return (emb[:-1] * emb[1:]).sum(dim=-1).numpy()


def clip_temp(video: VideoLike, encoder: CLIPEncoder, protocol: str = "evalcrafter") -> float:
    """CLIP-temp: the mean cosine similarity between CLIP image embeddings of consecutive frames.

    As EvalCrafter's `calculate_clip_temp_score` computes it (default `protocol="evalcrafter"`:
    frames resized by torchvision's `Resize` to the CLIP input size, floats in [0, 255], no CLIP
    normalisation); `"torchmetrics"` uses CLIP's own preprocessing. 1 for a clip whose frames are
    identical; a one-frame clip scores 1.
    """
    pairs = clip_temp_pairs(video, encoder, protocol)
    return float(pairs.mean()) if len(pairs) else 1.0

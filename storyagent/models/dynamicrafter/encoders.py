"""Thin wrappers around transformers' CLIP towers that produce what DynamiCrafter conditions on.

* Text: OpenCLIP ViT-H/14's penultimate transformer layer followed by the final LayerNorm,
  77 tokens (padded with token id 0, as `open_clip.tokenize` pads).
* Image: CLIP ViT-H/14 vision tokens after the last transformer layer and before the final
  LayerNorm (257 x 1280), from an image resized to 224 px with antialiased bicubic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class TextEncoder(nn.Module):
    """prompts -> (b, max_length, width) context tokens."""

    def __init__(self, model, tokenizer, layer: str = "penultimate", max_length: int = 77, pad_id: int = 0) -> None:
        super().__init__()
        if layer not in ("last", "penultimate"):
            raise ValueError(f"layer must be 'last' or 'penultimate', not {layer!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_length = max_length
        self.pad_id = pad_id

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, truncation=True, max_length=self.max_length).input_ids
        out = torch.full((len(prompts), self.max_length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            out[i, : len(row)] = torch.tensor(row[: self.max_length])
        return out

    def forward(self, prompts: list[str] | None = None, input_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Encode prompts, token ids, or token embeddings (b, L, width; LoRA-BE swaps in learned ones)."""
        device = next(self.model.parameters()).device
        if inputs_embeds is None and input_ids is None:
            input_ids = self.tokenize(prompts or [""])
        # transformers 5 puts the tower at the top level; older versions under `.text_model`.
        text = getattr(self.model, "text_model", self.model)
        if inputs_embeds is not None:
            positions = torch.arange(inputs_embeds.shape[1], device=device)
            hidden = inputs_embeds.to(device) + text.embeddings.position_embedding(positions)[None]
        else:
            hidden = text.embeddings(input_ids=input_ids.to(device))
        length = hidden.shape[1]
        # Additive causal mask (1, 1, L, L), as OpenCLIP's text tower uses.
        causal = torch.full((length, length), float("-inf"), device=device, dtype=hidden.dtype).triu(1)[None, None]
        layers = text.encoder.layers
        stop = len(layers) - (1 if self.layer == "penultimate" else 0)
        for layer in layers[:stop]:
            out = layer(hidden, attention_mask=causal)
            hidden = out[0] if isinstance(out, tuple) else out
        return text.final_layer_norm(hidden)


class ImageEncoder(nn.Module):
    """images (b, 3, H, W) in [-1, 1] -> (b, 1 + patches, width) tokens before the final LayerNorm."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=True, antialias=True)
        x = (x + 1.0) / 2.0
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        pixels = self.preprocess(images.to(param.device)).to(param.dtype)
        # transformers' last_hidden_state is the encoder output; post_layernorm only touches the pooled token.
        return self.model(pixel_values=pixels).last_hidden_state

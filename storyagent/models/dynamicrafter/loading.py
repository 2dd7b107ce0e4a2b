"""DynamiCrafter on disk: the converted folder's components and the CLIP encoders (the convert-once
cache for official `model.ckpt` files is `convert.converted_once`, which writes through these helpers).

Folder layout (diffusers-style subfolders): `config.json` (the `DynamiCrafterConfig`), `unet/`,
`vae/`, `resampler/` (each a `diffusion_pytorch_model.safetensors`), and optionally
`text_encoder/`, `image_encoder/` (transformers CLIP: `config.json` + `model.safetensors`) and
`tokenizer/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from storyagent.errors import WeightsNotFoundError
from storyagent.fileio import atomic_save_safetensors, atomic_write_json
from storyagent.models.dynamicrafter.encoders import ImageEncoder, TextEncoder

COMPONENTS = ("unet", "vae", "resampler")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# Buffers transformers rebuilds itself; a converted tower need not carry them.
POSITION_IDS = ("embeddings.position_ids",)


# ---------------------------------------------------------------------------------- components
def save_component(folder: Path, name: str, state: dict[str, torch.Tensor]) -> None:
    atomic_save_safetensors(Path(folder) / name / WEIGHTS_NAME,
                            {k: v.detach().contiguous().cpu() for k, v in state.items()})


def missing_components(folder: Path) -> list[str]:
    return [name for name in COMPONENTS if not (folder / name / WEIGHTS_NAME).exists()]


def load_component(module: nn.Module, folder: Path, name: str) -> nn.Module:
    module.load_state_dict(load_file(folder / name / WEIGHTS_NAME), strict=True, assign=True)
    return module


# ---------------------------------------------------------------------------------- CLIP encoders
def clip_config(kind: str, fields: dict[str, Any], heads: int | None = None):
    """A transformers CLIPTextConfig ("text") or CLIPVisionConfig ("vision") from `fields`."""
    from transformers import CLIPTextConfig, CLIPVisionConfig

    fields = {k: v for k, v in fields.items() if k not in ("architectures", "model_type")}
    if heads:
        fields["num_attention_heads"] = heads
    return (CLIPTextConfig if kind == "text" else CLIPVisionConfig)(**fields)


def _clip_model_class(config):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionModel

    return CLIPTextModel if isinstance(config, CLIPTextConfig) else CLIPVisionModel


def build_clip_on_meta(config) -> nn.Module:
    with torch.device("meta"):
        return _clip_model_class(config)(config)


def save_clip(folder: Path, state: dict[str, torch.Tensor], config) -> None:
    """A CLIP tower as `config.json` + `model.safetensors` (what `load_encoders` reads)."""
    atomic_write_json(folder / "config.json", {**config.to_dict(), "architectures": [_clip_model_class(config).__name__]})
    atomic_save_safetensors(folder / "model.safetensors",
                            {k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata={"format": "pt"})


def _load_clip(path: Path, kind: str) -> nn.Module | None:
    if not (path / "model.safetensors").exists():
        return None
    config = clip_config(kind, json.loads((path / "config.json").read_text()))
    model = _clip_model_class(config)(config)
    state = {k.split("_model.", 1)[1] if k.startswith(("text_model.", "vision_model.")) else k: v
             for k, v in load_file(path / "model.safetensors").items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise WeightsNotFoundError(f"{path} lacks {len(missing)} weights ({missing[0]}, ...); convert the "
                                   "checkpoint again with storyagent.models.dynamicrafter.convert.")
    return model.eval()


def load_encoders(folder: Path) -> tuple[TextEncoder | None, ImageEncoder | None]:
    """The CLIP towers (and tokenizer) of a converted folder, where present."""
    from transformers import CLIPTokenizer

    text_model = _load_clip(folder / "text_encoder", "text")
    vision_model = _load_clip(folder / "image_encoder", "vision")
    text_encoder = None
    if text_model is not None:
        tok_dir = folder / "tokenizer"
        if not tok_dir.exists():
            raise WeightsNotFoundError(
                f"{folder} has a text encoder but no tokenizer/; copy the OpenCLIP ViT-H/14 tokenizer there "
                "(`storyagent weights fetch open-clip-vit-h-14`, then its tokenizer files into tokenizer/)."
            )
        text_encoder = TextEncoder(text_model, CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True))
    return text_encoder, ImageEncoder(vision_model) if vision_model is not None else None


def save_encoders(folder: Path, text_encoder: TextEncoder | None, image_encoder: ImageEncoder | None) -> None:
    if text_encoder is not None:
        save_clip(folder / "text_encoder", text_encoder.model.state_dict(), text_encoder.model.config)
        text_encoder.tokenizer.save_pretrained(folder / "tokenizer")
    if image_encoder is not None:
        save_clip(folder / "image_encoder", image_encoder.model.state_dict(), image_encoder.model.config)

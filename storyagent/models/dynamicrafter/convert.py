"""Convert an official DynamiCrafter `model.ckpt` into the safetensors folder the pipeline loads.

    python -m storyagent.models.dynamicrafter.convert model.ckpt OUT_DIR [--variant 512]

The official state dict names its parts `model.diffusion_model.*` (UNet), `first_stage_model.*`
(VAE), `image_proj_model.*` (Resampler), `cond_stage_model.model.*` (OpenCLIP text tower) and
`embedder.model.*` (OpenCLIP vision tower). Each part is renamed to our modules' names here; the
pickle is read only with `torch.load(weights_only=True, mmap=True)` (see storyagent.weights).

Output folder: `config.json`, `unet.safetensors`, `vae.safetensors`, `resampler.safetensors` and,
when the checkpoint holds them, `text_encoder/` and `image_encoder/` (transformers CLIP layout).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch

from storyagent.models.dynamicrafter.config import DynamiCrafterConfig, UNetConfig, variant_config
from storyagent.models.dynamicrafter.unet import plan_stages

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
RESAMPLER_PREFIX = "image_proj_model."
TEXT_PREFIX = "cond_stage_model.model."
VISION_PREFIX = "embedder.model."

_RESBLOCK = [
    ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."),
]


def _rename_resblock(rest: str) -> str:
    for old, new in _RESBLOCK:
        if rest.startswith(old):
            return new + rest[len(old):]
    # "temopral_conv" is the upstream spelling.
    m = re.match(r"temopral_conv\.conv(\d)\.(\d)\.(.*)", rest)
    if m:
        n, idx, tail = m.groups()
        return f"temporal_conv.conv{n}.{'norm' if idx == '0' else 'conv'}.{tail}"
    raise KeyError(rest)


def _rename_slot(slot: str, rest: str) -> str:
    if slot in ("resnet", "resnet2"):
        return f"{slot}.{_rename_resblock(rest)}"
    if slot == "resample":
        # Downsample's conv is called "op" upstream, Upsample's "conv".
        return "resample." + re.sub(r"^op\.", "conv.", rest)
    return f"{slot}.{rest}"


def unet_key(key: str, cfg: UNetConfig) -> str:
    """Official UNet key (without the `model.diffusion_model.` prefix) -> our key."""
    down, mid, up = plan_stages(cfg)
    simple = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
              "fps_embedding.0.": "fs_embedding.linear_1.", "fps_embedding.2.": "fs_embedding.linear_2.",
              "input_blocks.0.0.": "conv_in.", "init_attn.0.": "init_temporal_attn.",
              "out.0.": "norm_out.", "out.2.": "conv_out."}
    for old, new in simple.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.*)", key)
    if m:
        kind, i, j, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if kind == "input_blocks":
            stage, plans, name = i - 1, down, "down_stages"
        else:
            stage, plans, name = i, up, "up_stages"
        return f"{name}.{stage}.{_rename_slot(plans[stage].layout[j], rest)}"
    m = re.match(r"middle_block\.(\d+)\.(.*)", key)
    if m:
        return f"mid_stage.{_rename_slot(mid.layout[int(m.group(1))], m.group(2))}"
    raise KeyError(f"Unexpected DynamiCrafter UNet key {key!r}")


def convert_unet(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not key.startswith(UNET_PREFIX):
            continue
        new = unet_key(key[len(UNET_PREFIX):], cfg)
        # Transformers' 1x1 conv projections (init_attn, use_linear=False) become Linear weights.
        if re.search(r"\.proj_(in|out)\.weight$", new) and value.ndim > 2:
            value = value.reshape(value.shape[0], value.shape[1])
        out[new] = value
    return out


def convert_resampler(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not key.startswith(RESAMPLER_PREFIX):
            continue
        k = key[len(RESAMPLER_PREFIX):]
        k = re.sub(r"^layers\.(\d+)\.0\.", r"layers.\1.attn.", k)
        k = re.sub(r"^layers\.(\d+)\.1\.0\.", r"layers.\1.ff.norm.", k)
        k = re.sub(r"^layers\.(\d+)\.1\.1\.", r"layers.\1.ff.fc1.", k)
        k = re.sub(r"^layers\.(\d+)\.1\.3\.", r"layers.\1.ff.fc2.", k)
        out[k] = value
    return out


def vae_key(key: str, levels: int) -> str:
    """Official ddconfig VAE key (without `first_stage_model.`) -> diffusers AutoencoderKL key."""
    k = key
    k = re.sub(r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2.", k)
    k = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", k)
    # Decoder levels are stored lowest-resolution-last upstream and first in diffusers.
    k = re.sub(r"^decoder\.up\.(\d+)\.block\.(\d+)\.",
               lambda m: f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.resnets.{m.group(2)}.", k)
    k = re.sub(r"^decoder\.up\.(\d+)\.upsample\.",
               lambda m: f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0.", k)
    k = re.sub(r"^(encoder|decoder)\.mid\.block_(\d)\.", lambda m: f"{m.group(1)}.mid_block.resnets.{int(m.group(2)) - 1}.", k)
    k = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.norm\.", r"\1.mid_block.attentions.0.group_norm.", k)
    k = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.(q|k|v)\.", r"\1.mid_block.attentions.0.to_\2.", k)
    k = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.proj_out\.", r"\1.mid_block.attentions.0.to_out.0.", k)
    k = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", k)
    k = k.replace(".nin_shortcut.", ".conv_shortcut.")
    return k


def convert_vae(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not key.startswith(VAE_PREFIX) or key.startswith(VAE_PREFIX + "loss"):
            continue
        new = vae_key(key[len(VAE_PREFIX):], levels)
        if ".attentions.0.to_" in new and new.endswith("weight") and value.ndim == 4:
            value = value[:, :, 0, 0]  # 1x1 conv -> Linear
        out[new] = value
    return out


# --- OpenCLIP towers -> transformers CLIP ------------------------------------------------------

def _openclip_blocks(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    pattern = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.(.*)")
    for key, value in state.items():
        m = pattern.match(key)
        if not m:
            continue
        i, rest = m.groups()
        base = f"encoder.layers.{i}."
        if rest == "attn.in_proj_weight" or rest == "attn.in_proj_bias":
            kind = rest.rsplit("_", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{base}self_attn.{name}.{kind}"] = part.clone()
            continue
        mapping = {"attn.out_proj.": "self_attn.out_proj.", "ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.",
                   "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
        for old, new in mapping.items():
            if rest.startswith(old):
                out[base + new + rest[len(old):]] = value
                break
    return out


def convert_text_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower (`cond_stage_model.model.*`) -> transformers CLIPTextModel state dict
    (top-level names, as transformers 5 uses; the loader also accepts a `text_model.` prefix)."""
    p = TEXT_PREFIX
    out = _openclip_blocks(state, p + "transformer.")
    out["embeddings.token_embedding.weight"] = state[p + "token_embedding.weight"]
    out["embeddings.position_embedding.weight"] = state[p + "positional_embedding"]
    out["final_layer_norm.weight"] = state[p + "ln_final.weight"]
    out["final_layer_norm.bias"] = state[p + "ln_final.bias"]
    return out


def convert_image_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP vision tower (`embedder.model.visual.*`) -> transformers CLIPVisionModel state dict."""
    p = VISION_PREFIX + "visual."
    out = _openclip_blocks(state, p + "transformer.")
    out["embeddings.patch_embedding.weight"] = state[p + "conv1.weight"]
    out["embeddings.class_embedding"] = state[p + "class_embedding"]
    out["embeddings.position_embedding.weight"] = state[p + "positional_embedding"]
    out["pre_layrnorm.weight"] = state[p + "ln_pre.weight"]
    out["pre_layrnorm.bias"] = state[p + "ln_pre.bias"]
    out["post_layernorm.weight"] = state[p + "ln_post.weight"]
    out["post_layernorm.bias"] = state[p + "ln_post.bias"]
    return out


def text_encoder_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """transformers CLIPTextConfig fields read off the OpenCLIP text tower's shapes."""
    p = TEXT_PREFIX
    vocab, width = state[p + "token_embedding.weight"].shape
    layers = 1 + max(int(k[len(p + "transformer.resblocks."):].split(".")[0])
                     for k in state if k.startswith(p + "transformer.resblocks."))
    return dict(vocab_size=vocab, hidden_size=width, intermediate_size=state[p + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                num_hidden_layers=layers, num_attention_heads=max(1, width // 64),
                max_position_embeddings=state[p + "positional_embedding"].shape[0], hidden_act="gelu",
                layer_norm_eps=1e-5, projection_dim=state.get(p + "text_projection", torch.empty(0, width)).shape[-1],
                bos_token_id=49406, eos_token_id=49407, pad_token_id=0)


def image_encoder_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """transformers CLIPVisionConfig fields read off the OpenCLIP vision tower's shapes."""
    p = VISION_PREFIX + "visual."
    width, _, patch, _ = state[p + "conv1.weight"].shape
    positions = state[p + "positional_embedding"].shape[0]
    grid = round((positions - 1) ** 0.5)
    layers = 1 + max(int(k[len(p + "transformer.resblocks."):].split(".")[0])
                     for k in state if k.startswith(p + "transformer.resblocks."))
    return dict(hidden_size=width, intermediate_size=state[p + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                num_hidden_layers=layers, num_attention_heads=max(1, width // 80), patch_size=patch,
                image_size=grid * patch, hidden_act="gelu", layer_norm_eps=1e-5,
                projection_dim=state[p + "proj"].shape[-1] if p + "proj" in state else width)


def split_checkpoint(state: dict[str, torch.Tensor], config: DynamiCrafterConfig) -> dict[str, dict[str, torch.Tensor]]:
    """The official state dict split into our parts, renamed. Encoders only when present."""
    parts = {
        "unet": convert_unet(state, config.unet),
        "vae": convert_vae(state, len(config.vae.ch_mult)),
        "resampler": convert_resampler(state),
    }
    if any(k.startswith(TEXT_PREFIX) for k in state):
        parts["text_encoder"] = convert_text_encoder(state)
    if any(k.startswith(VISION_PREFIX) for k in state):
        parts["image_encoder"] = convert_image_encoder(state)
    return parts


def convert_checkpoint(ckpt: str | Path, out_dir: str | Path, config: DynamiCrafterConfig | None = None,
                       text_heads: int | None = None, vision_heads: int | None = None,
                       tokenizer_dir: str | Path | None = None) -> Path:
    """Official `model.ckpt` -> a folder `DynamiCrafterPipeline.from_pretrained` loads.

    The checkpoint holds no tokenizer; pass `tokenizer_dir` (a folder with the OpenCLIP ViT-H/14
    CLIP tokenizer files, e.g. the `open-clip-vit-h-14` weights) to copy it into `tokenizer/`.
    Head counts are not stored in the checkpoint; the defaults (width // 64 for text,
    width // 80 for vision) are ViT-H/14's.
    """
    from storyagent.fileio import atomic_save_safetensors, atomic_write_json
    from storyagent.weights import load_pickled_state_dict

    config = config or variant_config("512")
    state = load_pickled_state_dict(ckpt)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        from storyagent.errors import UnsafeCheckpointError

        raise UnsafeCheckpointError(f"{ckpt} holds non-tensor entries ({bad[0]!r}, ...); it is not a plain state dict.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_checkpoint(state, config)
    for name in ("unet", "vae", "resampler"):
        atomic_save_safetensors(out / f"{name}.safetensors", {k: v.contiguous() for k, v in parts[name].items()})
    if "text_encoder" in parts:
        cfg = text_encoder_config(state)
        if text_heads:
            cfg["num_attention_heads"] = text_heads
        _save_hf(out / "text_encoder", parts["text_encoder"], cfg, "CLIPTextModel")
    if "image_encoder" in parts:
        cfg = image_encoder_config(state)
        if vision_heads:
            cfg["num_attention_heads"] = vision_heads
        _save_hf(out / "image_encoder", parts["image_encoder"], cfg, "CLIPVisionModel")
    if tokenizer_dir is not None:
        from transformers import CLIPTokenizer

        CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(out / "tokenizer")
    atomic_write_json(out / "config.json", config.to_dict())
    return out


def _save_hf(folder: Path, state: dict[str, torch.Tensor], cfg: dict[str, Any], arch: str) -> None:
    from storyagent.fileio import atomic_save_safetensors, atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    model_type = "clip_text_model" if arch == "CLIPTextModel" else "clip_vision_model"
    atomic_write_json(folder / "config.json", {**cfg, "architectures": [arch], "model_type": model_type})
    atomic_save_safetensors(folder / "model.safetensors", {k: v.contiguous() for k, v in state.items()},
                            metadata={"format": "pt"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert an official DynamiCrafter model.ckpt to safetensors.")
    parser.add_argument("checkpoint", help="path to model.ckpt")
    parser.add_argument("out_dir", help="folder to write")
    parser.add_argument("--variant", default="512", choices=["256", "512", "1024"])
    parser.add_argument("--tokenizer", default=None,
                        help="folder with the OpenCLIP ViT-H/14 tokenizer (default: the open-clip-vit-h-14 weights if cached)")
    args = parser.parse_args(argv)
    from storyagent.errors import StoryAgentError, WeightsNotFoundError
    from storyagent.weights import resolve_weights

    tokenizer = args.tokenizer
    if tokenizer is None:
        try:
            tokenizer = resolve_weights("open-clip-vit-h-14")
        except WeightsNotFoundError as exc:
            print(f"note: no tokenizer copied ({exc}); add one to OUT_DIR/tokenizer before using prompts.")
    try:
        path = convert_checkpoint(args.checkpoint, args.out_dir, variant_config(args.variant), tokenizer_dir=tokenizer)
    except StoryAgentError as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

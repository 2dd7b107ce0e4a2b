"""Convert an official DynamiCrafter `model.ckpt` into the safetensors folder the pipeline loads.

    python -m storyagent.models.dynamicrafter.convert model.ckpt OUT_DIR [--variant 512]

The official state dict names its parts `model.diffusion_model.*` (UNet), `first_stage_model.*`
(VAE), `image_proj_model.*` (Resampler), `cond_stage_model.model.*` (OpenCLIP text tower) and
`embedder.model.*` (OpenCLIP vision tower). Each part is renamed to our modules' names here; the
pickle is read only with `torch.load(weights_only=True, mmap=True)` (see storyagent.weights).

Each name is mapped through a rename table (module prefixes, see `storyagent.models.ldm`); a key no
table covers, or a weight a model lacks after renaming, raises `ConversionError` naming it.

Output folder (diffusers-style subfolders): `config.json`, `unet/`, `vae/`, `resampler/` (each a
`diffusion_pytorch_model.safetensors`) and, when the checkpoint holds them, `text_encoder/` and
`image_encoder/` (transformers CLIP layout) and `tokenizer/`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch

from storyagent.errors import ConversionError, InputError, UnsafeCheckpointError, WeightsNotFoundError
from storyagent.models.conversion import run_converter
from storyagent.models.dynamicrafter.config import DynamiCrafterConfig, ResamplerConfig, UNetConfig, variant_config
from storyagent.models.dynamicrafter.loading import (
    COMPONENTS, POSITION_IDS, build_clip_on_meta, clip_config, missing_components, save_clip, save_component,
)
from storyagent.models.dynamicrafter.resampler import Resampler
from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet, plan_stages
from storyagent.models.ldm import (
    RESBLOCK_PARTS, check_keys, convert_vae, module_renames, official_names, refuse_foreign_state, reject_unknown_entries,
    rename_keys, take,
)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
RESAMPLER_PREFIX = "image_proj_model."
TEXT_PREFIX = "cond_stage_model.model."
VISION_PREFIX = "embedder.model."

# The ResBlock's temporal convolution ("temopral_conv" is the upstream spelling): conv1 is
# (GroupNorm, SiLU, Conv3d), conv2..4 are (GroupNorm, SiLU, Dropout, Conv3d).
_TEMPORAL_CONV_PARTS = {f"temopral_conv.conv{n}.{i}": f"temporal_conv.conv{n}.{'norm' if i == 0 else 'conv'}"
                        for n in range(1, 5) for i in (0, 2 if n == 1 else 3)}
_RESBLOCK_PARTS = RESBLOCK_PARTS | _TEMPORAL_CONV_PARTS
# Downsample's conv is called "op" upstream, Upsample's "conv".
_RESAMPLE_PARTS = {"op": "conv", "conv": "conv"}
# OpenCLIP entries the converted towers do not use: the projections to the joint space, the
# temperature, and the text parts the image embedder keeps after deleting its text transformer.
_UNUSED_TEXT = ("text_projection", "logit_scale", "attn_mask")
_UNUSED_VISION = ("visual.proj", "token_embedding.weight", "positional_embedding", "ln_final.weight",
                  "ln_final.bias", "text_projection", "logit_scale")


def _stage_renames(src: str, dst: str, layout: list[str]) -> dict[str, str]:
    """One upstream TimestepEmbedSequential (`src.0`, `src.1`, ...) -> one of our stages' slots."""
    renames: dict[str, str] = {}
    for j, slot in enumerate(layout):
        if slot in ("resnet", "resnet2"):
            renames |= module_renames(f"{src}.{j}", f"{dst}.{slot}", _RESBLOCK_PARTS)
        elif slot == "resample":
            renames |= module_renames(f"{src}.{j}", f"{dst}.resample", _RESAMPLE_PARTS)
        else:  # spatial / temporal transformers keep the upstream names inside
            renames[f"{src}.{j}"] = f"{dst}.{slot}"
    return renames


def unet_renames(cfg: UNetConfig) -> dict[str, str]:
    """Official UNet module prefixes (without `model.diffusion_model.`) -> ours."""
    down, mid, up = plan_stages(cfg)
    renames = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
               "fps_embedding.0": "fs_embedding.linear_1", "fps_embedding.2": "fs_embedding.linear_2",
               "input_blocks.0.0": "conv_in", "init_attn.0": "init_temporal_attn",
               "out.0": "norm_out", "out.2": "conv_out"}
    for i, plan in enumerate(down):
        renames |= _stage_renames(f"input_blocks.{i + 1}", f"down_stages.{i}", plan.layout)
    renames |= _stage_renames("middle_block", "mid_stage", mid.layout)
    for i, plan in enumerate(up):
        renames |= _stage_renames(f"output_blocks.{i}", f"up_stages.{i}", plan.layout)
    return renames


def resampler_renames(cfg: ResamplerConfig) -> dict[str, str]:
    renames = {name: name for name in ("latents", "proj_in", "proj_out", "norm_out")}
    for i in range(cfg.depth):
        renames |= {f"layers.{i}.0": f"layers.{i}.attn", f"layers.{i}.1.0": f"layers.{i}.ff.norm",
                    f"layers.{i}.1.1": f"layers.{i}.ff.fc1", f"layers.{i}.1.3": f"layers.{i}.ff.fc2"}
    return renames


def convert_unet(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    renames = unet_renames(cfg)
    out = rename_keys(take(state, UNET_PREFIX), renames, "DynamiCrafter UNet", UNET_PREFIX)
    for key, value in out.items():
        # Transformers' 1x1 conv projections (init_attn, use_linear=False) become Linear weights.
        if key.endswith((".proj_in.weight", ".proj_out.weight")) and value.ndim > 2:
            out[key] = value.reshape(value.shape[0], value.shape[1])
    with torch.device("meta"):
        check_keys(out, DynamiCrafterUNet(cfg).state_dict(), "DynamiCrafter UNet", renames=renames, prefix=UNET_PREFIX)
    return out


def convert_resampler(state: dict[str, torch.Tensor], cfg: ResamplerConfig) -> dict[str, torch.Tensor]:
    renames = resampler_renames(cfg)
    out = rename_keys(take(state, RESAMPLER_PREFIX), renames, "DynamiCrafter Resampler", RESAMPLER_PREFIX)
    with torch.device("meta"):
        check_keys(out, Resampler(cfg).state_dict(), "DynamiCrafter Resampler", renames=renames, prefix=RESAMPLER_PREFIX)
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
        out |= rename_keys({rest: value}, {"attn.out_proj": f"{base}self_attn.out_proj", "ln_1": f"{base}layer_norm1",
                                           "ln_2": f"{base}layer_norm2", "mlp.c_fc": f"{base}mlp.fc1",
                                           "mlp.c_proj": f"{base}mlp.fc2"}, "OpenCLIP", f"{prefix}resblocks.{i}.")
    return out


_TEXT_TOP = {"token_embedding.weight": "embeddings.token_embedding.weight",
             "positional_embedding": "embeddings.position_embedding.weight",
             "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
_VISION_TOP = {"visual.conv1.weight": "embeddings.patch_embedding.weight",
               "visual.class_embedding": "embeddings.class_embedding",
               "visual.positional_embedding": "embeddings.position_embedding.weight",
               "visual.ln_pre.weight": "pre_layrnorm.weight", "visual.ln_pre.bias": "pre_layrnorm.bias",
               "visual.ln_post.weight": "post_layernorm.weight", "visual.ln_post.bias": "post_layernorm.bias"}


def _convert_tower(state: dict[str, torch.Tensor], prefix: str, transformer: str, top: dict[str, str],
                   unused: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """One OpenCLIP tower under `prefix`: its residual blocks under `transformer`, the `top` entries
    renamed; any other entry must be one of the known `unused` ones."""
    blocks = prefix + transformer + "resblocks."
    unknown = [k for k in state if k.startswith(prefix) and not k.startswith(blocks)
               and k[len(prefix):] not in (*top, *unused)]
    if unknown:
        raise ConversionError(f"The OpenCLIP weights hold {unknown[0]!r}, which the converter's layout does not have.")
    missing = [prefix + k for k in top if prefix + k not in state]
    if missing:
        raise ConversionError(f"The OpenCLIP weights lack {missing[0]!r}; the checkpoint is incomplete.")
    return _openclip_blocks(state, prefix + transformer) | {ours: state[prefix + theirs] for theirs, ours in top.items()}


def convert_text_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower (`cond_stage_model.model.*`) -> transformers CLIPTextModel state dict
    (top-level names, as transformers 5 uses; the loader also accepts a `text_model.` prefix)."""
    return _convert_tower(state, TEXT_PREFIX, "transformer.", _TEXT_TOP, _UNUSED_TEXT)


def convert_image_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP vision tower (`embedder.model.visual.*`) -> transformers CLIPVisionModel state dict."""
    return _convert_tower(state, VISION_PREFIX, "visual.transformer.", _VISION_TOP, _UNUSED_VISION)


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
    """The official state dict split into our parts, renamed. Encoders only when present.

    A key no part uses, or a weight a part lacks, raises `ConversionError` naming it.
    """
    reject_unknown_entries(state, (UNET_PREFIX, VAE_PREFIX, RESAMPLER_PREFIX, TEXT_PREFIX, VISION_PREFIX))
    parts = {
        "unet": convert_unet(state, config.unet),
        "vae": convert_vae(take(state, VAE_PREFIX), config.vae),
        "resampler": convert_resampler(state, config.resampler),
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
    from storyagent.fileio import atomic_write_json
    from storyagent.weights import load_pickled_state_dict

    config = config or variant_config("512")
    state = load_pickled_state_dict(ckpt)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UnsafeCheckpointError(f"{ckpt} holds non-tensor entries ({bad[0]!r}, ...); it is not a plain state dict.")
    refuse_foreign_state(state, official_names(lambda: DynamiCrafterUNet(config.unet), unet_renames(config.unet),
                                               UNET_PREFIX), ckpt, "a DynamiCrafter checkpoint")
    parts = split_checkpoint(state, config)
    encoders = {}
    if "text_encoder" in parts:
        encoders["text_encoder"] = clip_config("text", text_encoder_config(state), text_heads)
    if "image_encoder" in parts:
        encoders["image_encoder"] = clip_config("vision", image_encoder_config(state), vision_heads)
    for name, cfg in encoders.items():
        check_keys(parts[name], build_clip_on_meta(cfg).state_dict(), f"OpenCLIP {name}", optional=POSITION_IDS)
    out = Path(out_dir)
    for name in COMPONENTS:
        save_component(out, name, parts[name])
    for name, cfg in encoders.items():
        save_clip(out / name, parts[name], cfg)
    if tokenizer_dir is not None:
        from transformers import CLIPTokenizer

        CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(out / "tokenizer")
    # config.json last: a folder without it is an interrupted conversion, redone rather than half-used.
    atomic_write_json(out / "config.json", config.to_dict())
    return out


def convert_downloaded(files: list[Path], out_dir: Path, *, name: str, needs: Mapping[str, Path],
                       config: Path | None = None) -> Path:
    """`storyagent weights fetch`'s entry point: the downloaded `model.ckpt` of weights `name`
    (dynamicrafter-512, ...) into `out_dir`, with the OpenCLIP tokenizer (`needs`) copied in; `config`
    (a DynamiCrafterConfig JSON) replaces the variant's configuration."""
    variant = name.rsplit("-", 1)[-1]
    cfg = DynamiCrafterConfig.from_json(config) if config else variant_config(variant)
    return convert_checkpoint(files[0], out_dir, cfg, tokenizer_dir=needs.get("open-clip-vit-h-14"))


def converted_once(ckpt: Path, name: str, config: DynamiCrafterConfig) -> Path:
    """The converted folder for official `ckpt`, converting it into the StoryAgent cache the first time."""
    from storyagent.progress import console
    from storyagent.weights import cache_dir, resolve_weights

    stat = ckpt.stat()
    key = hashlib.sha256(f"{ckpt.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir(f"{name}-{key}")
    # A folder from before the subfolder layout has config.json but no unet/: convert it again.
    if (folder / "config.json").exists() and not missing_components(folder):
        return folder
    try:
        tokenizer = resolve_weights("open-clip-vit-h-14")
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(f"Converting {ckpt.name} needs the OpenCLIP tokenizer: {exc}") from exc
    console.print(f"Converting {ckpt} to safetensors in {folder} (once)...")
    return convert_checkpoint(ckpt, folder, config, tokenizer_dir=tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert an official DynamiCrafter model.ckpt to safetensors.")
    parser.add_argument("checkpoint", help="path to model.ckpt")
    parser.add_argument("out_dir", help="folder to write")
    parser.add_argument("--variant", default="512", choices=["256", "512", "1024"])
    parser.add_argument("--tokenizer", default=None,
                        help="folder with the OpenCLIP ViT-H/14 tokenizer (default: the open-clip-vit-h-14 weights if cached)")
    args = parser.parse_args(argv)
    from storyagent.weights import resolve_weights

    tokenizer, note = args.tokenizer, None
    if tokenizer is None:
        try:
            tokenizer = resolve_weights("open-clip-vit-h-14")
        except WeightsNotFoundError as exc:
            note = f"note: no tokenizer copied ({exc}); add one to OUT_DIR/tokenizer before using prompts."

    def convert() -> Path:
        # Checked first: the tokenizer is copied last, after the weights were written.
        if tokenizer is not None and not Path(tokenizer).is_dir():
            raise InputError(f"--tokenizer {tokenizer} is not a folder; give the folder holding the OpenCLIP "
                             "ViT-H/14 tokenizer files.")
        return convert_checkpoint(args.checkpoint, args.out_dir, variant_config(args.variant), tokenizer_dir=tokenizer)

    code = run_converter(convert, args.out_dir, {"the DynamiCrafter model.ckpt": args.checkpoint})
    if code == 0 and note:
        print(note)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""Official AnyDoor checkpoint (+ DINOv2 ViT-g/14 release weights) -> our modules, saved as safetensors.

The official checkpoint (`epoch=1-step=8687.ckpt` or the pruned one) is one `state_dict` of the
upstream `ControlLDM`:

    model.diffusion_model.*      UNet (openaimodel layout: input_blocks / middle_block / output_blocks)
    control_model.*              ControlNet (same layout + input_hint_block, zero_convs, middle_block_out)
    first_stage_model.*          VAE (ldm encoder/decoder layout)
    cond_stage_model.model.*     DINOv2 (release names: blocks.N.attn.qkv, ls1.gamma, mlp.w12 ...)
    cond_stage_model.projector.* the Linear projector
    betas, alphas_cumprod, ...   schedule buffers (rebuilt from the config instead)

`convert_state_dict` renames these onto diffusers/transformers module names; the mapping is
derived from the config (levels, blocks per level, which levels attend), so tiny parity fixtures
and the released model go through the same code.

    python -m storyagent.models.anydoor.convert ANYDOOR_CKPT [--dinov2 dinov2_vitg14_pretrain.pth] OUT_DIR
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from storyagent.errors import InputError
from storyagent.models.anydoor.components import (
    HINT_EMBEDDING_CHANNELS, alphas_cumprod, build_components, build_unet, ddpm_betas,
)
from storyagent.models.anydoor.config import AnyDoorConfig, ImageEncoderConfig, UNetConfig
from storyagent.models.conversion import run_converter
from storyagent.models.ldm import (
    RESBLOCK_PARTS, check_keys, convert_vae, invert, module_renames, official_names, refuse_foreign_state,
    reject_unknown_entries, rename_keys, take, vae_to_ldm,
)
from storyagent.weights import load_pickled_state_dict

UNET_PREFIX = "model.diffusion_model."
CONTROLNET_PREFIX = "control_model."
VAE_PREFIX = "first_stage_model."
DINOV2_PREFIX = "cond_stage_model.model."
PROJECTOR_PREFIX = "cond_stage_model.projector."

# DINOv2 release names -> transformers Dinov2 names, outside and inside the blocks.
_DINOV2_TOP = {"cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
               "pos_embed": "embeddings.position_embeddings",
               "patch_embed.proj": "embeddings.patch_embeddings.projection", "norm": "layernorm"}
_DINOV2_BLOCK = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
                 "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
                 "mlp.w3": "mlp.down_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
# Fused projections upstream, split in transformers: q, k, v, and SwiGLU's gate (through SiLU) and value.
_DINOV2_FUSED = {"attn.qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
                 "mlp.w12": ("mlp.gate_proj", "mlp.up_proj")}


def _unet_trunk_renames(settings: UNetConfig) -> dict[str, str]:
    """Renames shared by the UNet and the ControlNet: time embedding, encoder path, middle."""
    renames = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
               "input_blocks.0.0": "conv_in"}
    index = 1
    levels = len(settings.channel_mult)
    for level in range(levels):
        for j in range(settings.num_res_blocks):
            renames |= module_renames(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", RESBLOCK_PARTS)
            if settings.level_has_attention(level):
                renames[f"input_blocks.{index}.1"] = f"down_blocks.{level}.attentions.{j}"
            index += 1
        if level != levels - 1:
            renames[f"input_blocks.{index}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            index += 1
    renames |= module_renames("middle_block.0", "mid_block.resnets.0", RESBLOCK_PARTS)
    renames["middle_block.1"] = "mid_block.attentions.0"
    renames |= module_renames("middle_block.2", "mid_block.resnets.1", RESBLOCK_PARTS)
    return renames


def unet_renames(settings: UNetConfig) -> dict[str, str]:
    renames = _unet_trunk_renames(settings)
    levels = len(settings.channel_mult)
    index = 0
    for up in range(levels):  # diffusers up block 0 is the coarsest level
        level = levels - 1 - up
        for j in range(settings.num_res_blocks + 1):
            renames |= module_renames(f"output_blocks.{index}.0", f"up_blocks.{up}.resnets.{j}", RESBLOCK_PARTS)
            sub = 1
            if settings.level_has_attention(level):
                renames[f"output_blocks.{index}.1"] = f"up_blocks.{up}.attentions.{j}"
                sub = 2
            if level != 0 and j == settings.num_res_blocks:
                renames[f"output_blocks.{index}.{sub}.conv"] = f"up_blocks.{up}.upsamplers.0.conv"
            index += 1
    renames |= {"out.0": "conv_norm_out", "out.2": "conv_out"}
    return renames


def controlnet_renames(settings: UNetConfig) -> dict[str, str]:
    renames = _unet_trunk_renames(settings)
    # input_hint_block is Sequential(conv, SiLU, conv, SiLU, ..., conv): convs sit at even indices,
    # one in, two per channel step (same width, then stride 2 to the next width), one out.
    n_steps = len(HINT_EMBEDDING_CHANNELS) - 1
    conv_ids = [2 * i for i in range(2 * n_steps + 2)]
    renames[f"input_hint_block.{conv_ids[0]}"] = "controlnet_cond_embedding.conv_in"
    for k, idx in enumerate(conv_ids[1:-1]):
        renames[f"input_hint_block.{idx}"] = f"controlnet_cond_embedding.blocks.{k}"
    renames[f"input_hint_block.{conv_ids[-1]}"] = "controlnet_cond_embedding.conv_out"
    n_zero = 1 + len(settings.channel_mult) * (settings.num_res_blocks + 1) - 1
    for i in range(n_zero):
        renames[f"zero_convs.{i}.0"] = f"controlnet_down_blocks.{i}"
    renames["middle_block_out.0"] = "controlnet_mid_block"
    return renames


def dinov2_renames(cfg: ImageEncoderConfig) -> dict[str, str]:
    """DINOv2 release names -> transformers `Dinov2Model` names, fused projections excluded."""
    renames = dict(_DINOV2_TOP)
    for layer in range(cfg.depth):
        renames |= module_renames(f"blocks.{layer}", f"encoder.layer.{layer}", _DINOV2_BLOCK)
    return renames


def convert_dinov2_state_dict(state: dict[str, torch.Tensor], cfg: ImageEncoderConfig) -> dict[str, torch.Tensor]:
    """DINOv2 release weights -> our image encoder's `dinov2.*` entries."""
    # Chunked exports name blocks `blocks.CHUNK.N.*`, N being the global index there too.
    state = {re.sub(r"^blocks\.\d+\.(\d+\.)", r"blocks.\1", k) if re.match(r"^blocks\.\d+\.\d+\.", k) else k: v
             for k, v in state.items()}
    fused = {k: v for k, v in state.items() if re.fullmatch(r"blocks\.\d+\.(attn\.qkv|mlp\.w12)\.(weight|bias)", k)}
    out = rename_keys({k: v for k, v in state.items() if k not in fused}, dinov2_renames(cfg), "DINOv2", DINOV2_PREFIX)
    for key, value in fused.items():
        _, layer, *part, kind = key.split(".")
        targets = _DINOV2_FUSED[".".join(part)]
        for target, chunk in zip(targets, value.chunk(len(targets), dim=0)):
            out[f"encoder.layer.{layer}.{target}.{kind}"] = chunk
    return {f"dinov2.{k}": v for k, v in out.items()}


def dinov2_to_release(state: dict[str, torch.Tensor], cfg: ImageEncoderConfig) -> dict[str, torch.Tensor]:
    """The inverse of `convert_dinov2_state_dict` (the fused projections concatenated again)."""
    state = take(state, "dinov2.")
    split = {f"encoder.layer.{layer}.{t}.{kind}": (f"blocks.{layer}.{fused}.{kind}", i)
             for layer in range(cfg.depth) for fused, targets in _DINOV2_FUSED.items()
             for i, t in enumerate(targets) for kind in ("weight", "bias")}
    out = rename_keys({k: v for k, v in state.items() if k not in split}, invert(dinov2_renames(cfg)), "converted DINOv2")
    parts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for key, value in state.items():
        if key in split:
            name, i = split[key]
            parts.setdefault(name, []).append((i, value))
    return out | {name: torch.cat([v for _, v in sorted(chunks, key=lambda c: c[0])]) for name, chunks in parts.items()}


def convert_controlnet_state_dict(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    out = rename_keys(state, controlnet_renames(cfg), "ControlNet", CONTROLNET_PREFIX)
    # Upstream's ControlNet replaces the output of its first input block (the conv on the noisy
    # latent) by the hint embedding instead of adding the two, so that conv never contributes.
    # diffusers adds conv_in(latent) + hint; a zero conv_in reproduces upstream exactly.
    for key in ("conv_in.weight", "conv_in.bias"):
        if key in out:
            out[key] = torch.zeros_like(out[key])
    return out


def convert_state_dict(state: dict[str, torch.Tensor], config: AnyDoorConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Split an official AnyDoor state dict into per-module state dicts with our names.

    A key no module uses raises `ConversionError` naming it (missing keys are caught on loading).
    """
    reject_unknown_entries(state, (UNET_PREFIX, CONTROLNET_PREFIX, VAE_PREFIX, DINOV2_PREFIX, PROJECTOR_PREFIX))
    encoder = convert_dinov2_state_dict(take(state, DINOV2_PREFIX), config.dinov2)
    encoder |= {f"projector.{k}": v for k, v in take(state, PROJECTOR_PREFIX).items()}
    return {
        "unet": rename_keys(take(state, UNET_PREFIX), unet_renames(config.unet), "UNet", UNET_PREFIX),
        "controlnet": convert_controlnet_state_dict(take(state, CONTROLNET_PREFIX), config.controlnet),
        "vae": convert_vae(take(state, VAE_PREFIX), config.vae),
        "image_encoder": encoder,
    }


def load_official_components(state: dict[str, torch.Tensor], config: AnyDoorConfig) -> dict:
    """Build the modules from `config` and load an official-layout state dict into them (strict)."""
    components = build_components(config)
    encoder = {"projector": "projector"} | {f"model.{k}": f"dinov2.{v}" for k, v in dinov2_renames(config.dinov2).items()}
    tables = {"unet": (unet_renames(config.unet), UNET_PREFIX),
              "controlnet": (controlnet_renames(config.controlnet), CONTROLNET_PREFIX),
              "image_encoder": (encoder, "cond_stage_model.")}
    for name, module_state in convert_state_dict(state, config).items():
        renames, prefix = tables.get(name, (None, ""))
        # mask_token is unused at inference and absent from some exports; everything else must match.
        check_keys(module_state, components[name].state_dict(), f"AnyDoor {name}",
                   optional=["dinov2.embeddings.mask_token"], renames=renames, prefix=prefix)
        components[name].load_state_dict(module_state, strict=False)
    return components


def to_official_state_dict(components: dict, config: AnyDoorConfig) -> dict[str, torch.Tensor]:
    """The inverse of `convert_state_dict`, read off the same tables: our modules -> one state dict
    with official AnyDoor key names (used to write official-layout checkpoints and parity fixtures)."""
    encoder = components["image_encoder"].state_dict()
    parts = {
        UNET_PREFIX: rename_keys(components["unet"].state_dict(), invert(unet_renames(config.unet)), "converted UNet"),
        CONTROLNET_PREFIX: rename_keys(components["controlnet"].state_dict(),
                                       invert(controlnet_renames(config.controlnet)), "converted ControlNet"),
        VAE_PREFIX: vae_to_ldm(components["vae"].state_dict(), config.vae),
        DINOV2_PREFIX: dinov2_to_release({k: v for k, v in encoder.items() if k.startswith("dinov2.")}, config.dinov2),
        PROJECTOR_PREFIX: take(encoder, "projector."),
    }
    out = {prefix + k: v for prefix, state in parts.items() for k, v in state.items()}
    out["betas"] = torch.from_numpy(ddpm_betas(config.diffusion)).float()
    out["alphas_cumprod"] = alphas_cumprod(config.diffusion)
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def convert_checkpoint(anydoor_ckpt: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       dinov2_pth: str | os.PathLike[str] | None = None,
                       config: AnyDoorConfig | None = None) -> Path:
    """Convert the official checkpoint(s) into a folder `AnyDoorPipeline.from_pretrained` reads.

    Both pickles load with `weights_only=True`; a pickle that needs anything but tensors is refused
    with `UnsafeCheckpointError`. DINOv2 weights come from `dinov2_pth` when given (the release
    file, unprefixed names), else from `cond_stage_model.model.*` inside the AnyDoor checkpoint.
    """
    from storyagent.fileio import atomic_write_json

    config = config or AnyDoorConfig()
    state = {k: v for k, v in load_pickled_state_dict(anydoor_ckpt).items() if isinstance(v, torch.Tensor)}
    refuse_foreign_state(state, official_names(lambda: build_unet(config.unet), unet_renames(config.unet), UNET_PREFIX),
                         anydoor_ckpt, "an AnyDoor checkpoint")
    if dinov2_pth is not None:
        dinov2 = load_pickled_state_dict(dinov2_pth)
        state = {k: v for k, v in state.items() if not k.startswith(DINOV2_PREFIX)}
        state |= {DINOV2_PREFIX + k: v for k, v in dinov2.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith(DINOV2_PREFIX) for k in state):
        raise InputError(f"{anydoor_ckpt} holds no DINOv2 weights; pass --dinov2 dinov2_vitg14_pretrain.pth.")
    components = load_official_components(state, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "controlnet", "vae", "image_encoder"):
        components[name].save_pretrained(out / name)
    atomic_write_json(out / "config.json", config.to_dict())
    return out


def convert_downloaded(files: list[Path], out_dir: Path, *, name: str, needs: Mapping[str, Path],
                       config: Path | None = None) -> Path:
    """`storyagent weights fetch`'s entry point: the downloaded AnyDoor checkpoint (DINOv2 inside) into
    `out_dir`; `config` (an AnyDoorConfig JSON) replaces the released model's configuration."""
    return convert_checkpoint(files[0], out_dir, None, AnyDoorConfig.from_json(config) if config else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="official AnyDoor checkpoint (.ckpt, pickled state dict)")
    parser.add_argument("out_dir", help="folder to write (unet/, controlnet/, vae/, image_encoder/, config.json)")
    parser.add_argument("--dinov2", help="dinov2_vitg14_pretrain.pth from the DINOv2 release")
    parser.add_argument("--config", help="AnyDoor config.json (defaults to the released model's)")
    args = parser.parse_args(argv)

    def convert() -> Path:
        config = AnyDoorConfig.from_json(args.config) if args.config else None
        return convert_checkpoint(args.checkpoint, args.out_dir, args.dinov2, config)

    return run_converter(convert, args.out_dir, {"the AnyDoor checkpoint": args.checkpoint,
                                                 "the DINOv2 weights (--dinov2)": args.dinov2})


if __name__ == "__main__":
    raise SystemExit(main())

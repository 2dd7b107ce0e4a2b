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
from pathlib import Path

import torch

from storyagent.errors import InputError
from storyagent.models.anydoor.config import AnyDoorConfig, DinoV2Settings, UNetSettings, VAESettings
from storyagent.models.anydoor.components import HINT_EMBEDDING_CHANNELS, build_components
from storyagent.weights import load_pickled_state_dict

UNET_PREFIX = "model.diffusion_model."
CONTROLNET_PREFIX = "control_model."
VAE_PREFIX = "first_stage_model."
DINOV2_PREFIX = "cond_stage_model.model."
PROJECTOR_PREFIX = "cond_stage_model.projector."

_RESNET_PARTS = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}
_VAE_RESNET_PARTS = {"nin_shortcut": "conv_shortcut"}  # norm1/conv1/norm2/conv2 keep their names
_VAE_ATTENTION_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _take(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _rename(state: dict[str, torch.Tensor], renames: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    """Rename every key by its longest matching module prefix; an unmapped key is an error."""
    ordered = sorted(renames, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for src in ordered:
            if key == src or key.startswith(src + "."):
                out[renames[src] + key[len(src):]] = value
                break
        else:
            raise InputError(f"The {what} weights hold {key!r}, which the AnyDoor layout does not have; "
                             "is this an AnyDoor checkpoint with a matching config?")
    return out


def _resnet_renames(src: str, dst: str, parts: dict[str, str] = _RESNET_PARTS) -> dict[str, str]:
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in parts.items()}


def _unet_trunk_renames(settings: UNetSettings) -> dict[str, str]:
    """Renames shared by the UNet and the ControlNet: time embedding, encoder path, middle."""
    renames = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
               "input_blocks.0.0": "conv_in"}
    index = 1
    levels = len(settings.channel_mult)
    for level in range(levels):
        for j in range(settings.num_res_blocks):
            renames |= _resnet_renames(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}")
            if settings.level_has_attention(level):
                renames[f"input_blocks.{index}.1"] = f"down_blocks.{level}.attentions.{j}"
            index += 1
        if level != levels - 1:
            renames[f"input_blocks.{index}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            index += 1
    renames |= _resnet_renames("middle_block.0", "mid_block.resnets.0")
    renames["middle_block.1"] = "mid_block.attentions.0"
    renames |= _resnet_renames("middle_block.2", "mid_block.resnets.1")
    return renames


def unet_renames(settings: UNetSettings) -> dict[str, str]:
    renames = _unet_trunk_renames(settings)
    levels = len(settings.channel_mult)
    index = 0
    for up in range(levels):  # diffusers up block 0 is the coarsest level
        level = levels - 1 - up
        for j in range(settings.num_res_blocks + 1):
            renames |= _resnet_renames(f"output_blocks.{index}.0", f"up_blocks.{up}.resnets.{j}")
            sub = 1
            if settings.level_has_attention(level):
                renames[f"output_blocks.{index}.1"] = f"up_blocks.{up}.attentions.{j}"
                sub = 2
            if level != 0 and j == settings.num_res_blocks:
                renames[f"output_blocks.{index}.{sub}.conv"] = f"up_blocks.{up}.upsamplers.0.conv"
            index += 1
    renames |= {"out.0": "conv_norm_out", "out.2": "conv_out"}
    return renames


def controlnet_renames(settings: UNetSettings) -> dict[str, str]:
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


def vae_renames(settings: VAESettings) -> dict[str, str]:
    levels = len(settings.ch_mult)
    renames: dict[str, str] = {}
    for part in ("encoder", "decoder"):
        renames[f"{part}.conv_in"] = f"{part}.conv_in"
        renames[f"{part}.conv_out"] = f"{part}.conv_out"
        renames[f"{part}.norm_out"] = f"{part}.conv_norm_out"
        for b, name in ((1, "block_1"), (2, "block_2")):
            renames |= _resnet_renames(f"{part}.mid.{name}", f"{part}.mid_block.resnets.{b - 1}",
                                       {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                                        **_VAE_RESNET_PARTS})
        renames |= {f"{part}.mid.attn_1.{a}": f"{part}.mid_block.attentions.0.{b}" for a, b in _VAE_ATTENTION_PARTS.items()}
    for level in range(levels):
        for j in range(settings.num_res_blocks):
            renames |= _resnet_renames(f"encoder.down.{level}.block.{j}", f"encoder.down_blocks.{level}.resnets.{j}",
                                       {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                                        **_VAE_RESNET_PARTS})
        renames[f"encoder.down.{level}.downsample.conv"] = f"encoder.down_blocks.{level}.downsamplers.0.conv"
        up = levels - 1 - level  # ldm's decoder.up[0] is the finest level, diffusers' up_blocks[0] the coarsest
        for j in range(settings.num_res_blocks + 1):
            renames |= _resnet_renames(f"decoder.up.{level}.block.{j}", f"decoder.up_blocks.{up}.resnets.{j}",
                                       {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                                        **_VAE_RESNET_PARTS})
        renames[f"decoder.up.{level}.upsample.conv"] = f"decoder.up_blocks.{up}.upsamplers.0.conv"
    renames |= {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    return renames


def convert_unet_state_dict(state: dict[str, torch.Tensor], settings: UNetSettings) -> dict[str, torch.Tensor]:
    return _rename(state, unet_renames(settings), "UNet")


def convert_controlnet_state_dict(state: dict[str, torch.Tensor], settings: UNetSettings) -> dict[str, torch.Tensor]:
    out = _rename(state, controlnet_renames(settings), "ControlNet")
    # Upstream's ControlNet replaces the output of its first input block (the conv on the noisy
    # latent) by the hint embedding instead of adding the two, so that conv never contributes.
    # diffusers adds conv_in(latent) + hint; a zero conv_in reproduces upstream exactly.
    out["conv_in.weight"] = torch.zeros_like(out["conv_in.weight"])
    out["conv_in.bias"] = torch.zeros_like(out["conv_in.bias"])
    return out


def convert_vae_state_dict(state: dict[str, torch.Tensor], settings: VAESettings) -> dict[str, torch.Tensor]:
    out = _rename(state, vae_renames(settings), "VAE")
    for key, value in out.items():
        # ldm's VAE attention uses 1x1 convs; diffusers uses Linear layers: (out, in, 1, 1) -> (out, in)
        if ".mid_block.attentions." in key and key.endswith("weight") and value.ndim == 4:
            out[key] = value[:, :, 0, 0]
    return out


def convert_dinov2_state_dict(state: dict[str, torch.Tensor], settings: DinoV2Settings) -> dict[str, torch.Tensor]:
    """DINOv2 release names -> transformers `Dinov2Model` names (prefixed `dinov2.` for the encoder)."""
    fixed = {"cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
             "pos_embed": "embeddings.position_embeddings",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
             "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    block_parts = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
                   "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
                   "mlp.w3": "mlp.down_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        # `blocks.N.*`, or `blocks.CHUNK.N.*` in chunked exports (N is the global block index there too)
        match = re.fullmatch(r"blocks\.(?:\d+\.)?(\d+)\.(.+)", key)
        if match is None:
            raise InputError(f"The DINOv2 weights hold {key!r}, which a DINOv2 ViT does not have.")
        layer, rest = match.groups()
        dst = f"encoder.layer.{layer}."
        kind = rest.rsplit(".", 1)[1]
        if rest.startswith("attn.qkv."):
            # Fused (3 * dim, dim) projection in q, k, v order -> three (dim, dim) projections.
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{dst}attention.{name}.{kind}"] = chunk
            continue
        if rest.startswith("mlp.w12."):
            # SwiGLU's fused input projection: first half is the gate (through SiLU), second the value.
            gate, up = value.chunk(2, dim=0)
            out[f"{dst}mlp.gate_proj.{kind}"], out[f"{dst}mlp.up_proj.{kind}"] = gate, up
            continue
        for src, tgt in block_parts.items():
            if rest == src or rest.startswith(src + "."):
                out[dst + tgt + rest[len(src):]] = value
                break
        else:
            raise InputError(f"The DINOv2 weights hold {key!r}, which a DINOv2 ViT does not have.")
    return {f"dinov2.{k}": v for k, v in out.items()}


def convert_state_dict(state: dict[str, torch.Tensor], config: AnyDoorConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Split an official AnyDoor state dict into per-module state dicts with our names."""
    encoder = convert_dinov2_state_dict(_take(state, DINOV2_PREFIX), config.dinov2)
    encoder |= {f"projector.{k}": v for k, v in _take(state, PROJECTOR_PREFIX).items()}
    return {
        "unet": convert_unet_state_dict(_take(state, UNET_PREFIX), config.unet),
        "controlnet": convert_controlnet_state_dict(_take(state, CONTROLNET_PREFIX), config.controlnet),
        "vae": convert_vae_state_dict(_take(state, VAE_PREFIX), config.vae_ddconfig),
        "image_encoder": encoder,
    }


def load_official_components(state: dict[str, torch.Tensor], config: AnyDoorConfig) -> dict:
    """Build the modules from `config` and load an official-layout state dict into them (strict)."""
    components = build_components(config)
    for name, module_state in convert_state_dict(state, config).items():
        module = components[name]
        missing, unexpected = module.load_state_dict(module_state, strict=False)
        # mask_token is unused at inference and absent from some exports; everything else must match.
        missing = [k for k in missing if not k.endswith("mask_token")]
        if missing or unexpected:
            raise InputError(f"AnyDoor {name} weights do not match the config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}.")
    return components


def _invert(state: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    return _rename(state, {dst: src for src, dst in renames.items()}, "converted")


def to_official_state_dict(components: dict, config: AnyDoorConfig) -> dict[str, torch.Tensor]:
    """The inverse of `convert_state_dict`: our modules -> one state dict with official AnyDoor key
    names (used to write synthetic official-layout checkpoints and parity fixtures)."""
    from storyagent.models.anydoor.components import alphas_cumprod, ddpm_betas

    out: dict[str, torch.Tensor] = {}
    unet = _invert(components["unet"].state_dict(), unet_renames(config.unet))
    out |= {UNET_PREFIX + k: v for k, v in unet.items()}
    control = _invert(components["controlnet"].state_dict(), controlnet_renames(config.controlnet))
    out |= {CONTROLNET_PREFIX + k: v for k, v in control.items()}
    vae = _invert(components["vae"].state_dict(), vae_renames(config.vae_ddconfig))
    for key, value in vae.items():
        if ".mid.attn_1." in key and key.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + key] = value
    fixed = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
             "embeddings.position_embeddings": "pos_embed",
             "embeddings.patch_embeddings.projection": "patch_embed.proj", "layernorm": "norm"}
    parts = {"norm1": "norm1", "norm2": "norm2", "attention.o_proj": "attn.proj", "mlp.down_proj": "mlp.w3",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    encoder = components["image_encoder"].state_dict()
    for key, value in encoder.items():
        if key.startswith("projector."):
            out[PROJECTOR_PREFIX + key[len("projector."):]] = value
            continue
        key = key[len("dinov2."):]
        match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
        if match is None:
            head, _, kind = key.rpartition(".")
            out[DINOV2_PREFIX + (fixed[key] if key in fixed else f"{fixed[head]}.{kind}")] = value
            continue
        layer, part, kind = match.groups()
        dst = f"{DINOV2_PREFIX}blocks.{layer}."
        if part == "attention.q_proj":
            stem = f"dinov2.encoder.layer.{layer}.attention."
            out[f"{dst}attn.qkv.{kind}"] = torch.cat([encoder[f"{stem}{n}.{kind}"] for n in ("q_proj", "k_proj", "v_proj")])
        elif part == "mlp.gate_proj":
            stem = f"dinov2.encoder.layer.{layer}.mlp."
            out[f"{dst}mlp.w12.{kind}"] = torch.cat([encoder[f"{stem}gate_proj.{kind}"], encoder[f"{stem}up_proj.{kind}"]])
        elif part in ("layer_scale1", "layer_scale2"):
            out[f"{dst}ls{part[-1]}.gamma"] = value
        elif part in parts:
            out[f"{dst}{parts[part]}.{kind}"] = value
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="official AnyDoor checkpoint (.ckpt, pickled state dict)")
    parser.add_argument("out_dir", help="folder to write (unet/, controlnet/, vae/, image_encoder/, config.json)")
    parser.add_argument("--dinov2", help="dinov2_vitg14_pretrain.pth from the DINOv2 release")
    parser.add_argument("--config", help="AnyDoor config.json (defaults to the released model's)")
    args = parser.parse_args(argv)
    config = AnyDoorConfig.from_json(args.config) if args.config else None
    out = convert_checkpoint(args.checkpoint, args.out_dir, args.dinov2, config)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

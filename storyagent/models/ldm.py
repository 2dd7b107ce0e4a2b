"""The latent-diffusion (ldm) checkpoint layout shared by DynamiCrafter and AnyDoor.

Both upstream models are `ldm` LatentDiffusion subclasses: the same `ddconfig` autoencoder, the
same openaimodel ResBlocks, the same "linear" (sqrt-spaced) beta schedule and the same schedule
buffers in the checkpoint. This module holds that shared layout once, as rename tables:

* a rename table maps a module prefix in the upstream checkpoint to one in our modules; the
  longest matching prefix wins, and a key no entry covers raises `ConversionError` naming it;
* after renaming, `check_keys` compares the result with the module's own state dict and raises
  `ConversionError` naming every missing or unexpected key;
* the inverse of a table (ours -> upstream, used to write official-layout fixtures) is derived
  from the same table by `invert`, never retyped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import AutoencoderKL

from storyagent.errors import ConversionError

Renames = dict[str, str]
StateDict = dict[str, torch.Tensor]

# Buffers every LatentDiffusion checkpoint carries; the converters rebuild them from the config.
SCHEDULE_BUFFERS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "scale_arr", "logvar",
})

# openaimodel ResBlock (UNet, ControlNet) -> diffusers ResnetBlock2D names.
RESBLOCK_PARTS: Renames = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}
# ldm VAE ResnetBlock -> diffusers ResnetBlock2D names.
VAE_RESBLOCK_PARTS: Renames = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                               "nin_shortcut": "conv_shortcut"}
# ldm VAE AttnBlock (1x1 convs) -> diffusers Attention (Linear layers).
VAE_ATTENTION_PARTS: Renames = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


# ---------------------------------------------------------------------------------- schedule
def sqrt_linear_betas(linear_start: float, linear_end: float, timesteps: int) -> np.ndarray:
    """ldm's "linear" schedule: betas spaced linearly in sqrt(beta), squared, in float64 as upstream."""
    return np.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=np.float64) ** 2


# ---------------------------------------------------------------------------------- renaming
def module_renames(src: str, dst: str, parts: Renames) -> Renames:
    """`src.<part>` -> `dst.<parts[part]>` for every part of one block."""
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in parts.items()}


def take(state: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def rename_keys(state: StateDict, renames: Renames, what: str, prefix: str = "") -> StateDict:
    """Rename every key by its longest matching module prefix in `renames`; an unmapped key raises
    `ConversionError` naming it as the checkpoint does (`prefix` + key)."""
    ordered = sorted(renames, key=len, reverse=True)
    out: StateDict = {}
    for key, value in state.items():
        new = _renamed(key, renames, ordered)
        if new is None:
            raise ConversionError(f"The {what} weights hold {prefix + key!r}, which the converter's layout does "
                                  "not have; is this the checkpoint the config describes?")
        out[new] = value
    return out


def _renamed(key: str, renames: Renames, ordered: list[str]) -> str | None:
    for src in ordered:
        if key == src or key.startswith(src + "."):
            return renames[src] + key[len(src):]
    return None


def invert(renames: Renames) -> Renames:
    """The table read the other way (ours -> upstream)."""
    return {dst: src for src, dst in renames.items()}


def check_keys(converted: Iterable[str], expected: Iterable[str], what: str, optional: Iterable[str] = (),
               renames: Renames | None = None, prefix: str = "") -> None:
    """Raise `ConversionError` naming the keys a converted state dict lacks or has in excess.

    With the `renames` table that produced `converted`, keys are named as the checkpoint names them
    (`prefix` + upstream name), so the user finds them in their file.
    """
    converted, expected, optional = set(converted), set(expected), set(optional)
    missing = sorted(expected - converted - optional)
    unexpected = sorted(converted - expected)
    if not missing and not unexpected:
        return
    back = invert(renames) if renames else {}
    ordered = sorted(back, key=len, reverse=True)
    name = lambda key: prefix + (_renamed(key, back, ordered) or key)  # noqa: E731
    parts = ([f"missing {len(missing)} ({', '.join(map(name, missing[:5]))})"] if missing else []) + \
            ([f"unexpected {len(unexpected)} ({', '.join(map(name, unexpected[:5]))})"] if unexpected else [])
    raise ConversionError(f"The {what} weights do not match the model: {'; '.join(parts)}.")


def reject_unknown_entries(state: StateDict, prefixes: Iterable[str], ignored: Iterable[str] = SCHEDULE_BUFFERS,
                           ignored_prefixes: Iterable[str] = ()) -> None:
    """Raise `ConversionError` for a key under none of `prefixes` that is not a known ignorable entry."""
    prefixes, ignored, ignored_prefixes = tuple(prefixes), set(ignored), tuple(ignored_prefixes)
    unknown = sorted(k for k in state if k not in ignored and not k.startswith(prefixes + ignored_prefixes))
    if unknown:
        raise ConversionError(f"The checkpoint holds {len(unknown)} entries no part of the model uses "
                              f"({', '.join(unknown[:5])}); is this the checkpoint the config describes?")


# ---------------------------------------------------------------------------------- the VAE
class DDConfig(Protocol):
    in_channels: int
    out_ch: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    resolution: int
    double_z: bool


def build_autoencoder(cfg: DDConfig, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """A diffusers AutoencoderKL with the layout of an upstream ddconfig (the same network, other names)."""
    if getattr(cfg, "attn_resolutions", None):
        raise NotImplementedError("VAEs with attention inside the resolution levels (attn_resolutions) are not "
                                  "supported; the released DynamiCrafter and AnyDoor VAEs have none.")
    if not cfg.double_z:
        raise NotImplementedError("Only Gaussian VAEs (double_z: true) are supported.")
    levels = len(cfg.ch_mult)
    return AutoencoderKL(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_ch,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult),
        layers_per_block=cfg.num_res_blocks,
        latent_channels=cfg.z_channels,
        norm_num_groups=32,
        sample_size=cfg.resolution,
        scaling_factor=scaling_factor,
    )


def vae_renames(cfg: DDConfig) -> Renames:
    """ldm `ddconfig` AutoencoderKL -> diffusers AutoencoderKL."""
    levels = len(cfg.ch_mult)
    renames: Renames = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        renames |= {f"{part}.conv_in": f"{part}.conv_in", f"{part}.conv_out": f"{part}.conv_out",
                    f"{part}.norm_out": f"{part}.conv_norm_out"}
        for b in (1, 2):
            renames |= module_renames(f"{part}.mid.block_{b}", f"{part}.mid_block.resnets.{b - 1}", VAE_RESBLOCK_PARTS)
        renames |= module_renames(f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0", VAE_ATTENTION_PARTS)
    for level in range(levels):
        for j in range(cfg.num_res_blocks):
            renames |= module_renames(f"encoder.down.{level}.block.{j}", f"encoder.down_blocks.{level}.resnets.{j}",
                                      VAE_RESBLOCK_PARTS)
        renames[f"encoder.down.{level}.downsample.conv"] = f"encoder.down_blocks.{level}.downsamplers.0.conv"
        up = levels - 1 - level  # ldm's decoder.up[0] is the finest level, diffusers' up_blocks[0] the coarsest
        for j in range(cfg.num_res_blocks + 1):
            renames |= module_renames(f"decoder.up.{level}.block.{j}", f"decoder.up_blocks.{up}.resnets.{j}",
                                      VAE_RESBLOCK_PARTS)
        renames[f"decoder.up.{level}.upsample.conv"] = f"decoder.up_blocks.{up}.upsamplers.0.conv"
    return renames


def convert_vae(state: StateDict, cfg: DDConfig, prefix: str = "first_stage_model.") -> StateDict:
    """ldm VAE state dict (without its `prefix`) -> diffusers AutoencoderKL state dict."""
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}  # training-only loss weights
    renames = vae_renames(cfg)
    out = rename_keys(state, renames, "VAE", prefix)
    for key, value in out.items():
        # ldm's attention uses 1x1 convs, diffusers Linear layers: (out, in, 1, 1) -> (out, in)
        if ".mid_block.attentions." in key and key.endswith("weight") and value.ndim == 4:
            out[key] = value[:, :, 0, 0]
    check_keys(out, build_autoencoder_on_meta(cfg).state_dict(), "VAE", renames=renames, prefix=prefix)
    return out


def vae_to_ldm(state: StateDict, cfg: DDConfig) -> StateDict:
    """The inverse of `convert_vae`: diffusers AutoencoderKL state dict -> ldm names."""
    out = rename_keys(state, invert(vae_renames(cfg)), "converted VAE")
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith("weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]
    return out


def build_autoencoder_on_meta(cfg: DDConfig) -> AutoencoderKL:
    with torch.device("meta"):
        return build_autoencoder(cfg)


def official_names(build: Callable[[], torch.nn.Module], renames: Mapping[str, str], prefix: str) -> list[str]:
    """The checkpoint names of a module's weights: `build()` (on the meta device, nothing allocated) through
    its rename table read backwards."""
    with torch.device("meta"):
        ours = build().state_dict()
    return sorted(prefix + k for k in rename_keys(dict.fromkeys(ours), invert(dict(renames)), "converted"))


def refuse_foreign_state(state: Mapping[str, Any], expected: list[str], path: str | os.PathLike[str],
                         what: str) -> None:
    """Refuse a state dict holding none of `expected` (the checkpoint names of the model's UNet, which every
    checkpoint of the model holds), naming the first few and how many."""
    if any(key in state for key in expected):
        return  # the model's, if perhaps incomplete: the conversion names what is missing
    raise ConversionError(f"{path} is not {what}: it holds none of the model's {len(expected)} UNet weights "
                          f"({', '.join(expected[:3])}, ...); give the official checkpoint.")

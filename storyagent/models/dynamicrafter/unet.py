"""The DynamiCrafter 3D UNet: a 2D latent-diffusion UNet run on every frame, with temporal layers.

Every resolution level stacks stages of [ResBlock (+ temporal conv) → spatial transformer with
dual text/image cross-attention → temporal transformer]. An extra temporal transformer follows the
input convolution, and the timestep embedding is summed with an embedding of the fps / frame stride.

Inside the network frames are folded into the batch, (b t) c h w; temporal layers unfold them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.utils.checkpoint import checkpoint

from storyagent.models.dynamicrafter.attention import DualCrossAttention, SpatialTransformer, TemporalTransformer
from storyagent.models.dynamicrafter.config import UNetConfig


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (keeps bf16/fp16 runs stable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class TemporalConv(nn.Module):
    """GroupNorm → SiLU → (Dropout) → Conv3d with a (3, 1, 1) kernel: mixes neighbouring frames."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32, channels)
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(F.silu(self.norm(x))))


class TemporalConvBlock(nn.Module):
    """Four temporal convolutions with a residual connection around them (b c t h w)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        # The first convolution has no dropout (as trained).
        self.conv1 = TemporalConv(channels, 0.0)
        self.conv2 = TemporalConv(channels, dropout)
        self.conv3 = TemporalConv(channels, dropout)
        self.conv4 = TemporalConv(channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """ResNet block with an additive timestep embedding, optionally followed by a TemporalConvBlock."""

    def __init__(self, in_channels: int, emb_channels: int, out_channels: int | None = None,
                 dropout: float = 0.0, temporal_conv: bool = False) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = GroupNorm32(32, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(emb_channels, out_channels)
        self.norm2 = GroupNorm32(32, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if out_channels != in_channels else None
        self.temporal_conv = TemporalConvBlock(out_channels) if temporal_conv else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.temporal_conv is not None:
            # (b t) c h w -> b c t h w -> (b t) c h w
            bt, c, hh, ww = h.shape
            h5 = h.view(bt // frames, frames, c, hh, ww).transpose(1, 2)
            h = self.temporal_conv(h5).transpose(1, 2).reshape(bt, c, hh, ww)
        return h


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def fold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    # (b t) c h w -> b c t h w
    bt, c, h, w = x.shape
    return x.view(bt // frames, frames, c, h, w).transpose(1, 2)


def unfold_frames(x: torch.Tensor) -> torch.Tensor:
    # b c t h w -> (b t) c h w
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class UNetStage(nn.Module):
    """One step of the UNet: any of resnet → spatial → temporal → resnet2 → resample, in that order."""

    SLOTS = ("resnet", "spatial", "temporal", "resnet2", "resample")

    def __init__(self, **modules: nn.Module) -> None:
        super().__init__()
        for name in self.SLOTS:
            setattr(self, name, modules.get(name))

    @property
    def layout(self) -> list[str]:
        return [name for name in self.SLOTS if getattr(self, name) is not None]

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None, frames: int,
                module_contexts: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.resnet is not None:
            x = self.resnet(x, emb, frames)
        if self.spatial is not None:
            if module_contexts is not None:
                context = [module_contexts[a.index] for a in self.spatial.cross_attentions]
            x = self.spatial(x, context)
        if self.temporal is not None:
            x = unfold_frames(self.temporal(fold_frames(x, frames)))
        if self.resnet2 is not None:
            x = self.resnet2(x, emb, frames)
        if self.resample is not None:
            x = self.resample(x)
        return x


@dataclass
class StagePlan:
    """What a stage holds, computed from the config alone (shared by the model and the converter)."""

    layout: list[str]
    in_channels: int
    out_channels: int
    heads: int = 0


def plan_stages(cfg: UNetConfig) -> tuple[list[StagePlan], StagePlan, list[StagePlan]]:
    """The down, middle and up stages of the UNet for `cfg`."""
    attn = ["spatial", "temporal"] if cfg.temporal_attention else ["spatial"]
    down: list[StagePlan] = []
    skip_channels = [cfg.model_channels]
    ch, ds = cfg.model_channels, 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            out = mult * cfg.model_channels
            has_attn = ds in cfg.attention_resolutions
            down.append(StagePlan(["resnet", *(attn if has_attn else [])], ch, out, out // cfg.num_head_channels))
            ch = out
            skip_channels.append(ch)
        if level != len(cfg.channel_mult) - 1:
            down.append(StagePlan(["resample"], ch, ch))
            skip_channels.append(ch)
            ds *= 2
    mid = StagePlan(["resnet", *attn, "resnet2"], ch, ch, ch // cfg.num_head_channels)
    up: list[StagePlan] = []
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        for i in range(cfg.num_res_blocks + 1):
            out = mult * cfg.model_channels
            has_attn = ds in cfg.attention_resolutions
            layout = ["resnet", *(attn if has_attn else [])]
            if level and i == cfg.num_res_blocks:
                layout.append("resample")
            up.append(StagePlan(layout, ch + skip_channels.pop(), out, out // cfg.num_head_channels))
            ch = out
        ds //= 2
    return down, mid, up


class DynamiCrafterUNet(nn.Module):
    """The denoiser. forward(x: b c t h w, timesteps: b, context: b l d, fs: b) -> b c_out t h w."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.use_relative_position:
            raise NotImplementedError("Relative position embeddings in temporal attention are not supported "
                                      "(no released DynamiCrafter model uses them).")
        self.config = config
        c = config.model_channels
        emb_dim = 4 * c
        self.gradient_checkpointing = config.use_checkpoint
        self.time_proj = Timesteps(c, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c, emb_dim)
        self.fs_embedding = TimestepEmbedding(c, emb_dim) if config.fs_condition else None
        self.conv_in = nn.Conv2d(config.in_channels, c, 3, padding=1)
        self.init_temporal_attn = (
            TemporalTransformer(c, config.init_attn_heads, config.num_head_channels, config.transformer_depth)
            if config.addition_attention else None
        )
        down, mid, up = plan_stages(config)
        self.down_stages = nn.ModuleList(self._build(p, emb_dim, up_path=False) for p in down)
        self.mid_stage = self._build(mid, emb_dim, up_path=False)
        self.up_stages = nn.ModuleList(self._build(p, emb_dim, up_path=True) for p in up)
        self.norm_out = GroupNorm32(32, c)
        self.conv_out = nn.Conv2d(c, config.out_channels, 3, padding=1)
        for i, attn in enumerate(self.cross_attentions):
            attn.index = i

    def _build(self, plan: StagePlan, emb_dim: int, up_path: bool) -> UNetStage:
        cfg = self.config
        mods: dict[str, nn.Module] = {}
        for name in plan.layout:
            if name in ("resnet", "resnet2"):
                cin = plan.in_channels if name == "resnet" else plan.out_channels
                mods[name] = ResBlock(cin, emb_dim, plan.out_channels, cfg.dropout, cfg.temporal_conv)
            elif name == "spatial":
                mods[name] = SpatialTransformer(
                    plan.out_channels, plan.heads, cfg.num_head_channels, cfg.transformer_depth, cfg.context_dim,
                    image_cross_attention=cfg.image_cross_attention,
                    image_scale_learnable=cfg.image_cross_attention_scale_learnable,
                    text_context_len=cfg.text_context_len,
                )
            elif name == "temporal":
                mods[name] = TemporalTransformer(plan.out_channels, plan.heads, cfg.num_head_channels,
                                                 cfg.transformer_depth, causal=cfg.use_causal_attention)
            elif name == "resample":
                mods[name] = Upsample(plan.out_channels) if up_path else Downsample(plan.out_channels)
        return UNetStage(**mods)

    @property
    def cross_attentions(self) -> list[DualCrossAttention]:
        """The spatial cross-attention modules in forward order (16 in the 512 model)."""
        stages = [*self.down_stages, self.mid_stage, *self.up_stages]
        return [a for s in stages if s.spatial is not None for a in s.spatial.cross_attentions]

    def expand_context(self, context: torch.Tensor, frames: int) -> torch.Tensor:
        """b l d -> (b t) l' d: text repeated per frame, image tokens split per frame when there is a set per frame."""
        cfg = self.config
        b, length, d = context.shape
        per_frame = cfg.text_context_len + frames * cfg.image_tokens_per_frame
        if cfg.image_cross_attention and length == per_frame:
            text = context[:, : cfg.text_context_len].repeat_interleave(frames, dim=0)
            # b (t l) d -> (b t) l d
            image = context[:, cfg.text_context_len :].reshape(b * frames, cfg.image_tokens_per_frame, d)
            return torch.cat([text, image], dim=1)
        return context.repeat_interleave(frames, dim=0)

    def _run(self, stage: UNetStage, *args) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, *args, use_reentrant=False)
        return stage(*args)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        fs: torch.Tensor | None = None,
        module_contexts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Predict v (or eps) for `x` (b c t h w).

        `module_contexts`, when given, holds one context per cross-attention module (b l d each, same
        layout as `context`); module i attends to its own entry. LoRA-BE uses it to give each module
        its own subject-token embedding.
        """
        b, _, t, h, w = x.shape
        dtype = self.conv_in.weight.dtype
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype))
        if self.fs_embedding is not None:
            if fs is None:
                fs = torch.full((b,), self.config.default_fs, dtype=torch.long, device=x.device)
            emb = emb + self.fs_embedding(self.time_proj(fs).to(dtype))
        emb = emb.repeat_interleave(t, dim=0)
        context = self.expand_context(context.to(dtype), t)
        if module_contexts is not None:
            module_contexts = [self.expand_context(c.to(dtype), t) for c in module_contexts]

        hidden = self.conv_in(unfold_frames(x.to(dtype)))
        if self.init_temporal_attn is not None:
            hidden = unfold_frames(self.init_temporal_attn(fold_frames(hidden, t)))
        skips = [hidden]
        for stage in self.down_stages:
            hidden = self._run(stage, hidden, emb, context, t, module_contexts)
            skips.append(hidden)
        hidden = self._run(self.mid_stage, hidden, emb, context, t, module_contexts)
        for stage in self.up_stages:
            hidden = self._run(stage, torch.cat([hidden, skips.pop()], dim=1), emb, context, t, module_contexts)
        out = self.conv_out(F.silu(self.norm_out(hidden)))
        return fold_frames(out, t).to(x.dtype)

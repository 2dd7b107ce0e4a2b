"""Consistent Self-Attention (StoryDiffusion, Zhou et al. 2024) as a diffusers attention processor.

While a batch of "identity" shots is denoised together, each image's self-attention also sees a
random sample of the other identity images' tokens, so the subject's look is negotiated between
them. The sampled tokens are stored per layer and denoising step ("the bank"); the remaining
shots are denoised afterwards and attend to their own tokens plus the bank, so they inherit the
same subject without being in the batch.

Compared with upstream, which builds a dense (n·T)×(n·T) boolean mask over the concatenated
images, each image here gathers exactly its own T tokens plus k = ratio·T sampled tokens of every
other identity image. The keys are shorter (T + (n-1)k instead of n·T), no mask is needed, and
`F.scaled_dot_product_attention` keeps its fused kernels. With ratio 0 the processor computes
plain self-attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch.nn import functional as F

from storyagent.models.storydiffusion.config import ConsistentAttentionConfig

Mode = Literal["off", "write", "read"]


@dataclass
class ConsistentAttentionState:
    """What every installed processor shares: the phase, the step, the sampler and the bank."""

    config: ConsistentAttentionConfig
    """How much each image sees of the others, and where."""
    mode: Mode = "off"
    """The phase: "write" while the identity shots fill the bank, "read" while the rest use it, else "off"."""
    step: int = 0
    """The denoising step the next attention call belongs to (the bank's second key)."""
    images_in_batch: int = 1
    """Prompts in the current pipeline call; the batch is `images_in_batch` times the CFG branches."""
    image_size: tuple[int, int] = (1024, 1024)
    """(height, width) in pixels, to tell which scale a layer runs at from its token count."""
    generator: torch.Generator = field(default_factory=lambda: torch.Generator("cpu"))
    """Draws which tokens are shared; reseeded at every write phase."""
    bank: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    """layer name → step → sampled identity tokens, (branches, n_identity·k, C)."""
    write_branches: int | None = None
    """Guidance branches (1 or 2) the write phase ran with; a read phase must match them."""

    def begin(self, mode: Mode, images_in_batch: int, image_size: tuple[int, int], seed: int | None = None) -> None:
        """Start a pipeline call in `mode`; a new write phase empties the bank and reseeds the sampler."""
        self.mode, self.step, self.images_in_batch, self.image_size = mode, 0, images_in_batch, image_size
        if mode == "write":
            self.bank.clear()
            self.write_branches = None
            self.generator.manual_seed(0 if seed is None else seed)

    def clear(self) -> None:
        """Empty the bank and switch the processors off."""
        self.bank.clear()
        self.mode, self.step, self.write_branches = "off", 0, None

    def on_step_end(self, pipe: object, step: int, timestep: object, callback_kwargs: dict) -> dict:
        """diffusers `callback_on_step_end`: the bank is keyed by the step that comes next."""
        self.step = step + 1
        return callback_kwargs

    def ratio_for_tokens(self, num_tokens: int) -> float:
        height, width = self.image_size
        pixels_per_token = round(math.sqrt(height * width / num_tokens))
        return self.config.ratio_for(pixels_per_token)


class ConsistentSelfAttentionProcessor:
    """Self-attention that shares sampled tokens between identity images (write) or reads them (read)."""

    def __init__(self, name: str, state: ConsistentAttentionState) -> None:
        self.name = name
        self.state = state
        self.plain = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        # Only self-attention in 3-D token layout is rewritten; anything else (a cross-attention
        # layer matched by mistake, a mask, spatial norms) falls back to diffusers' processor.
        plain = (
            self.state.mode == "off"
            or encoder_hidden_states is not None
            or attention_mask is not None
            or hidden_states.ndim != 3
            or attn.spatial_norm is not None
            or attn.group_norm is not None
        )
        if plain:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        residual = hidden_states
        batch, num_tokens, _ = hidden_states.shape
        if batch % self.state.images_in_batch:
            raise RuntimeError(f"{self.name}: batch {batch} is not a multiple of {self.state.images_in_batch} images")
        branches = batch // self.state.images_in_batch
        query = attn.to_q(hidden_states)
        if self.state.mode == "write":
            key, value = self._write(attn, hidden_states, branches)
        else:
            key, value = self._read(attn, hidden_states, branches)

        # (b, L, heads·d) → (b, heads, L, d)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = self.attend(query, key, value)
        out = out.transpose(1, 2).reshape(batch, num_tokens, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The attention itself; a seam so tests can see exactly which tokens were attended to."""
        return F.scaled_dot_product_attention(query, key, value)

    def _write(self, attn: Attention, hidden_states: torch.Tensor, branches: int) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state
        n = state.images_in_batch
        batch, num_tokens, channels = hidden_states.shape
        k = round(state.ratio_for_tokens(num_tokens) * num_tokens)
        if state.write_branches is None:
            state.write_branches = branches

        # The same k tokens of image j are shared with every other image and with both CFG
        # branches: the sample belongs to the image, not to the guidance branch.
        scores = torch.rand(n, num_tokens, generator=state.generator)
        picked = scores.argsort(dim=1)[:, :k].sort(dim=1).values.to(hidden_states.device)  # (n, k)

        tokens = hidden_states.view(branches, n, num_tokens, channels)
        sampled = torch.gather(tokens, 2, picked.view(1, n, k, 1).expand(branches, n, k, channels))  # (br, n, k, C)
        stored = sampled.reshape(branches, n * k, channels).detach()
        if state.config.bank_device == "cpu":
            stored = stored.to("cpu", non_blocking=True)
        state.bank.setdefault(self.name, {})[state.step] = stored

        key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)  # (b, T, C')
        if k == 0 or n == 1:
            return key, value
        # others[i] lists every identity image but i: (n, n-1)
        others = torch.tensor([[j for j in range(n) if j != i] for i in range(n)], device=hidden_states.device)
        return self._with_others(key, picked, others, branches), self._with_others(value, picked, others, branches)

    @staticmethod
    def _with_others(proj: torch.Tensor, picked: torch.Tensor, others: torch.Tensor, branches: int) -> torch.Tensor:
        """Each image's own T projected tokens followed by the sampled tokens of the other images."""
        batch, num_tokens, channels = proj.shape
        n, k = picked.shape
        per_image = proj.view(branches, n, num_tokens, channels)
        sampled = torch.gather(per_image, 2, picked.view(1, n, k, 1).expand(branches, n, k, channels))  # (br, n, k, C')
        from_others = sampled[:, others].reshape(branches, n, (n - 1) * k, channels)  # (br, n, (n-1)k, C')
        return torch.cat([per_image, from_others], dim=2).view(batch, num_tokens + (n - 1) * k, channels)

    def _read(self, attn: Attention, hidden_states: torch.Tensor, branches: int) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state
        stored = state.bank.get(self.name, {}).get(state.step)
        if stored is None:
            raise RuntimeError(
                f"{self.name}: no identity tokens stored for step {state.step}; run the identity shots "
                "first with the same number of steps"
            )
        if stored.shape[0] != branches:
            raise RuntimeError(
                f"{self.name}: the identity shots ran with {stored.shape[0]} guidance branch(es), this call with "
                f"{branches}; use the same guidance scale for every shot"
            )
        stored = stored.to(hidden_states.device, hidden_states.dtype)
        m = state.images_in_batch
        key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)  # (b, T, C')
        bank_key, bank_value = attn.to_k(stored), attn.to_v(stored)  # (br, n·k, C')

        def append_bank(own: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
            # branch-major batch: rows [br·m, (br+1)·m) share branch br's bank
            bank = bank.repeat_interleave(m, dim=0)  # (b, n·k, C')
            return torch.cat([own, bank], dim=1)

        return append_bank(key, bank_key), append_bank(value, bank_value)


def consistent_layer_names(unet: torch.nn.Module, blocks: tuple[str, ...]) -> list[str]:
    """Processor keys of the self-attention layers (`attn1`) inside `blocks`."""
    names = getattr(unet, "attn_processors", {})
    return [name for name in names if name.endswith("attn1.processor") and name.startswith(blocks)]


def install_consistent_attention(unet: torch.nn.Module, state: ConsistentAttentionState) -> list[str]:
    """Put the processor on the chosen self-attention layers; the others get diffusers' SDPA processor."""
    chosen = set(consistent_layer_names(unet, state.config.blocks))
    if not chosen:
        raise ValueError(f"the UNet has no self-attention layers in {state.config.blocks}")
    processors = {
        name: ConsistentSelfAttentionProcessor(name, state) if name in chosen else AttnProcessor2_0()
        for name in unet.attn_processors
    }
    unet.set_attn_processor(processors)
    return sorted(chosen)


def remove_consistent_attention(unet: torch.nn.Module) -> None:
    unet.set_attn_processor(AttnProcessor2_0())

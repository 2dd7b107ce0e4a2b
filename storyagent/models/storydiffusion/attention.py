"""Consistent Self-Attention (StoryDiffusion, Zhou et al. 2024) as a diffusers attention processor.

While a batch of "identity" shots is denoised together, each image's self-attention also sees a
random sample of the other identity images' tokens, so the subject's look is negotiated between
them. The sampled tokens are stored per layer and denoising step ("the bank"); the remaining
shots are denoised afterwards and attend to their own tokens plus the bank, so they inherit the
same subject without being in the batch.

Schedule, as upstream's current app (HVision-NKU/StoryDiffusion @ 8de45e4,
gradio_app_sdxl_specific_id_low_vram.py, `SpatialAttnProcessor2_0.__call__`): the first
`skip_steps` steps use plain self-attention; after that every layer call falls back to plain
self-attention with a small chance (0.3 before step 20, 0.1 after), drawn once per call. The
token sample is drawn once per denoising step and resolution and shared by every layer of that
resolution in the step (upstream redraws its indices after a step's last layer). The write phase
banks its sample at every step it shares, whether or not that call was bypassed, because a read
shot draws its own bypasses and may need any layer.

How this differs from upstream, and why:
- Upstream's older apps build a dense (n·T)×(n·T) boolean mask over the concatenated images. A
  boolean mask gives masked keys weight exactly 0, so gathering the unmasked keys instead is the
  same attention: each image here attends to its own T tokens plus k sampled tokens of every other
  identity image. The keys are shorter (T + (n-1)k instead of n·T) and `F.scaled_dot_product_attention`
  keeps its fused kernels. Those apps also store the identity images' full tokens and draw a fresh
  mask in the read phase; we, like the low-VRAM app, store only the write phase's sample and the
  read phase reads exactly that (the same marginal distribution of tokens, n·k instead of n·T
  tokens stored per layer and step).
- Upstream keeps every token independently with probability ratio (a varying count); we keep
  exactly k = round(ratio·T) tokens, the same expected share, so the images' key lengths agree
  and stack into one batch.
- Skipped steps store nothing: no read call attends to the bank there.
- Draws come from seeded generators in the state, not Python's global `random`: the write phase's
  from the identity pass's seeds, each read shot's from its own seed. Upstream reads one shot at a
  time and reseeds (`setup_seed(seed_)`) before each, so a read shot's draws depend on it alone
  there too; here that also holds when several read shots share a batch (each image draws its own
  bypass per layer call).

With ratio 0, or with every call bypassed, the processor computes plain self-attention.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch.nn import functional as F

from storyagent.models.storydiffusion.config import ConsistentAttentionConfig

Mode = Literal["off", "write", "read"]


def seeded(role: str, *seeds: int) -> torch.Generator:
    """A CPU generator that depends on `role` and `seeds` only. The role keeps the token sampler,
    the bypass draws and a shot's starting noise (seeded with the bare seed) independent streams."""
    digest = hashlib.blake2b(f"{role}:{','.join(map(str, seeds))}".encode(), digest_size=8).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest, "little"))


@dataclass
class ConsistentAttentionState:
    """What every installed processor shares: the phase, the step, the random draws and the bank."""

    config: ConsistentAttentionConfig
    """How much each image sees of the others, where, and when."""
    mode: Mode = "off"
    """The phase: "write" while the identity shots fill the bank, "read" while the rest use it, else "off"."""
    step: int = 0
    """The denoising step the next attention call belongs to (the bank's second key)."""
    images_in_batch: int = 1
    """Prompts in the current pipeline call; the batch is `images_in_batch` times the CFG branches."""
    image_size: tuple[int, int] = (1024, 1024)
    """(height, width) in pixels, to tell which scale a layer runs at from its token count."""
    sampler: torch.Generator = field(default_factory=lambda: torch.Generator("cpu"))
    """Draws which tokens the identity images share; seeded from the identity pass at every write phase."""
    bypass: list[torch.Generator] = field(default_factory=list)
    """Draws which layer calls fall back to plain attention: one generator for the whole identity
    batch (write), one per image (read)."""
    samples: dict[int, torch.Tensor] = field(default_factory=dict)
    """Token count → this step's sampled token positions per identity image, (n, k); drawn at the
    first layer of that resolution in the step, shared by the step's other layers of that resolution."""
    bank: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    """layer name → step → sampled identity tokens, (branches, n_identity·k, C)."""

    def begin(self, mode: Literal["write", "read"], seeds: Sequence[int], image_size: tuple[int, int]) -> None:
        """Start a pipeline call over images with these seeds.

        "write": `seeds` are the identity pass's; the bank is emptied and every draw of the phase
        depends on these seeds alone. "read": every image draws its bypasses from its own seed.
        """
        self.mode, self.step, self.image_size, self.images_in_batch = mode, 0, image_size, len(seeds)
        self.samples.clear()
        if mode == "write":
            self.bank.clear()
            self.sampler = seeded("sample", *seeds)
            # upstream draws one bypass per layer call for the whole identity batch
            self.bypass = [seeded("write-bypass", *seeds)]
        else:
            self.bypass = [seeded("read-bypass", seed) for seed in seeds]

    def clear(self) -> None:
        """Empty the bank and switch the processors off."""
        self.bank.clear()
        self.samples.clear()
        self.mode, self.step, self.bypass = "off", 0, []

    def on_step_end(self, pipe: object, step: int, timestep: object, callback_kwargs: dict) -> dict:
        """diffusers `callback_on_step_end`: the bank is keyed by the step that comes next, which draws a new sample."""
        self.step = step + 1
        self.samples.clear()
        return callback_kwargs

    @property
    def sharing_step(self) -> bool:
        """Whether this step shares tokens at all (else it is one of the skipped first steps)."""
        return self.step >= self.config.skip_steps

    def sharing(self) -> torch.Tensor:
        """Per image of the batch, whether this layer call shares tokens, (images,) bool; one draw per call."""
        if not self.sharing_step:
            return torch.zeros(self.images_in_batch, dtype=torch.bool)
        draws = torch.cat([torch.rand(1, generator=g) for g in self.bypass])  # (1,) write, (images,) read
        return (draws >= self.config.bypass_chance(self.step)).expand(self.images_in_batch)

    def picked(self, num_tokens: int, device: torch.device) -> torch.Tensor:
        """This step's sampled token positions of every identity image at this resolution, (n, k)."""
        sample = self.samples.get(num_tokens)
        if sample is None:
            k = round(self.ratio_for_tokens(num_tokens) * num_tokens)
            scores = torch.rand(self.images_in_batch, num_tokens, generator=self.sampler)
            sample = scores.argsort(dim=1)[:, :k].sort(dim=1).values.to(device)  # (n, k)
            self.samples[num_tokens] = sample
        return sample

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
        unsupported = (
            self.state.mode == "off"
            or encoder_hidden_states is not None
            or attention_mask is not None
            or hidden_states.ndim != 3
            or attn.spatial_norm is not None
            or attn.group_norm is not None
        )
        if unsupported:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        state = self.state
        residual = hidden_states
        batch, num_tokens, _ = hidden_states.shape
        if batch % state.images_in_batch:
            raise RuntimeError(f"{self.name}: batch {batch} is not a multiple of {state.images_in_batch} images")
        branches = batch // state.images_in_batch

        # 1. Which images share in this call: none in the skipped steps, then all but a random few.
        shares = state.sharing()  # (images,)

        # 2. The write phase banks this step's sample even when the call is bypassed.
        picked = None
        if state.mode == "write" and state.sharing_step:
            picked = state.picked(num_tokens, hidden_states.device)
            stored = self._gather(hidden_states, picked, branches).flatten(1, 2).detach()  # (br, n·k, C)
            if state.config.bank_device == "cpu":
                stored = stored.to("cpu", non_blocking=True)
            state.bank.setdefault(self.name, {})[state.step] = stored

        # 3. Keys and values: the image's own tokens, followed by the shared ones when any image shares.
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)  # (b, T, C')
        if shares.any():
            if picked is not None:
                extra_key, extra_value = (self._from_others(proj, picked, branches) for proj in (key, value))
            else:
                extra_key, extra_value = self._from_bank(attn, hidden_states, branches)
            key, value = torch.cat([key, extra_key], dim=1), torch.cat([value, extra_value], dim=1)

        # (b, L, heads·d) → (b, heads, L, d)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # 4. Attention: sharing images over every key, bypassed ones over their own T tokens only.
        #    Rows are branch-major (row br·n + i is image i), so the per-image choice repeats per branch.
        rows = shares.repeat(branches).to(hidden_states.device)  # (b,)
        if rows.all():
            out = self.attend(query, key, value)
        elif not rows.any():
            out = self.attend(query, key[:, :, :num_tokens], value[:, :, :num_tokens])
        else:  # read shots batched together and drawn differently
            out = torch.empty_like(query)
            out[rows] = self.attend(query[rows], key[rows], value[rows])
            own = ~rows
            out[own] = self.attend(query[own], key[own, :, :num_tokens], value[own, :, :num_tokens])

        out = out.transpose(1, 2).reshape(batch, num_tokens, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The attention itself; a seam so tests can see exactly which tokens were attended to."""
        return F.scaled_dot_product_attention(query, key, value)

    @staticmethod
    def _gather(tokens: torch.Tensor, picked: torch.Tensor, branches: int) -> torch.Tensor:
        """The picked tokens of every image, (branches, n, k, C): the sample belongs to the image,
        not to the guidance branch, so both branches share the same positions."""
        _, num_tokens, channels = tokens.shape
        n, k = picked.shape
        per_image = tokens.view(branches, n, num_tokens, channels)
        return torch.gather(per_image, 2, picked.view(1, n, k, 1).expand(branches, n, k, channels))

    @classmethod
    def _from_others(cls, proj: torch.Tensor, picked: torch.Tensor, branches: int) -> torch.Tensor:
        """For each image, the sampled projected tokens of every other identity image, (b, (n-1)k, C')."""
        n, k = picked.shape
        sampled = cls._gather(proj, picked, branches)  # (br, n, k, C')
        # others[i] lists every identity image but i: (n, n-1)
        others = [[j for j in range(n) if j != i] for i in range(n)]
        others = torch.tensor(others, dtype=torch.long, device=proj.device)
        # (br, n, n-1, k, C') → (b, (n-1)k, C')
        return sampled[:, others].reshape(branches * n, (n - 1) * k, proj.shape[-1])

    def _from_bank(
        self, attn: Attention, hidden_states: torch.Tensor, branches: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The banked identity tokens of this layer and step, projected, for every row of the batch."""
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
        # branch-major batch: rows [br·m, (br+1)·m) share branch br's bank
        m = state.images_in_batch
        bank_key, bank_value = attn.to_k(stored), attn.to_v(stored)  # (br, n·k, C')
        return bank_key.repeat_interleave(m, dim=0), bank_value.repeat_interleave(m, dim=0)  # (b, n·k, C')


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

"""Block-wise text contexts for Wan's cross-attention, and the subject token's attention maps.

LoRA-BE gives every cross-attention module its own subject-token embedding (DynamiCrafter: 16
modules). In Wan every transformer block has one text cross-attention (`attn2`), so block m gets
embedding e[m] (30 blocks in the 5B model, 40 in the 14B ones). Diffusers' transformer passes one
`encoder_hidden_states` to all its blocks; rather than porting its forward, the M prompt
contexts travel packed along the sequence axis, (b, M x L, d): the transformer's own text
projection works token by token, so it projects all M at once, and each block's
`BlockwiseWanAttnProcessor` reads only its own L tokens. A context of L tokens (an ordinary
prompt, the negative prompt of classifier-free guidance) is shared by every block as before.

With `BlockwiseState.store` set (training), each processor also keeps the subject tokens'
attention per latent position, averaged over heads, for the localization loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanTransformer3DModel,
    _get_added_kv_projections,
    _get_qkv_projections,
)


@dataclass
class BlockwiseState:
    """What the block-wise processors of one pipeline share (one state for both experts of Wan2.2-A14B)."""

    num_blocks: int
    """M: transformer blocks, i.e. text cross-attention modules, each with its own subject embedding."""
    text_len: int = 512
    """L: tokens of one block's context; a packed context holds M x L."""
    image_tokens: int = 0
    """CLIP image tokens in front of the text (Wan2.1 I2V), as this forward's condition embedder made them."""
    store: bool = False
    """Keep each block's subject-token attention (training): `maps`."""
    token_weights: torch.Tensor | None = None
    """(K, b, L) in {0, 1}: text positions of each of the K subject tokens (set before a stored forward)."""
    maps: dict[int, torch.Tensor] = field(default_factory=dict)
    """Block -> (K, b, N): token k's attention (summed over its positions, averaged over heads) per latent token."""

    def clear(self) -> None:
        self.maps = {}
        self.token_weights = None


class BlockwiseWanAttnProcessor(WanAttnProcessor):
    """Diffusers' Wan cross-attention (text, plus the image branch where the block has one) reading block
    `block`'s own slice of a packed context, and keeping the subject tokens' attention when asked."""

    def __init__(self, block: int, state: BlockwiseState) -> None:
        super().__init__()
        self.block = block
        self.state = state

    def own_context(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(image tokens or None, this block's text context) from what the transformer passed."""
        n_img = self.state.image_tokens
        image, text = encoder_hidden_states[:, :n_img], encoder_hidden_states[:, n_img:]
        m, length = self.state.num_blocks, self.state.text_len
        if m > 1 and text.shape[1] == m * length:
            text = text[:, self.block * length : (self.block + 1) * length]
        return (image if n_img else None), text

    def __call__(self, attn: WanAttention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if encoder_hidden_states is None:  # never installed on self-attention, but stay its equal
            return super().__call__(attn, hidden_states, None, attention_mask, rotary_emb)
        image, text = self.own_context(encoder_hidden_states)
        if image is not None and attn.add_k_proj is None:
            # A block without an image branch reads the image tokens as text (diffusers does the same).
            text, image = torch.cat([image, text], dim=1), None
        query, key, value = _get_qkv_projections(attn, hidden_states, text)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))  # (b, n, heads, d)

        image_out = None
        if image is not None:
            key_img, value_img = _get_added_kv_projections(attn, image)
            key_img = attn.norm_added_k(key_img).unflatten(2, (attn.heads, -1))
            value_img = value_img.unflatten(2, (attn.heads, -1))
            image_out = dispatch_attention_fn(query, key_img, value_img, attn_mask=None, dropout_p=0.0,
                                              is_causal=False, backend=self._attention_backend)
            image_out = image_out.flatten(2, 3).type_as(query)

        if self.state.store and self.state.token_weights is not None:
            # The map the localization loss reads: softmax(q k^T / sqrt(d)) over the text tokens.
            q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # (b, heads, n, d)
            probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)
            out = (probs.to(v.dtype) @ v).transpose(1, 2).flatten(2, 3).type_as(query)
            weights = self.state.token_weights.to(probs.device, probs.dtype)  # (K, b, L)
            self.state.maps[self.block] = torch.einsum("bhnl,kbl->kbn", probs, weights) / probs.shape[1]
        else:
            out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                        backend=self._attention_backend)
            out = out.flatten(2, 3).type_as(query)
        if image_out is not None:
            out = out + image_out
        return attn.to_out[1](attn.to_out[0](out))


def install_blockwise(transformers: list[WanTransformer3DModel], state: BlockwiseState) -> None:
    """Give every block's cross-attention of each transformer (both experts of Wan2.2-A14B: block m of
    each reads embedding m) a `BlockwiseWanAttnProcessor`, and let the condition embedder tell the
    processors how many image tokens lead the context."""
    for transformer in transformers:
        if len(transformer.blocks) != state.num_blocks:
            raise ValueError(f"a transformer of {len(transformer.blocks)} blocks in a pipeline of {state.num_blocks}")
        for m, block in enumerate(transformer.blocks):
            block.attn2.set_processor(BlockwiseWanAttnProcessor(m, state))
        if not getattr(transformer, "_storyagent_blockwise", False):
            transformer.condition_embedder.register_forward_hook(_image_tokens_hook(state))
            transformer._storyagent_blockwise = True


def _image_tokens_hook(state: BlockwiseState):
    def hook(_module, _inputs, outputs) -> None:
        image = outputs[3]
        state.image_tokens = 0 if image is None else image.shape[1]

    return hook


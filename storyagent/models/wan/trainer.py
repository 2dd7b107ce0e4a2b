"""LoRA-BE training on Wan: a subject's (or a cast's) LoRA and block-wise token embeddings from its clips.

Per step, as Wan image-to-video is trained: one (augmented) clip of `frames` = 4k+1 consecutive
frames at the model's own frame rate -> VAE latents x_0 (normalised as diffusers normalises them);
the clip's first frame is the image condition, built by diffusers' own `prepare_latents` (the
masked first latent frame concatenated to the input of Wan2.1/Wan2.2-A14B; the clean first latent
frame with timestep 0 on Wan2.2-TI2V-5B's `expand_timesteps`) and, on Wan2.1, its CLIP tokens; a
noise level sigma (uniform, moved by the scheduler's flow shift), x_t = (1 - sigma) x_0 + sigma noise
-> the expert for that noise level (Wan2.2-A14B: `transformer` at or above `boundary_ratio`,
`transformer_2` below) with LoRA, every block reading its own subject-token context -> flow-matching
loss on noise - x_0 (not on a given first frame) + lambda x localization loss on the blocks' maps
(`losses`) -> Adam on the LoRA weights and the embeddings.

A photo has no motion to teach, and Wan has no temporal layers to keep apart from the others (its
attention is spatio-temporal): a photo's step is one frame without an image condition (the
first frame is not given, so the model draws the subject from the prompt), which teaches
appearance and never stillness. `StepResult.appearance_only` marks those steps.

A cast (`LoRABECastConfig`) works as on DynamiCrafter: one LoRA, one token with its own M
embeddings per character, each clip's token localized on its own masks, and `composite_share`
of the steps showing two characters side by side. Checkpoints (adapter, optimizer, step, RNG)
every `checkpoint_every` steps; a new trainer on the same folder resumes from the last one.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.errors import InputError
from storyagent.models.lora_be.adapter import LoRABEAdapter
from storyagent.models.lora_be.augment import fit_clip
from storyagent.models.lora_be.config import LoRABEConfig
from storyagent.models.lora_be.data import Clip
from storyagent.models.lora_be.embeddings import BlockwiseEmbeddings
from storyagent.models.lora_be.trainer import LoRABETrainingMixin, StepResult, step_tokens
from storyagent.models.wan.adapter import WanPromptEncoder, adapter_from, add_lora, set_lora_state_dict
from storyagent.models.wan.attention import BlockwiseState, install_blockwise
from storyagent.models.wan.losses import attention_share, latent_masks, localization_loss, shifted_sigmas
from storyagent.models.wan.pipeline import WanVideoPipeline
from storyagent.models.wan.prompts import init_from_word, pack

MASK_CHANNELS = 4
"""Channels of the first-frame mask Wan2.1/Wan2.2-A14B concatenate to their input (the VAE's temporal stride)."""


class WanLoRABETrainer(LoRABETrainingMixin):
    """Trains one subject's (or one cast's) LoRA-BE on a Wan pipeline, checkpointing into `output_dir`.

    The models go to `device` here (the idle expert of Wan2.2-A14B waits on the CPU while the other
    trains); `release()` sends them back.
    """

    progress_label = "LoRA-BE (Wan)"

    def __init__(self, video: WanVideoPipeline, config: LoRABEConfig, output_dir: str | Path,
                 device: str | torch.device = "cpu") -> None:
        self.video, self.pipe, self.config = video, video.pipe, config
        self.output_dir = Path(output_dir)
        self.device = torch.device(device)
        pipe = self.pipe
        for name in ("text_encoder", "vae", "image_encoder"):
            if (module := getattr(pipe, name, None)) is not None:
                module.requires_grad_(False)
                module.to(self.device)
        self.experts = video.experts
        self.lora_params = add_lora(pipe, config)
        for transformer in self.experts.values():
            if config.gradient_checkpointing:
                transformer.enable_gradient_checkpointing()  # each block recomputed in the backward pass
            transformer.eval()  # no dropout in Wan's blocks; eval keeps diffusers' other paths as at inference
        self.blocks = video.num_blocks
        self.state = BlockwiseState(num_blocks=self.blocks, text_len=video.config.max_sequence_length)
        install_blockwise(list(self.experts.values()), self.state)
        width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        self.tokens = config.tokens
        self.token_embeddings: list[BlockwiseEmbeddings] = []
        """One `BlockwiseEmbeddings` (M x d) per character, `config.characters` order."""
        for character in config.characters:
            emb = BlockwiseEmbeddings(self.blocks, width)
            init_from_word(emb, pipe.text_encoder, pipe.tokenizer, character.class_word)
            emb.to(self.device).requires_grad_(config.blockwise_embeddings)
            self.token_embeddings.append(emb)
        self.encoder = WanPromptEncoder(pipe, self.token_embeddings, self.tokens, self.state,
                                        video.config.max_sequence_length, self.device)
        trained = [*self.lora_params] + ([e.embeddings for e in self.token_embeddings] if config.blockwise_embeddings else [])
        self.optimizer = torch.optim.Adam(trained, lr=config.learning_rate)
        self.start_state(config.seed)
        wan = video.config
        self.frames = config.frames or wan.train_frames
        if (self.frames - 1) % pipe.vae_scale_factor_temporal:
            raise InputError(f"Wan trains on 4k+1 frames; {self.frames} is not one (LoRABEConfig.frames).")
        multiple = video.size_multiple
        self.height = (config.height or wan.train_height) // multiple * multiple
        self.width = (config.width or wan.train_width) // multiple * multiple
        if not self.height or not self.width:
            raise InputError(f"Wan trains on pictures of at least {multiple} x {multiple} pixels.")
        scheduler = pipe.scheduler.config
        self.shift = float(scheduler.get("flow_shift") or scheduler.get("shift") or 1.0)
        self.active: str | None = None

    # ------------------------------------------------------------------ devices
    def use_expert(self, name: str) -> torch.nn.Module:
        """The expert `name` on the device; with two experts on a GPU the other waits on the CPU."""
        if self.active != name:
            for other, transformer in self.experts.items():
                if other != name and self.device.type != "cpu":
                    transformer.to("cpu")
            self.experts[name].to(self.device)
            self.active = name
        return self.experts[name]

    def expert_for(self, timestep: float) -> str:
        boundary = self.pipe.config.boundary_ratio
        if boundary is None or "transformer_2" not in self.experts:
            return "transformer"
        return "transformer" if timestep >= boundary * self.pipe.scheduler.config.num_train_timesteps else "transformer_2"

    def release(self) -> None:
        """Every model back on the CPU."""
        self.pipe.to("cpu")
        self.active = None

    # ------------------------------------------------------------------ one step
    def sample(self, clip: Clip, others: list[np.ndarray], partner: Clip | None = None) -> Clip:
        """The clip as one step sees it (`window`): `frames` consecutive frames (one for a still), fitted,
        augmented or composited with a `partner` clip of another character, all from the trainer's rng."""
        fitted = self.window(clip, others, partner)
        if fitted.still:  # a photo: one frame (see the module docstring)
            fitted = replace(fitted, frames=fitted.frames[:1], masks=fitted.masks[:1],
                             others={t: m[:1] for t, m in fitted.others.items()},
                             source_indices=fitted.source_indices[:1], mask_methods=fitted.mask_methods[:1])
        return fitted

    def inputs(self, clip: Clip) -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
        """(video (1, 3, t, H, W) in [-1, 1], one (1, t, H, W) mask per character shown, their tokens)."""
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
        shown = self.shown(clip)
        return video.to(self.device), [torch.from_numpy(m).float()[None].to(self.device) for _, m in shown], \
            [t for t, _ in shown]

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised latents (b, C, f, h, w) of `video` (b, 3, t, H, W), the VAE's mean as Wan trains on."""
        from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

        vae = self.pipe.vae
        z = retrieve_latents(vae.encode(video.to(self.device, vae.dtype)), sample_mode="argmax").float()
        mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
        return (z - mean) / std

    @torch.no_grad()
    def condition(self, video: torch.Tensor, z0: torch.Tensor, still: bool) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                                       torch.Tensor | None]:
        """(condition, first-frame mask or None, CLIP image tokens or None), as diffusers builds them from
        the clip's first frame; a still (photo) gets no image (a blank condition, the mask saying "not given")."""
        pipe = self.pipe
        b, _, t, height, width = video.shape
        first = torch.zeros_like(video[:, :, 0]) if still else video[:, :, 0]
        out = pipe.prepare_latents(first.to(self.device), b, z0.shape[1], height, width, t, torch.float32, self.device,
                                   None, z0)
        image_tokens = None
        if any(e.config.image_dim is not None for e in self.experts.values()):
            picture = ((first[0].permute(1, 2, 0).cpu().float() + 1) * 127.5).round().clamp(0, 255).byte().numpy()
            image_tokens = pipe.encode_image([Image.fromarray(picture)], self.device)
        if pipe.config.expand_timesteps:
            _, condition, first_frame = out
            first_frame = torch.ones_like(first_frame) if still else first_frame
            return condition, first_frame, image_tokens
        _, condition = out
        if still:
            condition = condition.clone()
            condition[:, :MASK_CHANNELS] = 0
        return condition, None, image_tokens

    def losses(self, video: torch.Tensor, masks: torch.Tensor | Sequence[torch.Tensor], sigma: float | None = None,
               token: str | Sequence[str] | None = None,
               still: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(total, diffusion, localization, attention share inside the mask) for one clip.

        video: (b, 3, t, H, W) in [-1, 1] with t = 4k+1 (1 for a still); masks: (b, t, H, W), or one such
        tensor per token for a clip of several characters (localization then the mean over the tokens);
        sigma: the noise level (None: drawn); token: the character(s) the clip shows (None: the lead).
        """
        pipe, cfg = self.pipe, self.config
        tokens, mask_list = step_tokens(token, masks, cfg.token)
        b = video.shape[0]
        z0 = self.encode(video)
        condition, first_frame, image_tokens = self.condition(video, z0, still)
        if sigma is None:
            u = torch.rand((1,), generator=self.generator)
            sigma = float(shifted_sigmas(u, self.shift))
        timestep = sigma * pipe.scheduler.config.num_train_timesteps
        noise = torch.randn(z0.shape, generator=self.generator).to(self.device)
        x_t = (1 - sigma) * z0 + sigma * noise
        target = noise - z0
        expert = self.use_expert(self.expert_for(timestep))
        dtype = expert.dtype
        if first_frame is not None:  # Wan2.2-TI2V: the first latent frame given, clean, at timestep 0
            x_in = (1 - first_frame) * condition + first_frame * x_t
            t_in = (first_frame[0, 0][:, :: self.video.patch_size[1], :: self.video.patch_size[2]] * timestep).flatten()
            t_in = t_in[None].expand(b, -1)
            weight = first_frame.expand_as(target)
        else:
            x_in = torch.cat([x_t, condition], dim=1)
            t_in = torch.full((b,), timestep, device=self.device)
            weight = torch.ones_like(target)

        prompt = cfg.prompt_template.format(token=" and ".join(tokens))
        contexts, token_masks = self.encoder.contexts([prompt] * b)  # (M, b, L, d), gradients to the embeddings
        self.state.text_len = self.encoder.max_length
        self.state.token_weights = token_masks.float()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.mixed_precision and self.device.type == "cuda")
        with autocast:
            pred = expert(hidden_states=x_in.to(dtype), timestep=t_in, encoder_hidden_states=pack(contexts).to(dtype),
                          encoder_hidden_states_image=None if image_tokens is None else image_tokens.to(dtype),
                          return_dict=False)[0]
        diffusion = ((pred.float() - target) ** 2 * weight).sum() / weight.sum().clamp(min=1)
        p_t, p_h, p_w = self.video.patch_size
        frames, grid = z0.shape[2] // p_t, (z0.shape[3] // p_h, z0.shape[4] // p_w)
        locs, shares = [], []
        for tok, mask in zip(tokens, mask_list):
            k = self.tokens.index(tok)  # token k's own maps against character k's own mask
            maps = [self.state.maps[m][k] for m in range(self.blocks)]
            on_grid = latent_masks(mask, frames, grid, pipe.vae_scale_factor_temporal)
            locs.append(localization_loss(maps, on_grid))
            shares.append(attention_share(maps, on_grid))
        loc = locs[0] if len(locs) == 1 else torch.stack(locs).mean()
        return diffusion + cfg.localization_weight * loc.float(), diffusion, loc, sum(shares) / len(shares)

    @contextlib.contextmanager
    def keeping_attention(self) -> Iterator[None]:
        """The blocks keep the subject tokens' maps; must cover the backward pass too, because gradient
        checkpointing recomputes each block's forward and has to take the same path."""
        self.state.store = True
        try:
            yield
        finally:
            self.state.store = False
            self.state.clear()

    def train_step(self, clip: Clip, others: list[np.ndarray] | None = None, partner: Clip | None = None) -> StepResult:
        """One optimizer step on `clip` (with `partner`, another character's clip beside it)."""
        fitted = self.sample(clip, others or [], partner)
        video, masks, tokens = self.inputs(fitted)
        self.optimizer.zero_grad(set_to_none=True)
        with self.keeping_attention():
            total, diffusion, loc, share = self.losses(video, masks if len(masks) > 1 else masks[0], token=tokens,
                                                       still=fitted.still)
            total.backward()
        self.drop_unnamed_gradients(tokens)
        self.optimizer.step()
        self.step += 1
        # No frame-rate conditioning in Wan: fs is 0; the condition frame is always the clip's first.
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, 0, 0, fitted.still,
                          tuple(tokens))

    @torch.no_grad()
    def evaluate(self, clip: Clip, sigma: float = 0.5, seed: int = 1234) -> StepResult:
        """Losses on `clip` (no augmentation, its first frames) at a fixed noise level and noise."""
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        fitted = fit_clip(clip, 1 if clip.still else self.frames, self.height, self.width)
        video, masks, tokens = self.inputs(fitted)
        try:
            with self.keeping_attention():
                total, diffusion, loc, share = self.losses(video, masks if len(masks) > 1 else masks[0], sigma,
                                                           tokens, clip.still)
        finally:
            self.generator.set_state(saved)
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, 0, 0, clip.still, tuple(tokens))

    # ------------------------------------------------------------------ the loop
    def train(self, clips: list[Clip], epochs: int | None = None, show_progress: bool = True) -> list[StepResult]:
        """Train (resuming from the last checkpoint) for `epochs` passes over `clips`, one step per clip."""
        labels = self.cast_labels(clips)
        self.resume()
        return self.train_clips(clips, labels, epochs, show_progress)

    # ------------------------------------------------------------------ checkpoints
    def set_lora(self, lora: dict[str, torch.Tensor], source: Path) -> None:
        set_lora_state_dict(self.pipe, lora, source)

    def adapter(self) -> LoRABEAdapter:
        """The adapter as trained so far."""
        return adapter_from(self.pipe, self.token_embeddings, self.config)

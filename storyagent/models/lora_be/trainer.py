"""LoRA-BE training: fine-tune DynamiCrafter on a subject's reference clips.

Per step, as upstream DynamiCrafter trains (`get_batch_input`, `forward` and `p_losses` in
`lvdm/models/ddpm3d.py`): one (augmented) clip of consecutive frames → VAE latents z → a
conditioning frame drawn at random inside the clip (`rand_cond_frame: true`), whose CLIP tokens
are cross-attended and whose unscaled latent is concatenated to every frame → random timestep
and noise on z * scale_arr[t] → UNet with LoRA, every cross-attention module reading its own
subject-token context, fs = the clip's frame rate → v-prediction loss + lambda * localization
loss on the cross-attention maps → Adam on the LoRA weights and the embeddings.

A photo (a still clip) has no motion to teach: its steps train appearance only (spatial
self/cross-attention LoRA and the block-wise embeddings) and leave the temporal LoRA weights
exactly as they were; `StepResult.appearance_only` marks those steps.

A cast (`LoRABECastConfig`) trains one LoRA for every character and one token with its own
block-wise embeddings per character. Each clip is labelled with the token of the character it
shows (`Clip.token`, e.g. from `cast_clips`): its prompt names that token, and the localization
loss compares that token's cross-attention maps with that character's masks. A character's
embeddings move only on steps whose prompt names it (the others get no gradient, so Adam's momentum
does not drag them along). With `composite_share`, that share of steps pastes another character's
clip beside the drawn one (`composite_clip`): the prompt names both tokens and the localization
loss is the mean of each token's loss on its own mask, so the tokens learn to share a frame.

Checkpoints (adapter + optimizer + step + RNG) are written every K steps; a new trainer on the
same folder resumes from the last one.

A video shorter than the window (FlintstonesSV's 5-frame clips) is padded by holding its last
frame; those held frames are left out of the diffusion loss (`held_frames.py`), so the temporal
LoRA learns the clip's motion and not that motion stops. `StepResult.held_frames` counts them.

Memory (`models/training_memory.py`): the UNet checkpoints its activations (`gradient_checkpointing`),
its forward runs under bfloat16 autocast on CUDA, Adam is fused on CUDA, and in the low-VRAM setting
the whole frozen DynamiCrafter (UNet base, CLIP text and image towers, resampler, VAE) is held in
bfloat16 under the float32 LoRA and embeddings, and the VAE encodes a clip a frame at a time.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline
from storyagent.models.lora_be.adapter import LoRABEAdapter, add_lora, is_temporal
from storyagent.models.lora_be.augment import augment_clip, composite_clip, fit_clip
from storyagent.models.lora_be.config import ClipTrainingConfig, LoRABECastConfig, LoRABEConfig
from storyagent.models.lora_be.data import Clip
from storyagent.models.lora_be.embeddings import (
    BlockwiseEmbeddings,
    cast_text_contexts,
    token_table,
    tokenize_with_subjects,
)
from storyagent.models.lora_be.held_frames import frame_loss_weights, frame_weighted_mse
from storyagent.models.lora_be.losses import attention_mass_inside, localization_loss
from storyagent.models.training_checkpoint import ResumableTrainer
from storyagent.models.training_memory import (
    TrainingMemory,
    adam,
    autocast,
    hold_frozen_in_bfloat16,
)


@dataclass
class StepResult:
    """The losses of one training step (or of one evaluation)."""

    loss: float
    """diffusion + localization_weight * localization."""
    diffusion: float
    """MSE of the v- (or eps-) prediction."""
    localization: float
    """The localization loss (minus the mean subject attention inside the mask, averaged over modules)."""
    mask_attention: float
    """Mean attention probability of the subject token at masked positions (= -localization)."""
    mask_share: float
    """Share of the subject token's attention mass (over positions) that falls inside the mask."""
    cond_frame: int
    """Index (in the training clip) of the conditioning frame: CLIP image tokens and concatenated latent."""
    fs: int
    """The fs (frame rate, or frame stride for "fs" models) the UNet was conditioned on."""
    appearance_only: bool
    """A photo's step: the temporal LoRA weights were left untouched (a still teaches no motion)."""
    tokens: tuple[str, ...] = ()
    held_frames: int = 0
    """Frames of the window that only held a short clip's last frame: not in the diffusion loss."""
    """The tokens the step's prompt named (one; two for a cast's two-character sample)."""


def step_tokens(token: str | Sequence[str] | None, masks: torch.Tensor | Sequence[torch.Tensor],
                lead: str) -> tuple[list[str], list[torch.Tensor]]:
    """The tokens a step's prompt names (`token`; None: the `lead`) and one mask tensor for each."""
    tokens = [lead] if token is None else [token] if isinstance(token, str) else list(token)
    mask_list = [masks] if isinstance(masks, torch.Tensor) else list(masks)
    if len(mask_list) != len(tokens):
        raise ValueError(f"{len(mask_list)} mask tensors for the tokens {tokens}")
    return tokens, mask_list


class FsConditioning:
    """The window a DynamiCrafter fine-tune trains on, the fs it conditions each clip on and the fs it is
    to be sampled at (LoRA-BE's `LoRABETrainer` and DC-finetuning's `ImageInjectionTrainer` alike); a
    trainer sets `pipe` and calls `set_window`."""

    pipe: DynamiCrafterPipeline
    frames: int
    height: int
    width: int
    default_fs: int
    sample_fs: int | None
    """The fs the fine-tune is to be sampled at, pinned in its file: `sampling_fs` of the clips `train`
    was given (None before `train`: the file then pins none)."""

    def set_window(self, config: ClipTrainingConfig) -> None:
        """The training window: `config`'s frames and size, else the model's sampling settings; its fs
        for photos, else the model's default; no sampling fs yet."""
        s = self.pipe.config.sampling
        self.frames = config.frames or s.frames
        self.height, self.width = config.height or s.height, config.width or s.width
        self.default_fs = config.fs or self.pipe.config.unet.default_fs
        self.sample_fs = None

    def clip_fs(self, clip: Clip) -> int:
        """The fs conditioning for `clip`: its frame rate after striding, rounded (at least 1), or
        its stride on models conditioned on the frame stride (`fps_condition_type: fs`, 256 model);
        photos and clips of unknown rate get `config.fs` or the model's default."""
        if clip.still or clip.fps is None:
            return self.default_fs
        if self.pipe.config.diffusion.fps_condition_type == "fs":
            return clip.stride
        return max(1, round(clip.fps))

    def sampling_fs(self, clips: Sequence[Clip]) -> int:
        """The fs the adapter (or DC fine-tune) is sampled at: the fs most of its video clips were trained
        at (the frame rate after striding, ~8 for the ~2 s windows of `data.CLIP_SECONDS`; ties go to the
        lower), so the fine-tune is asked for the motion it learnt. Photos alone: the fs their
        steps used.

        Training at the sampler's fs instead (24 for the 512 model) would condition 8 fps clips on 24,
        teaching the fs embedding the wrong frame spacing; upstream conditions every clip on its own
        rate (`fps_clip = fps_ori // frame_stride`, lvdm/data/webvid.py)."""
        counts = Counter(self.clip_fs(c) for c in clips if not c.still)
        if not counts:
            return self.default_fs
        return min(counts, key=lambda fs: (-counts[fs], fs))


class LoRABETrainingMixin(ResumableTrainer):
    """What LoRA-BE's trainers share whatever the video model (DynamiCrafter's `LoRABETrainer`, Wan's
    `WanLoRABETrainer`): a cast's tokens and clips, the window a step sees, the loop over the clips, and
    the adapter file their checkpoints hold (`adapter.safetensors`, beside `ResumableTrainer`'s optimizer,
    generator and state). A trainer sets `tokens`, `token_embeddings`, `frames`, `height`, `width` and
    `ResumableTrainer`'s attributes, and implements `train_step`, `adapter` and `set_lora`."""

    progress_label: ClassVar[str] = "LoRA-BE"
    tokens: list[str]
    token_embeddings: list[BlockwiseEmbeddings]
    """One `BlockwiseEmbeddings` per character (`config.characters` order)."""
    frames: int
    height: int
    width: int

    def train_step(self, clip: Clip, others: list[np.ndarray] | None = None, partner: Clip | None = None) -> StepResult:
        raise NotImplementedError

    def adapter(self) -> LoRABEAdapter:
        """The adapter as trained so far."""
        raise NotImplementedError

    def set_lora(self, lora: dict[str, torch.Tensor], source: Path) -> None:
        """Load an adapter's LoRA weights (read from `source`) into the trained model."""
        raise NotImplementedError

    # ------------------------------------------------------------------ clips
    def token_of(self, clip: Clip) -> str:
        """The token of the character `clip` shows (its label, else the lead's); refuses a stranger."""
        token = clip.token or self.config.token
        if token not in self.tokens:
            raise InputError(f"A training clip shows {token}, which is not in this adapter's cast {self.tokens}.")
        return token

    def shown(self, clip: Clip) -> list[tuple[str, np.ndarray]]:
        """(token, (t, H, W) masks) of every character `clip` shows, its own first."""
        pairs = [(self.token_of(clip), clip.masks), *clip.others.items()]
        for token, _ in pairs[1:]:
            if token not in self.tokens:
                raise InputError(f"A training clip shows {token}, which is not in this adapter's cast {self.tokens}.")
        return pairs

    def window(self, clip: Clip, others: list[np.ndarray], partner: Clip | None = None) -> Clip:
        """`frames` consecutive frames of `clip` from a random start, fitted to the training size, then
        composited with a `partner` clip of another character (its own random window) or, when the
        config says so, augmented; all from the trainer's rng."""
        start = int(self.rng.integers(max(1, clip.frames.shape[0] - self.frames + 1)))
        fitted = fit_clip(clip, self.frames, self.height, self.width, start)
        if partner is not None:
            begin = int(self.rng.integers(max(1, partner.frames.shape[0] - self.frames + 1)))
            second = fit_clip(partner, self.frames, self.height, self.width, begin)
            return composite_clip(fitted, second, self.token_of(partner), self.rng, others)
        if self.config.augment:
            return augment_clip(fitted, self.rng, others)
        return fitted

    def drop_unnamed_gradients(self, tokens: Sequence[str]) -> None:
        """No update at all for the embeddings of the characters a step's prompt did not name (a zero
        gradient would still let Adam's momentum from the character's own steps move them)."""
        for tok, emb in zip(self.tokens, self.token_embeddings):
            if tok not in tokens:
                emb.embeddings.grad = None

    # ------------------------------------------------------------------ the loop
    def partner_for(self, clip: Clip, clips: list[Clip]) -> Clip | None:
        """Another character's clip to paste beside `clip` on this step (a cast, with probability
        `composite_share`), or None. A one-character adapter draws nothing from the rng here."""
        share = getattr(self.config, "composite_share", 0.0)
        if not isinstance(self.config, LoRABECastConfig) or share <= 0 or clip.others:
            return None
        if self.rng.random() >= share:
            return None
        token = self.token_of(clip)
        candidates = [c for c in clips if self.token_of(c) != token and not c.others]
        return candidates[int(self.rng.integers(len(candidates)))] if candidates else None

    def cast_labels(self, clips: list[Clip]) -> list[str]:
        """The token of the character each clip shows; refuses no clips at all, or a character without one."""
        if not clips:
            raise InputError("LoRA-BE needs at least one reference clip of the subject.")
        labels = [self.token_of(c) for c in clips]
        if missing := [t for t in self.tokens if t not in labels]:
            raise InputError(f"LoRA-BE has no reference clip of {', '.join(missing)}; every character of the cast "
                             "needs its own media.")
        return labels

    def train_clips(self, clips: list[Clip], labels: list[str], epochs: int | None,
                    show_progress: bool) -> list[StepResult]:
        """`epochs` passes (None: the config's) over `clips`, labelled `labels` (`cast_labels`), one step
        per clip, on from the step the trainer stands at; checkpointed (`ResumableTrainer.run_steps`)."""
        epochs = self.config.epochs if epochs is None else epochs
        # Other clips' frames serve as backgrounds for the augmentation: only the same character's,
        # so no other cast member stands unnamed in the background of a step.
        backgrounds = {t: [c.frames[0] for c, label in zip(clips, labels) if label == t] for t in self.tokens}

        def one_step() -> StepResult:
            index = self.step % len(clips)
            clip = clips[index]
            others = [o for o in backgrounds[labels[index]] if o is not clip.frames[0]]
            return self.train_step(clip, others, self.partner_for(clip, clips))

        return self.run_steps(epochs * len(clips), one_step, self.status, self.progress_label, show_progress)

    def status(self, result: StepResult) -> str:
        """The progress bar's words for a step."""
        return f"loss {result.loss:.4f} (diff {result.diffusion:.4f}, loc {result.localization:.4f})"

    # ------------------------------------------------------------------ files
    def save_weights(self, folder: Path) -> None:
        self.adapter().save_pretrained(folder / "adapter.safetensors")

    def load_weights(self, folder: Path) -> None:
        adapter = LoRABEAdapter.from_pretrained(folder / "adapter.safetensors")
        if adapter.config.tokens != self.tokens:
            raise InputError(f"The checkpoint in {folder} is for {adapter.config.tokens}, not {self.tokens}.")
        self.set_lora(adapter.lora, folder)
        with torch.no_grad():
            for emb, table in zip(self.token_embeddings, adapter.token_embeddings, strict=True):
                emb.embeddings.copy_(table.to(emb.embeddings))

    def save(self, path: str | Path) -> Path:
        """The final adapter file."""
        return self.adapter().save_pretrained(path)


class LoRABETrainer(LoRABETrainingMixin, FsConditioning):
    """Trains one subject's (or one cast's) adapter on a DynamiCrafter pipeline, checkpointing into `output_dir`."""

    def __init__(self, pipe: DynamiCrafterPipeline, config: LoRABEConfig, output_dir: str | Path,
                 memory: TrainingMemory | None = None) -> None:
        if pipe.text_encoder is None or pipe.image_encoder is None:
            raise InputError("LoRA-BE training needs the pipeline's text and image encoders.")
        self.pipe = pipe
        self.config = config
        self.memory = memory or TrainingMemory()
        """How the training spends GPU memory; nothing of what is trained (not in `config`)."""
        self.output_dir = Path(output_dir)
        self.device = pipe.device
        for module in pipe.modules.values():
            module.requires_grad_(False)
        unet = pipe.unet
        self.lora_params = add_lora(unet, config)
        self.temporal_params = [p for n, p in unet.named_parameters() if "lora_" in n and is_temporal(n)]
        # The low-VRAM setting checkpoints whatever the settings say (the same gradients, less memory).
        unet.gradient_checkpointing = config.gradient_checkpointing or self.memory.low_vram
        self.autocast = self.memory.autocast(self.device, config.mixed_precision)
        if self.memory.frozen_bfloat16(self.device, config.mixed_precision):
            hold_frozen_in_bfloat16(pipe.modules.values())  # the LoRA weights train, so they stay float32
        if self.memory.low_vram:
            pipe.vae_chunk = 1
        self.attns = unet.cross_attentions
        dim = token_table(pipe.text_encoder).weight.shape[1]
        self.tokens = config.tokens
        self.token_embeddings: list[BlockwiseEmbeddings] = []
        """One `BlockwiseEmbeddings` per character (`config.characters` order)."""
        for character in config.characters:
            emb = BlockwiseEmbeddings(len(self.attns), dim).to(self.device)
            emb.init_from_word(pipe.text_encoder, character.class_word)
            emb.requires_grad_(config.blockwise_embeddings)
            self.token_embeddings.append(emb)
        self.embeddings = self.token_embeddings[0]
        """The (lead) subject's block-wise embeddings."""
        trained = [*self.lora_params] + ([e.embeddings for e in self.token_embeddings] if config.blockwise_embeddings else [])
        self.optimizer = adam(trained, config.learning_rate)
        self.start_state(config.seed)
        self.set_window(config)

    # ------------------------------------------------------------------ one step
    def sample(self, clip: Clip, others: list[np.ndarray], partner: Clip | None = None) -> tuple[Clip, int]:
        """The clip as one step sees it (`window`: `frames` consecutive frames, fitted, maybe augmented;
        with a `partner` clip of another character, the two composited side by side) and its
        conditioning frame, drawn uniformly inside it, all from the trainer's rng."""
        return self.window(clip, others, partner), int(self.rng.integers(self.frames))

    def _tensors(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
        """(video (1, 3, t, H, W) in [-1, 1], masks (1, t, H, W) in {0, 1}) on the trainer's device."""
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
        masks = torch.from_numpy(clip.masks).float()[None]
        return video.to(self.device), masks.to(self.device)

    def _step_inputs(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor], list[str]]:
        """(video, masks, tokens) for `losses`: one mask tensor for a one-character clip, a list for several."""
        video, _ = self._tensors(clip)
        shown = self.shown(clip)
        masks = [torch.from_numpy(m).float()[None].to(self.device) for _, m in shown]
        return video, masks[0] if len(masks) == 1 else masks, [t for t, _ in shown]

    def losses(self, video: torch.Tensor, masks: torch.Tensor | Sequence[torch.Tensor], timestep: int | None = None,
               cond_frame: int = 0, fs: int | None = None,
               token: str | Sequence[str] | None = None,
               frame_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(total, diffusion, localization, attention share inside the mask) for one clip.

        video: (b, 3, t, H, W) in [-1, 1]; masks: (b, t, H, W); `cond_frame` indexes t;
        fs: None uses the trainer's default. token: the character the clip shows (None: the lead);
        a cast's clip of several characters names every token and gives one mask tensor per token
        (the localization loss and share are then the mean over the tokens, each on its own mask).
        frame_weight: (t,) weights of each frame in the diffusion loss (`held_frames.frame_loss_weights`);
        None: every frame.
        """
        pipe, cfg = self.pipe, self.config
        sched = pipe.scheduler
        b = video.shape[0]
        with torch.no_grad():
            z = pipe.encode_latents(video, self.generator)  # (b, 4, t, h, w)
            image_tokens = pipe.encode_image_tokens(video[:, :, cond_frame])
        tokens, mask_list = step_tokens(token, masks, cfg.token)
        prompt = cfg.prompt_template.format(token=" and ".join(tokens))
        # Every cast token is looked for (a prompt may name any); each carries its own embeddings.
        ids, token_masks = tokenize_with_subjects(pipe.text_encoder, [prompt] * b, self.tokens)
        texts = cast_text_contexts(pipe.text_encoder, self.token_embeddings, ids, token_masks)  # (M, b, L, d)
        contexts = [torch.cat([t, image_tokens.to(t.dtype)], dim=1) for t in texts]

        t = torch.randint(0, sched.num_train_timesteps, (b,), generator=self.generator) if timestep is None \
            else torch.full((b,), timestep)
        t = t.to(self.device)
        # The conditioning latent is taken before any rescale: upstream builds it in get_batch_input,
        # before forward() scales x_start, and our sampler concatenates the unscaled image latent.
        concat = z[:, :, cond_frame : cond_frame + 1].expand_as(z)  # (b, 4, 1, h, w) -> (b, 4, t, h, w)
        x0 = z
        if sched.scale_arr is not None:
            # The trained model saw clean latents scaled by scale_arr[t] (dynamic rescale).
            x0 = z * sched.scale_arr.to(self.device)[t].view(-1, 1, 1, 1, 1)
        noise = torch.randn(z.shape, generator=self.generator).to(self.device)
        x_t = sched.add_noise(x0, noise, t)
        target = sched.velocity(x0, noise, t) if pipe.config.diffusion.parameterization == "v" else noise
        fs_t = torch.full((b,), self.default_fs if fs is None else fs, dtype=torch.long, device=self.device)

        with autocast(self.device, self.autocast):
            pred = pipe.unet(torch.cat([x_t, concat], dim=1), t, contexts[0], fs=fs_t, module_contexts=contexts)
        diffusion = frame_weighted_mse(pred.float(), target.float(), frame_weight)
        levels = len(pipe.config.unet.channel_mult)
        locs, shares = [], []
        for tok, mask in zip(tokens, mask_list):
            # Token k's own maps against character k's own mask.
            token_mask = token_masks[self.tokens.index(tok)].to(self.device)
            locs.append(localization_loss(self.attns, token_mask, mask, tuple(z.shape[-2:]), levels))
            shares.append(attention_mass_inside(self.attns, token_mask, mask, tuple(z.shape[-2:]), levels))
        loc = locs[0] if len(locs) == 1 else torch.stack(locs).mean()
        share = sum(shares) / len(shares)
        return diffusion + cfg.localization_weight * loc.float(), diffusion, loc, share

    @contextlib.contextmanager
    def keeping_attention(self) -> Iterator[None]:
        """Cross-attention modules keep their maps; must cover the backward pass too, because
        gradient checkpointing recomputes the forward and has to take the same path."""
        for attn in self.attns:
            attn.store_attention = True
        try:
            yield
        finally:
            for attn in self.attns:
                attn.store_attention = False
                attn.attention_probs = None

    def train_step(self, clip: Clip, others: list[np.ndarray] | None = None, partner: Clip | None = None) -> StepResult:
        """One optimizer step on `clip` (with `partner`, another character's clip, pasted beside it:
        a two-character sample); a still clip (photo) leaves the temporal LoRA untouched."""
        self.pipe.unet.train()
        fitted, cond = self.sample(clip, others or [], partner)
        weights = frame_loss_weights(fitted)  # a short clip's held frames: not in the loss
        video, masks, tokens = self._step_inputs(fitted)
        fs = self.clip_fs(fitted)  # a composite with a photo is a still
        self.optimizer.zero_grad(set_to_none=True)
        # The UNet's dropout (0.1 in the temporal convolutions) draws from the global RNG; seeding it
        # per step keeps a resumed run on the same path as an uninterrupted one.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.keeping_attention():
            torch.manual_seed(self.config.seed * 1_000_003 + self.step)
            total, diffusion, loc, share = self.losses(video, masks, cond_frame=cond, fs=fs, token=tokens,
                                                       frame_weight=_tensor(weights))
            total.backward()
        self.drop_unnamed_gradients(tokens)
        if fitted.still:
            # A held photo shows no motion, so its gradient would only teach the temporal layers to
            # stand still. Zeroing it is not enough (Adam's momentum from earlier video steps would
            # still move them); without a gradient Adam skips the parameter altogether.
            for p in self.temporal_params:
                p.grad = None
        self.optimizer.step()
        self.step += 1
        self.pipe.unet.eval()
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, cond, fs, fitted.still,
                          tuple(tokens), _held(weights))

    @torch.no_grad()
    def evaluate(self, clip: Clip, timestep: int = 500, seed: int = 1234) -> StepResult:
        """Losses on `clip` (no augmentation, conditioned on its first frame) at a fixed timestep
        and noise: comparable across training."""
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        fitted = fit_clip(clip, self.frames, self.height, self.width)
        video, masks, tokens = self._step_inputs(fitted)
        weights = frame_loss_weights(fitted)
        fs = self.clip_fs(clip)
        try:
            with self.keeping_attention():
                total, diffusion, loc, share = self.losses(video, masks, timestep, fs=fs, token=tokens,
                                                           frame_weight=_tensor(weights))
        finally:
            self.generator.set_state(saved)
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, 0, fs, clip.still,
                          tuple(tokens), _held(weights))

    # ------------------------------------------------------------------ the loop
    def train(self, clips: list[Clip], epochs: int | None = None, show_progress: bool = True) -> list[StepResult]:
        """Train (resuming from the last checkpoint) for `epochs` passes over `clips`, one step per
        clip; photo steps train appearance only and are marked `appearance_only` in the history.

        A cast's clips carry the token of the character they show (`Clip.token`; `cast_clips`
        labels and interleaves each character's own clips); every character needs at least one.
        The fs the adapter is to be sampled at is decided from the clips here (`sampling_fs`) and
        written into every adapter file the trainer saves.
        """
        labels = self.cast_labels(clips)
        self.resume()
        self.sample_fs = self.sampling_fs(clips)
        return self.train_clips(clips, labels, epochs, show_progress)

    def status(self, result: StepResult) -> str:
        return super().status(result) + (" photo: appearance only" if result.appearance_only else "")

    # ------------------------------------------------------------------ checkpoints
    def set_lora(self, lora: dict[str, torch.Tensor], source: Path) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.pipe.unet, lora)

    def adapter(self) -> LoRABEAdapter:
        """The adapter as trained so far."""
        return LoRABEAdapter.from_model(self.pipe.unet, self.token_embeddings, self.config, self.sample_fs)


def _tensor(weights: np.ndarray | None) -> torch.Tensor | None:
    return None if weights is None else torch.from_numpy(weights)


def _held(weights: np.ndarray | None) -> int:
    return 0 if weights is None else int((weights == 0).sum())

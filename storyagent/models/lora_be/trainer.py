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

Checkpoints (adapter + optimizer + step + RNG) are written every K steps; a new trainer on the
same folder resumes from the last one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline
from storyagent.models.lora_be.adapter import LoRABEAdapter, add_lora, is_temporal
from storyagent.models.lora_be.augment import augment_clip, fit_clip
from storyagent.models.lora_be.config import LoRABEConfig
from storyagent.models.lora_be.data import Clip
from storyagent.models.lora_be.embeddings import (
    BlockwiseEmbeddings,
    module_text_contexts,
    token_table,
    tokenize_with_subject,
)
from storyagent.models.lora_be.losses import attention_mass_inside, localization_loss


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


class LoRABETrainer:
    """Trains one subject's adapter on a DynamiCrafter pipeline, checkpointing into `output_dir`."""

    def __init__(self, pipe: DynamiCrafterPipeline, config: LoRABEConfig, output_dir: str | Path) -> None:
        if pipe.text_encoder is None or pipe.image_encoder is None:
            raise InputError("LoRA-BE training needs the pipeline's text and image encoders.")
        self.pipe = pipe
        self.config = config
        self.output_dir = Path(output_dir)
        self.device = pipe.device
        for module in pipe.modules.values():
            module.requires_grad_(False)
        unet = pipe.unet
        self.lora_params = add_lora(unet, config)
        self.temporal_params = [p for n, p in unet.named_parameters() if "lora_" in n and is_temporal(n)]
        unet.gradient_checkpointing = config.gradient_checkpointing
        self.attns = unet.cross_attentions
        dim = token_table(pipe.text_encoder).weight.shape[1]
        self.embeddings = BlockwiseEmbeddings(len(self.attns), dim).to(self.device)
        self.embeddings.init_from_word(pipe.text_encoder, config.class_word)
        self.embeddings.requires_grad_(config.blockwise_embeddings)
        trained = [*self.lora_params] + ([self.embeddings.embeddings] if config.blockwise_embeddings else [])
        self.optimizer = torch.optim.Adam(trained, lr=config.learning_rate)
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        s = pipe.config.sampling
        self.frames = config.frames or s.frames
        self.height, self.width = config.height or s.height, config.width or s.width
        self.default_fs = config.fs or pipe.config.unet.default_fs

    # ------------------------------------------------------------------ one step
    def clip_fs(self, clip: Clip) -> int:
        """The fs conditioning for `clip`: its frame rate after striding, rounded (at least 1), or
        its stride on models conditioned on the frame stride (`fps_condition_type: fs`, 256 model);
        photos and clips of unknown rate get `config.fs` or the model's default."""
        if clip.still or clip.fps is None:
            return self.default_fs
        if self.pipe.config.diffusion.fps_condition_type == "fs":
            return clip.stride
        return max(1, round(clip.fps))

    def sample(self, clip: Clip, others: list[np.ndarray]) -> tuple[Clip, int]:
        """The clip as one step sees it (a window of `frames` consecutive frames, fitted, maybe
        augmented) and its conditioning frame, drawn uniformly inside it, all from the trainer's rng."""
        start = int(self.rng.integers(max(1, clip.frames.shape[0] - self.frames + 1)))
        fitted = fit_clip(clip, self.frames, self.height, self.width, start)
        if self.config.augment:
            fitted = augment_clip(fitted, self.rng, others)
        return fitted, int(self.rng.integers(self.frames))

    def _tensors(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
        """(video (1, 3, t, H, W) in [-1, 1], masks (1, t, H, W) in {0, 1}) on the trainer's device."""
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
        masks = torch.from_numpy(clip.masks).float()[None]
        return video.to(self.device), masks.to(self.device)

    def losses(self, video: torch.Tensor, masks: torch.Tensor, timestep: int | None = None, cond_frame: int = 0,
               fs: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(total, diffusion, localization, attention share inside the mask) for one clip.

        video: (b, 3, t, H, W) in [-1, 1]; masks: (b, t, H, W); `cond_frame` indexes t;
        fs: None uses the trainer's default.
        """
        pipe, cfg = self.pipe, self.config
        sched = pipe.scheduler
        b = video.shape[0]
        with torch.no_grad():
            z = pipe.encode_latents(video, self.generator)  # (b, 4, t, h, w)
            image_tokens = pipe.encode_image_tokens(video[:, :, cond_frame])
        prompt = cfg.prompt_template.format(token=cfg.token)
        ids, token_mask = tokenize_with_subject(pipe.text_encoder, [prompt] * b, cfg.token)
        texts = module_text_contexts(pipe.text_encoder, self.embeddings, ids, token_mask)  # (M, b, L, d)
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

        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.mixed_precision and self.device.type == "cuda")
        with autocast:
            pred = pipe.unet(torch.cat([x_t, concat], dim=1), t, contexts[0], fs=fs_t, module_contexts=contexts)
        diffusion = F.mse_loss(pred.float(), target.float())
        levels = len(pipe.config.unet.channel_mult)
        loc = localization_loss(self.attns, token_mask.to(self.device), masks, tuple(z.shape[-2:]), levels)
        share = attention_mass_inside(self.attns, token_mask.to(self.device), masks, tuple(z.shape[-2:]), levels)
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

    def train_step(self, clip: Clip, others: list[np.ndarray] | None = None) -> StepResult:
        """One optimizer step on `clip`; a still clip (photo) leaves the temporal LoRA untouched."""
        self.pipe.unet.train()
        fitted, cond = self.sample(clip, others or [])
        video, masks = self._tensors(fitted)
        fs = self.clip_fs(clip)
        self.optimizer.zero_grad(set_to_none=True)
        # The UNet's dropout (0.1 in the temporal convolutions) draws from the global RNG; seeding it
        # per step keeps a resumed run on the same path as an uninterrupted one.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.keeping_attention():
            torch.manual_seed(self.config.seed * 1_000_003 + self.step)
            total, diffusion, loc, share = self.losses(video, masks, cond_frame=cond, fs=fs)
            total.backward()
        if clip.still:
            # A held photo shows no motion, so its gradient would only teach the temporal layers to
            # stand still. Zeroing it is not enough (Adam's momentum from earlier video steps would
            # still move them); without a gradient Adam skips the parameter altogether.
            for p in self.temporal_params:
                p.grad = None
        self.optimizer.step()
        self.step += 1
        self.pipe.unet.eval()
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, cond, fs, clip.still)

    @torch.no_grad()
    def evaluate(self, clip: Clip, timestep: int = 500, seed: int = 1234) -> StepResult:
        """Losses on `clip` (no augmentation, conditioned on its first frame) at a fixed timestep
        and noise: comparable across training."""
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        video, masks = self._tensors(fit_clip(clip, self.frames, self.height, self.width))
        fs = self.clip_fs(clip)
        try:
            with self.keeping_attention():
                total, diffusion, loc, share = self.losses(video, masks, timestep, fs=fs)
        finally:
            self.generator.set_state(saved)
        return StepResult(total.item(), diffusion.item(), loc.item(), -loc.item(), share, 0, fs, clip.still)

    # ------------------------------------------------------------------ the loop
    def train(self, clips: list[Clip], epochs: int | None = None, show_progress: bool = True) -> list[StepResult]:
        """Train (resuming from the last checkpoint) for `epochs` passes over `clips`, one step per
        clip; photo steps train appearance only and are marked `appearance_only` in the history."""
        if not clips:
            raise InputError("LoRA-BE needs at least one reference clip of the subject.")
        from storyagent.progress import make_progress

        self.resume()
        epochs = self.config.epochs if epochs is None else epochs
        total = epochs * len(clips)
        history: list[StepResult] = []
        # Other clips' frames serve as backgrounds for the augmentation.
        others = [c.frames[0] for c in clips]
        with make_progress(disable=not show_progress) as bar:
            task = bar.add_task("LoRA-BE", total=total, completed=self.step, status="")
            while self.step < total:
                clip = clips[self.step % len(clips)]
                result = self.train_step(clip, [o for o in others if o is not clip.frames[0]])
                history.append(result)
                note = " photo: appearance only" if result.appearance_only else ""
                bar.update(task, completed=self.step, status=f"loss {result.loss:.4f} (diff {result.diffusion:.4f}, "
                                                             f"loc {result.localization:.4f}){note}")
                if self.step % self.config.checkpoint_every == 0 or self.step == total:
                    self.save_checkpoint()
        return history

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoint"

    def save_checkpoint(self) -> Path:
        from storyagent.fileio import atomic_path, atomic_write_json

        folder = self.checkpoint_dir
        folder.mkdir(parents=True, exist_ok=True)
        self.adapter().save_pretrained(folder / "adapter.safetensors")
        with atomic_path(folder / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)
        with atomic_path(folder / "generator.pt") as tmp:
            torch.save(self.generator.get_state(), tmp)
        atomic_write_json(folder / "state.json", {"step": self.step, "rng": self.rng.bit_generator.state})
        return folder

    def resume(self) -> bool:
        """Continue from the last checkpoint in `output_dir`, if there is one."""
        folder = self.checkpoint_dir
        if not (folder / "state.json").exists():
            return False
        from peft import set_peft_model_state_dict

        adapter = LoRABEAdapter.from_pretrained(folder / "adapter.safetensors")
        set_peft_model_state_dict(self.pipe.unet, adapter.lora)
        with torch.no_grad():
            self.embeddings.embeddings.copy_(adapter.embeddings.to(self.embeddings.embeddings))
        # Optimizer state and RNG are plain tensors/numbers: weights_only loading is enough.
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.generator.set_state(torch.load(folder / "generator.pt", weights_only=True))
        state = json.loads((folder / "state.json").read_text())
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        return True

    def adapter(self) -> LoRABEAdapter:
        """The adapter as trained so far."""
        return LoRABEAdapter.from_model(self.pipe.unet, self.embeddings, self.config)

    def save(self, path: str | Path) -> Path:
        """The final adapter file."""
        return self.adapter().save_pretrained(path)


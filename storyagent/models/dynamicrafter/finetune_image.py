"""DC-finetuning: DynamiCrafter's image injection module fine-tuned on a subject's reference videos.

The StoryAgent paper's Table 5 baseline: "DynamiCrafter's image injection module fine-tuned on the
reference videos, without LoRA-BE". DynamiCrafter injects the conditioning image through two
parts (Xing et al. 2023, Sec. 3.1): the image context projector, a query transformer that turns
the CLIP image tokens into the context tokens (`pipe.resampler`, upstream `image_proj_model`), and
the image branch of every spatial cross-attention, its own key and value projections of those
tokens (`DualCrossAttention.to_k_ip` / `to_v_ip`, and the learnt gate `alpha` where the variant has
one). Those are the only weights this trainer changes; the text branch, the rest of the UNet, the
VAE and both CLIP towers stay frozen, and no subject token or block-wise embedding is learnt.

A step is LoRA-BE's without its adapter: one clip of consecutive frames -> VAE latents -> a
conditioning frame drawn in the clip (CLIP tokens through the projector, with gradient; its
unscaled latent concatenated to every frame) -> noise at a random timestep -> the UNet under the
prompt "a video of a <class word>", fs = the clip's frame rate -> v-prediction MSE (a short clip's
held frames left out, `lora_be.held_frames`) -> Adam on the image-injection weights.

The fine-tune is a safetensors file of just those tensors (`resampler.*`, `unet.*`), with its
config and the fs to sample at in the metadata; `apply_image_injection(pipe, path)` loads it into
a pipeline of the same variant. Checkpoints every K steps; a new trainer on the folder resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from storyagent.errors import InputError
from storyagent.models.dynamicrafter.pipeline import DynamiCrafterPipeline
from storyagent.models.lora_be.augment import augment_clip, fit_clip
from storyagent.models.lora_be.config import ClipTrainingConfig
from storyagent.models.lora_be.data import Clip
from storyagent.models.lora_be.held_frames import frame_loss_weights, frame_weighted_mse
from storyagent.models.lora_be.trainer import FsConditioning
from storyagent.models.training_checkpoint import ResumableTrainer

FORMAT = "storyagent-dc-image-injection-1"


@dataclass
class ImageInjectionConfig(ClipTrainingConfig):
    """What DC-finetuning trains (DynamiCrafter's image injection module alone) and how (LoRA-BE's
    schedule, `ClipTrainingConfig`, but for `augment`)."""

    augment: bool = False
    """Paste the subject on other backgrounds (needs masks). Off: the reference videos as they are,
    as the paper describes the baseline."""
    class_word: str = "object"
    """A word for the subject's kind; the training prompt names it (no subject token is learnt)."""
    prompt_template: str = "a video of a {class_word}"
    """Training prompt; {class_word} is replaced by `class_word`."""


def image_injection_parameters(pipe: DynamiCrafterPipeline) -> dict[str, nn.Parameter]:
    """The image injection module's parameters by name: `resampler.<name>` (the image context
    projector) and `unet.<name>` of every cross-attention's image branch (`to_k_ip`, `to_v_ip`, `alpha`)."""
    params = {f"resampler.{n}": p for n, p in pipe.resampler.named_parameters()}
    names = {id(m): n for n, m in pipe.unet.named_modules()}
    for attn in pipe.unet.cross_attentions:
        if not attn.image_cross_attention:
            continue
        prefix = names[id(attn)]
        for n, p in attn.named_parameters():
            if n.startswith(("to_k_ip.", "to_v_ip.")) or n == "alpha":
                params[f"unet.{prefix}.{n}"] = p
    if len(params) == len(list(pipe.resampler.parameters())):
        raise InputError("This DynamiCrafter has no image cross-attention branch to fine-tune.")
    return params


def _module_parameter(pipe: DynamiCrafterPipeline, key: str) -> nn.Parameter:
    component, _, name = key.partition(".")
    module = {"resampler": pipe.resampler, "unet": pipe.unet}.get(component)
    try:
        if module is None:
            raise AttributeError(key)
        return module.get_parameter(name)
    except AttributeError:
        raise InputError(f"The DC fine-tune names {key}, which this DynamiCrafter does not have; "
                         "was it trained for another variant?") from None


@dataclass
class ImageInjectionFile:
    """A DC fine-tune as read back: its settings and the fs its clips were trained at."""

    config: ImageInjectionConfig
    sample_fs: int | None
    tensors: dict[str, torch.Tensor]


def read_image_injection(path: str | Path) -> ImageInjectionFile:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a DC image-injection fine-tune (format {meta.get('format')!r}, not {FORMAT}).")
    fs = meta.get("sample_fs")
    return ImageInjectionFile(ImageInjectionConfig.from_dict(json.loads(meta.get("config", "{}"))),
                              int(fs) if fs else None, load_file(str(path)))


def apply_image_injection(pipe: DynamiCrafterPipeline, path: str | Path) -> ImageInjectionFile:
    """Load a DC fine-tune into `pipe`'s image injection module (in place); every tensor must match."""
    tuned = read_image_injection(path)
    with torch.no_grad():
        for key, value in tuned.tensors.items():
            param = _module_parameter(pipe, key)
            if param.shape != value.shape:
                raise InputError(f"The DC fine-tune's {key} has shape {tuple(value.shape)}, this DynamiCrafter's "
                                 f"{tuple(param.shape)}; was it trained for another variant?")
            param.copy_(value.to(param))
    return tuned


@dataclass
class ImageInjectionStep:
    """The losses of one step."""

    loss: float
    """v- (or eps-) prediction MSE over the frames in the loss."""
    cond_frame: int
    """Index of the conditioning frame in the training clip."""
    fs: int
    """The fs the UNet was conditioned on."""
    held_frames: int
    """Frames that only hold a short clip's last frame: not in the loss."""


class ImageInjectionTrainer(ResumableTrainer, FsConditioning):
    """Fine-tunes a DynamiCrafter pipeline's image injection module in place, checkpointing into `output_dir`
    (`image_injection.safetensors` beside `ResumableTrainer`'s optimizer, generator and state); each clip is
    conditioned on the fs LoRA-BE conditions it on (`FsConditioning`)."""

    def __init__(self, pipe: DynamiCrafterPipeline, config: ImageInjectionConfig, output_dir: str | Path) -> None:
        if pipe.text_encoder is None or pipe.image_encoder is None:
            raise InputError("DC fine-tuning needs the pipeline's text and image encoders.")
        self.pipe, self.config, self.output_dir = pipe, config, Path(output_dir)
        self.device = pipe.device
        for module in pipe.modules.values():
            module.requires_grad_(False)
        self.params = image_injection_parameters(pipe)
        for p in self.params.values():
            p.requires_grad_(True)
        pipe.unet.gradient_checkpointing = config.gradient_checkpointing
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=config.learning_rate)
        self.start_state(config.seed)
        self.set_window(config)

    def loss(self, clip: Clip, cond_frame: int, timestep: int | None = None) -> tuple[torch.Tensor, int]:
        """(loss, held frames) of one fitted clip."""
        pipe, sched = self.pipe, self.pipe.scheduler
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None].to(self.device)
        weights = frame_loss_weights(clip)
        with torch.no_grad():
            z = pipe.encode_latents(video, self.generator)
            clip_tokens = pipe.image_encoder(video[:, :, cond_frame]).to(self.device)
            text = pipe.encode_prompt([self.config.prompt_template.format(class_word=self.config.class_word)])
        # The projector is trained: its tokens keep their gradient (pipe.encode_image_tokens would not).
        image_tokens = pipe.resampler(clip_tokens.to(pipe.resampler.proj_in.weight.dtype))
        context = torch.cat([text, image_tokens.to(text.dtype)], dim=1)
        t = (torch.randint(0, sched.num_train_timesteps, (1,), generator=self.generator) if timestep is None
             else torch.full((1,), timestep)).to(self.device)
        concat = z[:, :, cond_frame:cond_frame + 1].expand_as(z)  # the unscaled latent, as upstream
        x0 = z if sched.scale_arr is None else z * sched.scale_arr.to(self.device)[t].view(-1, 1, 1, 1, 1)
        noise = torch.randn(z.shape, generator=self.generator).to(self.device)
        target = sched.velocity(x0, noise, t) if pipe.config.diffusion.parameterization == "v" else noise
        fs = torch.full((1,), self.clip_fs(clip), dtype=torch.long, device=self.device)
        on_cuda = self.device.type == "cuda" and self.config.mixed_precision
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
            pred = pipe.unet(torch.cat([sched.add_noise(x0, noise, t), concat], dim=1), t, context, fs=fs)
        w = None if weights is None else torch.from_numpy(weights)
        return frame_weighted_mse(pred.float(), target.float(), w), 0 if weights is None else int((weights == 0).sum())

    def train_step(self, clip: Clip, others: list[np.ndarray] | None = None) -> ImageInjectionStep:
        """One optimizer step on a window of `clip` (augmented when the config says so)."""
        self.pipe.unet.train()
        start = int(self.rng.integers(max(1, clip.frames.shape[0] - self.frames + 1)))
        fitted = fit_clip(clip, self.frames, self.height, self.width, start)
        if self.config.augment:
            fitted = augment_clip(fitted, self.rng, others)
        cond = int(self.rng.integers(self.frames))
        self.optimizer.zero_grad(set_to_none=True)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed * 1_000_003 + self.step)  # the UNet's dropout, resumable
            loss, held = self.loss(fitted, cond)
            loss.backward()
        self.optimizer.step()
        self.step += 1
        self.pipe.unet.eval()
        return ImageInjectionStep(loss.item(), cond, self.clip_fs(fitted), held)

    def train(self, clips: list[Clip], epochs: int | None = None, show_progress: bool = True) -> list[ImageInjectionStep]:
        """Train (resuming from the last checkpoint) for `epochs` passes over `clips`, one step per clip."""
        if not clips:
            raise InputError("DC fine-tuning needs at least one reference clip of the subject.")
        self.resume()
        self.sample_fs = self.sampling_fs(clips)
        total = (self.config.epochs if epochs is None else epochs) * len(clips)
        backgrounds = [c.frames[0] for c in clips]

        def one_step() -> ImageInjectionStep:
            clip = clips[self.step % len(clips)]
            return self.train_step(clip, [b for b in backgrounds if b is not clip.frames[0]])

        return self.run_steps(total, one_step, lambda result: f"loss {result.loss:.4f}", "DC fine-tuning", show_progress)

    # ------------------------------------------------------------------ files
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().float().cpu().contiguous() for k, p in self.params.items()}

    def save(self, path: str | Path) -> Path:
        """The fine-tune: the image injection module's tensors, its config and the fs to sample at."""
        from safetensors.torch import save_file

        from storyagent.fileio import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "config": json.dumps(self.config.to_dict())}
        if self.sample_fs is not None:
            meta["sample_fs"] = str(self.sample_fs)
        with atomic_path(path) as tmp:
            save_file(self.state_dict(), str(tmp), metadata=meta)
        return path

    def save_weights(self, folder: Path) -> None:
        self.save(folder / "image_injection.safetensors")

    def load_weights(self, folder: Path) -> None:
        apply_image_injection(self.pipe, folder / "image_injection.safetensors")

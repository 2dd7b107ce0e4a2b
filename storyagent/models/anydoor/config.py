"""AnyDoor settings, spelled the way upstream `configs/anydoor.yaml` spells them.

The same `config.json` layout serves three purposes: the parity fixtures describe their tiny
models with it, the converter writes it next to the converted weights, and the model builders in
`components.py` read it. Keeping the upstream names (model_channels, channel_mult,
num_head_channels, ddconfig ...) means a config copied from an upstream YAML needs no renaming.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from storyagent.errors import InputError
from storyagent.models.anydoor.preprocessing import PreprocessConfig
from storyagent.models.configuration import ConfigFileMixin, config_from_dict


@dataclass
class UNetConfig:
    """Upstream `openaimodel.UNetModel` / `cldm.ControlNet` arguments (SD 2.1 shape by default)."""

    in_channels: int = 4
    """Latent channels the UNet reads."""
    out_channels: int = 4
    """Latent channels the UNet predicts (the noise, eps-parameterisation)."""
    model_channels: int = 320
    """Width of the first resolution level; level i has model_channels * channel_mult[i]."""
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    """Downsampling factors (1 = full latent size) whose blocks carry a spatial transformer."""
    num_res_blocks: int = 2
    """Residual blocks per level on the way down (the way up has one more)."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier of each resolution level."""
    num_head_channels: int = 64
    """Channels per attention head; the number of heads is the block width divided by this."""
    transformer_depth: int = 1
    """Transformer blocks inside each spatial transformer."""
    context_dim: int = 1024
    """Width of the cross-attention context (the projected DINOv2 tokens)."""
    use_linear_in_transformer: bool = True
    """Spatial transformers project in and out with Linear layers (SD 2.x) instead of 1x1 convs."""
    hint_channels: int = 4
    """ControlNet only: channels of the hint image (collage RGB + mask)."""

    def heads_per_level(self) -> list[int]:
        return [self.model_channels * m // self.num_head_channels for m in self.channel_mult]

    def level_has_attention(self, level: int) -> bool:
        return 2**level in self.attention_resolutions


@dataclass
class VAEConfig:
    """Upstream `AutoencoderKL` `ddconfig`."""

    z_channels: int = 4
    """Latent channels."""
    in_channels: int = 3
    """Image channels in."""
    out_ch: int = 3
    """Image channels out."""
    ch: int = 128
    """Width of the first level."""
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier of each level; the latent is 2**(len-1) times smaller than the image."""
    num_res_blocks: int = 2
    """Residual blocks per encoder level (the decoder has one more)."""
    resolution: int = 256
    """Training resolution; informational only, the VAE is fully convolutional."""
    double_z: bool = True
    """The encoder predicts mean and log-variance."""


@dataclass
class ImageEncoderConfig:
    """The identity encoder: a DINOv2 ViT (ViT-g/14 for the real model) and the linear projector."""

    img_size: int = 518
    """Image size the positional embeddings were trained for (37 x 37 patches)."""
    patch_size: int = 14
    """Patch size in pixels."""
    embed_dim: int = 1536
    """Token width."""
    depth: int = 40
    """Transformer blocks."""
    num_heads: int = 24
    """Attention heads."""
    mlp_ratio: int = 4
    """Feed-forward width ratio before the SwiGLU 2/3 shrink."""
    init_values: float = 1.0
    """Layer-scale initial value; any non-zero value means layer scale is present."""
    ffn_layer: str = "swiglufused"
    """`swiglufused` (ViT-g) or `mlp`."""
    projector: tuple[int, int] = (1536, 1024)
    """Projector Linear (in, out): DINOv2 width to the UNet context width."""
    input_size: int = 224
    """Side of the square reference crop fed to DINOv2 (AnyDoor uses 224, i.e. 16 x 16 patches)."""
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """ImageNet mean used to normalise the [0, 1] reference crop."""
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """ImageNet std used to normalise the [0, 1] reference crop."""


@dataclass
class DiffusionConfig:
    """The DDPM schedule of `ldm.models.diffusion.ddpm.LatentDiffusion`."""

    linear_start: float = 0.00085
    """First beta; betas are spaced linearly in sqrt(beta) (upstream "linear" schedule)."""
    linear_end: float = 0.012
    """Last beta."""
    timesteps: int = 1000
    """Training timesteps."""
    scale_factor: float = 0.18215
    """Latents are multiplied by this after encoding and divided by it before decoding."""
    conditioning_key: str = "crossattn"
    """Only cross-attention conditioning is used by AnyDoor."""


@dataclass
class SamplingConfig:
    """Inference defaults (upstream `run_inference.py`)."""

    ddim_steps: int = 50
    """DDIM steps ("uniform" spacing, offset 1)."""
    eta: float = 0.0
    """DDIM eta; 0 makes sampling deterministic given the starting noise."""
    cfg_scale: float = 5.0
    """Classifier-free guidance scale; the unconditional branch encodes a zero image."""
    control_scale: float = 1.0
    """Multiplier of the 13 ControlNet residuals."""
    probe_timestep: int = 0
    """Parity fixtures only: the timestep at which single model calls are compared."""
    latent_hw: tuple[int, int] = (64, 64)
    """Latent size; the image is 8x larger (512 px for AnyDoor)."""


@dataclass
class AnyDoorConfig(ConfigFileMixin):
    """Everything needed to build the AnyDoor modules; defaults are the released model's."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    """The denoising UNet."""
    controlnet: UNetConfig = field(default_factory=UNetConfig)
    """The ControlNet (same trunk as the UNet, reading the 4-channel hint)."""
    vae: VAEConfig = field(default_factory=VAEConfig)
    """The autoencoder (upstream `ddconfig`; written as `vae_ddconfig` in config.json)."""
    dinov2: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """The identity encoder and its projector."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """The DDPM schedule."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Inference defaults."""

    json_names: ClassVar[dict[str, str]] = {"vae": "vae_ddconfig"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnyDoorConfig:
        sections = {"unet": UNetConfig, "controlnet": UNetConfig, "vae": VAEConfig, "dinov2": ImageEncoderConfig,
                    "diffusion": DiffusionConfig, "sampling": SamplingConfig}
        data = cls.field_data(data)
        return cls(**{name: config_from_dict(kind, data.get(name, {})) for name, kind in sections.items()})

    @property
    def image_size(self) -> int:
        """Side of the square image the VAE decodes from `sampling.latent_hw`."""
        return self.sampling.latent_hw[0] * 2 ** (len(self.vae.ch_mult) - 1)


Preset = Literal["paper", "quick"]


@dataclass
class StoryAnyDoorTrainingConfig:
    """Fine-tuning settings (defaults: the paper's StoryAnyDoor on upstream AnyDoor's recipe)."""

    steps: int = 20_000
    """Optimizer steps in total (the paper uses 20 000)."""
    learning_rate: float = 1e-5
    """Adam learning rate (the paper's and upstream AnyDoor's)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay. Upstream's `configure_optimizers` builds `torch.optim.AdamW`
    with torch's default, 0.01; at 1e-5 it shrinks weights by 0.2 % over 20 000 steps."""
    batch_size: int = 1
    """Pairs per step. Upstream pretrains with 16 per GPU on 2 GPUs; the paper gives no batch
    for StoryAnyDoor, and 1 keeps a full fine-tune on one GPU with a handful of frames."""
    use_lora: bool = False
    """Train LoRA adapters on the attention projections instead of the full ControlNet and decoder."""
    lora_rank: int = 16
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / rank)."""
    checkpoint_every: int = 500
    """Save a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Older checkpoints beyond this many are deleted."""
    seed: int = 0
    """Seeds pair sampling, augmentation, timesteps, noise and the LoRA initialisation; with it a
    resumed run matches an uninterrupted one."""
    reference_margin: tuple[float, float] = (1.1, 1.5)
    """White margin around the reference subject, drawn like upstream (`randint(11, 15) / 10`): a
    multiple of 0.1 in [low, high), i.e. 1.1 to 1.4."""
    target_box_expand: tuple[float, float] = (1.1, 1.2)
    """Target box growth, drawn in tenths in [low, high) as upstream's `expand_bbox(ratio=[1.1, 1.2])`
    does, which makes it always 1.1."""
    target_crop_expand: tuple[float, float] = (1.3, 3.0)
    """Crop-around-box factor, drawn in tenths in [low, high) as upstream's
    `expand_bbox(ratio=[1.3, 3.0])`: 1.3 to 2.9."""
    flip_probability: float = 0.5
    """Chance of mirroring the reference (upstream `aug_data_mask`: HorizontalFlip p=0.5). Upstream's
    rotation there is commented out, so there is none here."""
    brightness_contrast_probability: float = 0.5
    """Chance of a brightness/contrast change of the reference (upstream `aug_data_mask`:
    albumentations RandomBrightnessContrast, p=0.5)."""
    brightness_limit: float = 0.2
    """Brightness shift drawn in [-limit, limit] times 255 (albumentations' default, upstream's)."""
    contrast_limit: float = 0.2
    """Contrast factor drawn in [1 - limit, 1 + limit] (albumentations' default, upstream's)."""
    perturbed_mask_probability: float = 0.7
    """Chance that the hint's mask channel is a perturbed target mask instead of the box (upstream
    `process_pairs`), so the model also follows loose, hand-drawn-like regions."""
    perturbed_mask_iou: tuple[float, float] = (0.3, 0.99)
    """Range of the aimed IoU between perturbed and true target mask (upstream `perturb_mask`)."""
    uniform_timestep_probability: float = 0.3
    """Share of timesteps drawn uniformly over the schedule; the rest come from the pair kind's
    range in `pairs.TIMESTEP_RANGES` (upstream `sample_timestep`)."""
    mixed_precision: bool = True
    """bfloat16 autocast on CUDA (upstream trains in fp16 AMP; bf16 needs no loss scaling); ignored on CPU."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Crop sizes; target_size and reference_size are set from the model."""

    @classmethod
    def preset(cls, name: Preset, **overrides: Any) -> StoryAnyDoorTrainingConfig:
        """Named settings, with `overrides` on top.

        - `paper`: the paper's StoryAnyDoor, a full fine-tune (ControlNet, UNet decoder, projector)
          with Adam at 1e-5 for 20 000 steps.
        - `quick`: LoRA rank 16 (alpha 16) at 1e-4 for 1 000 steps, checkpoints every 250. A
          low-rank update moves the weights far less per step than a full fine-tune, so it takes
          the 10x learning rate usual for diffusion LoRAs (e.g. diffusers' DreamBooth-LoRA
          example); 1 000 steps is still dozens of passes over a subject's handful of frames, at a
          twentieth of the paper's steps, and the optimizer holds state for the adapters only.
          It is a first look, not evaluated against the paper's setting.
        """
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            "quick": {"use_lora": True, "lora_rank": 16, "lora_alpha": 16, "learning_rate": 1e-4,
                      "steps": 1_000, "checkpoint_every": 250},
        }
        if name not in presets:
            raise InputError(f"Unknown StoryAnyDoor preset {name!r}; use one of {', '.join(presets)}.")
        return cls(**(presets[name] | overrides))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples as lists)."""
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_jsonable(v) for v in obj]
    return obj

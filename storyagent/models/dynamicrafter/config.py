"""Configuration of a DynamiCrafter model: UNet, VAE, image-context Resampler, diffusion and sampling.

Field names follow the upstream YAML configs (`configs/inference_512_v1.0.yaml`), so an upstream
config or a parity fixture's `config.json` loads with `DynamiCrafterConfig.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from storyagent.models.configuration import ConfigFileMixin, config_from_dict


@dataclass
class UNetConfig:
    """The 3D denoising UNet (upstream `UNetModel`)."""

    in_channels: int = 8
    """Input channels: the noisy latent (4) concatenated with the conditioning frame's latent (4)."""
    out_channels: int = 4
    """Output channels: the v- or eps-prediction for the latent."""
    model_channels: int = 320
    """Channels of the first level; later levels multiply it by `channel_mult`."""
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    """Downsampling factors at which spatial and temporal transformers are inserted."""
    num_res_blocks: int = 2
    """ResBlocks per level on the way down (one more on the way up)."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier per resolution level."""
    dropout: float = 0.1
    """Dropout inside ResBlocks (only active in training)."""
    num_head_channels: int = 64
    """Channels per attention head; the head count is channels // num_head_channels."""
    transformer_depth: int = 1
    """Transformer blocks per spatial / temporal transformer."""
    context_dim: int = 1024
    """Width of the cross-attention context (text tokens and image tokens)."""
    use_linear: bool = True
    """Spatial/temporal transformers project in and out with Linear layers (else 1x1 convs)."""
    use_checkpoint: bool = False
    """Gradient checkpointing of ResBlocks and transformer blocks while training."""
    temporal_conv: bool = True
    """Each ResBlock ends with a temporal convolution block."""
    temporal_attention: bool = True
    """A temporal transformer follows every spatial transformer."""
    temporal_selfatt_only: bool = True
    """Temporal transformers attend over frames only (no cross-attention to the context)."""
    use_relative_position: bool = False
    """Relative position embeddings in temporal attention (not used by the released models)."""
    use_causal_attention: bool = False
    """Causal mask in temporal attention (not used by the released models)."""
    temporal_length: int = 16
    """Frames the model was trained with."""
    addition_attention: bool = True
    """An extra temporal transformer right after the input convolution (`init_attn` upstream)."""
    image_cross_attention: bool = True
    """Cross-attention modules have a second key/value branch for the image tokens."""
    image_cross_attention_scale_learnable: bool = False
    """The image branch is scaled by a learned tanh gate (the 1024 model's setting)."""
    default_fs: int = 24
    """Frame-stride / fps value used when none is passed."""
    fs_condition: bool = True
    """Add an embedding of the frame stride / fps to the timestep embedding."""
    text_context_len: int = 77
    """Number of text tokens at the start of the context; the rest are image tokens."""
    image_tokens_per_frame: int = 16
    """Image tokens per frame when the context carries one set per frame (the Resampler's queries)."""
    init_attn_heads: int = 8
    """Heads of the extra initial temporal attention (fixed to 8 upstream)."""


@dataclass
class VAEConfig:
    """The frame autoencoder (upstream `ddconfig`); built as a diffusers `AutoencoderKL`."""

    double_z: bool = True
    """The encoder predicts mean and log-variance (2 * z_channels outputs)."""
    z_channels: int = 4
    """Latent channels."""
    resolution: int = 256
    """Nominal training resolution (informational)."""
    in_channels: int = 3
    """Image channels in."""
    out_ch: int = 3
    """Image channels out."""
    ch: int = 128
    """Base channels of the autoencoder."""
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier per level; len(ch_mult) - 1 downsamplings."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level (decoder uses one more)."""
    attn_resolutions: tuple[int, ...] = ()
    """Resolutions with attention inside the levels; the released VAEs use none."""
    dropout: float = 0.0
    """Dropout inside ResNet blocks."""
    embed_dim: int = 4
    """Channels after `quant_conv` (equal to z_channels in the released models)."""


@dataclass
class ResamplerConfig:
    """The Perceiver resampler that turns 257 CLIP image tokens into 16 tokens per frame."""

    dim: int = 1024
    """Width of the learned queries."""
    depth: int = 4
    """Attention + feed-forward layers."""
    dim_head: int = 64
    """Channels per head."""
    heads: int = 12
    """Attention heads."""
    num_queries: int = 16
    """Queries (output tokens) per frame."""
    embedding_dim: int = 1280
    """Width of the CLIP image tokens coming in."""
    output_dim: int = 1024
    """Width of the tokens going out (the UNet's context_dim)."""
    ff_mult: int = 4
    """Feed-forward expansion."""
    video_length: int | None = 16
    """Frames that get their own queries; None means one set for the whole clip."""


@dataclass
class DiffusionConfig:
    """Noise schedule and conditioning settings (upstream `LatentVisualDiffusion` parameters)."""

    rescale_betas_zero_snr: bool = True
    """Rescale betas so the last timestep has zero SNR (Lin et al. 2023)."""
    parameterization: str = "v"
    """What the UNet predicts: "v" (512/1024 models) or "eps" (256 model)."""
    linear_start: float = 0.00085
    """First beta of the scaled-linear schedule."""
    linear_end: float = 0.012
    """Last beta of the scaled-linear schedule."""
    timesteps: int = 1000
    """Training timesteps."""
    beta_schedule: str = "linear"
    """"linear" means linspace over sqrt(beta), squared (the LDM schedule)."""
    scale_factor: float = 0.18215
    """Latents are multiplied by this after encoding and divided before decoding."""
    use_dynamic_rescale: bool = True
    """Scale the predicted x0 by scale_arr[t_prev] / scale_arr[t] during sampling."""
    base_scale: float = 0.7
    """Final value of the dynamic rescale ramp."""
    turning_step: int = 400
    """Length of the linear ramp from 1.0 to base_scale at the start of `scale_arr`."""
    conditioning_key: str = "hybrid"
    """"hybrid": the conditioning latent is concatenated to the input and tokens cross-attended."""
    uncond_type: str = "empty_seq"
    """Unconditional text for guidance: the empty prompt ("empty_seq") or zeros ("zero_embed")."""
    fps_condition_type: str = "fps"
    """What the fs input means: "fps" (512/1024) or "fs", the frame stride (256)."""
    perframe_ae: bool = True
    """Encode and decode one frame at a time to bound VAE memory."""


@dataclass
class SamplingConfig:
    """Default sampling settings of a variant."""

    ddim_steps: int = 50
    """DDIM steps."""
    eta: float = 1.0
    """DDIM eta: 0 is deterministic, 1 adds the full posterior noise."""
    cfg_scale: float = 7.5
    """Classifier-free guidance scale."""
    guidance_rescale: float = 0.7
    """Mix of the std-rescaled guided prediction (Lin et al. 2023, section 3.4)."""
    timestep_spacing: str = "uniform_trailing"
    """"uniform_trailing" (512/1024) or "uniform" (256)."""
    fs: int = 24
    """Default fps / frame stride."""
    frames: int = 16
    """Frames per clip."""
    height: int = 320
    """Output height in pixels."""
    width: int = 512
    """Output width in pixels."""


@dataclass
class DynamiCrafterConfig(ConfigFileMixin):
    """Everything needed to build the models and sample a clip."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    """The denoising UNet."""
    vae: VAEConfig = field(default_factory=VAEConfig)
    """The frame autoencoder (upstream `ddconfig`; written as `vae_ddconfig` in config.json)."""
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    """The image-token Resampler."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """Noise schedule and conditioning."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Default sampling settings."""

    json_names: ClassVar[dict[str, str]] = {"vae": "vae_ddconfig"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynamiCrafterConfig:
        """Read a parity-fixture style dict (`unet`, `vae_ddconfig`, `resampler`, `diffusion`, `sampling`)."""
        data = cls.field_data(data)
        vae = config_from_dict(VAEConfig, data.get("vae"))
        sampling = dict(data.get("sampling", {}))
        if "latent_hw" in sampling and "height" not in sampling:
            # Fixtures give the latent size; the VAE downsamples by 2 per level after the first.
            factor = 2 ** (len(vae.ch_mult) - 1)
            sampling["height"], sampling["width"] = (s * factor for s in sampling["latent_hw"])
        return cls(
            unet=config_from_dict(UNetConfig, data.get("unet")),
            vae=vae,
            resampler=config_from_dict(ResamplerConfig, data.get("resampler")),
            diffusion=config_from_dict(DiffusionConfig, data.get("diffusion")),
            sampling=config_from_dict(SamplingConfig, sampling),
        )

    @property
    def vae_scale(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.vae.ch_mult) - 1)


def variant_config(name: str) -> DynamiCrafterConfig:
    """The released variants: "512" (320x512, v-prediction), "256" (256x256, eps) and "1024" (576x1024)."""
    cfg = DynamiCrafterConfig()
    if name == "512":
        return cfg
    if name == "256":
        cfg.unet.default_fs = 3
        cfg.unet.image_cross_attention_scale_learnable = True
        cfg.diffusion.rescale_betas_zero_snr = False
        cfg.diffusion.parameterization = "eps"
        cfg.diffusion.use_dynamic_rescale = False
        cfg.diffusion.fps_condition_type = "fs"
        cfg.diffusion.perframe_ae = False
        cfg.sampling = SamplingConfig(timestep_spacing="uniform", guidance_rescale=0.0, fs=3, height=256, width=256)
        return cfg
    if name == "1024":
        cfg.unet.default_fs = 10
        cfg.diffusion.base_scale = 0.3
        cfg.sampling = SamplingConfig(fs=10, height=576, width=1024)
        return cfg
    raise ValueError(f"Unknown DynamiCrafter variant {name!r}; choose 512, 256 or 1024.")

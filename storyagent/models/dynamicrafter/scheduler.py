"""DDIM sampling as DynamiCrafter does it.

* Betas: the LDM "linear" schedule (linspace over sqrt(beta), squared), optionally rescaled to zero
  terminal SNR. Tables are computed in float64 and stored in float32, like the trained model's buffers.
* Timesteps: "uniform" (0, c, 2c, ... + 1) or "uniform_trailing" (ending at the last timestep).
* Step: v- or eps-prediction, optional dynamic rescale of the predicted x0 by
  scale_arr[t_prev] / scale_arr[t], DDIM update with eta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from storyagent.models.dynamicrafter.config import DiffusionConfig
from storyagent.models.ldm import sqrt_linear_betas


def make_betas(cfg: DiffusionConfig) -> np.ndarray:
    if cfg.beta_schedule != "linear":
        raise NotImplementedError(f"Beta schedule {cfg.beta_schedule!r} is not supported (only 'linear').")
    betas = sqrt_linear_betas(cfg.linear_start, cfg.linear_end, cfg.timesteps)
    if cfg.rescale_betas_zero_snr:
        betas = zero_terminal_snr(betas)
    return betas


def zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Shift and scale sqrt(alpha_bar) so it ends at exactly 0 and starts where it did (Lin et al. 2023, alg. 1)."""
    sqrt_ab = np.sqrt(np.cumprod(1.0 - betas))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))
    alpha_bar = sqrt_ab**2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


def ddim_timesteps(num_steps: int, num_train: int, spacing: str) -> np.ndarray:
    """Ascending training timesteps visited by DDIM."""
    if not 0 < num_steps <= num_train:
        raise ValueError(f"num_steps must be between 1 and {num_train}, got {num_steps}.")
    if spacing == "uniform":
        steps = np.arange(0, num_train, num_train // num_steps) + 1
        if steps[-1] >= num_train:
            raise ValueError(f"'uniform' spacing cannot make {num_steps} steps out of {num_train} "
                             "(the last would fall past the end); choose a step count that divides it more evenly.")
        return steps
    if spacing == "uniform_trailing":
        stride = num_train / num_steps
        return np.flip(np.round(np.arange(num_train, 0, -stride))).astype(np.int64) - 1
    raise ValueError(f"Unknown timestep spacing {spacing!r}; use 'uniform' or 'uniform_trailing'.")


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Pull the guided prediction's per-sample std back to the conditional one's, mixed by `rescale`."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * rescaled + (1.0 - rescale) * guided


@dataclass
class StepOutput:
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDIMScheduler:
    """DDIM over the DynamiCrafter schedule. `set_timesteps`, then `step` once per timestep (descending)."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        betas = make_betas(config)
        alphas_cumprod = np.cumprod(1.0 - betas)
        f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.betas = f32(betas)
        self.alphas_cumprod = f32(alphas_cumprod)
        self.sqrt_alphas_cumprod = f32(np.sqrt(alphas_cumprod))
        self.sqrt_one_minus_alphas_cumprod = f32(np.sqrt(1.0 - alphas_cumprod))
        if config.use_dynamic_rescale:
            ramp = np.linspace(1.0, config.base_scale, config.turning_step)
            self.scale_arr = f32(np.concatenate([ramp, np.full(config.timesteps, config.base_scale)]))
        else:
            self.scale_arr = None
        self.timesteps = torch.empty(0, dtype=torch.long)
        self._index: dict[int, int] = {}

    @property
    def num_train_timesteps(self) -> int:
        return self.config.timesteps

    def set_timesteps(self, num_steps: int, spacing: str = "uniform_trailing", eta: float = 0.0) -> torch.Tensor:
        """Choose the DDIM timesteps; returns them in sampling (descending) order."""
        steps = ddim_timesteps(num_steps, self.num_train_timesteps, spacing)
        ac = self.alphas_cumprod
        self._alphas = ac[steps]
        # The step after the last one lands on alpha_bar[0] (not 1), as in the trained sampler.
        self._alphas_prev = torch.cat([ac[:1], ac[steps[:-1]]])
        a, ap = self._alphas.double(), self._alphas_prev.double()
        self._sigmas = (eta * torch.sqrt((1 - ap) / (1 - a) * (1 - a / ap))).float()
        if self.scale_arr is not None:
            self._scale = self.scale_arr[steps]
            self._scale_prev = torch.cat([self._scale[:1], self._scale[:-1]])
        self._index = {int(t): i for i, t in enumerate(steps)}
        self.timesteps = torch.from_numpy(np.flip(steps).copy()).long()  # a copy: a 1-step flip keeps its negative stride
        return self.timesteps

    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return table.to(like.device)[t].view(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def to_eps(self, sample: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        if self.config.parameterization == "v":
            return (self._at(self.sqrt_alphas_cumprod, t, sample) * model_output
                    + self._at(self.sqrt_one_minus_alphas_cumprod, t, sample) * sample)
        return model_output

    def to_x0(self, sample: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor, eps: torch.Tensor,
              a_t: torch.Tensor) -> torch.Tensor:
        if self.config.parameterization == "v":
            return (self._at(self.sqrt_alphas_cumprod, t, sample) * sample
                    - self._at(self.sqrt_one_minus_alphas_cumprod, t, sample) * model_output)
        return (sample - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The v-prediction target: sqrt(a) * noise - sqrt(1 - a) * x0."""
        return self._at(self.sqrt_alphas_cumprod, t, x0) * noise - self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> StepOutput:
        """One DDIM step from `timestep` to the previous chosen timestep."""
        i = self._index[int(timestep)]
        b = sample.shape[0]
        t = torch.full((b,), int(timestep), dtype=torch.long, device=sample.device)
        a_t = self._alphas[i].to(sample)
        a_prev = self._alphas_prev[i].to(sample)
        sigma = self._sigmas[i].to(sample)
        eps = self.to_eps(sample, t, model_output)
        x0 = self.to_x0(sample, t, model_output, eps, a_t)
        if self.scale_arr is not None:
            x0 = x0 * (self._scale_prev[i] / self._scale[i]).to(sample)
        direction = (1.0 - a_prev - sigma**2).sqrt() * eps
        prev = a_prev.sqrt() * x0 + direction
        if float(sigma) > 0:
            # Drawn where the generator lives (a CPU generator keeps GPU runs reproducible too).
            gen_device = generator.device if generator is not None else sample.device
            noise = torch.randn(sample.shape, generator=generator, device=gen_device, dtype=sample.dtype).to(sample.device)
            prev = prev + sigma * noise
        return StepOutput(prev, x0)

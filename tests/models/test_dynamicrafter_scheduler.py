"""The DDIM schedule pieces against their closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storyagent.models.dynamicrafter import DiffusionConfig
from storyagent.models.dynamicrafter.scheduler import DDIMScheduler, ddim_timesteps, rescale_guidance


def test_trailing_spacing_ends_at_the_last_timestep():
    steps = ddim_timesteps(50, 1000, "uniform_trailing")
    assert steps.tolist() == list(range(19, 1000, 20))
    assert ddim_timesteps(6, 1000, "uniform_trailing").tolist() == [166, 332, 499, 666, 832, 999]
    assert ddim_timesteps(50, 1000, "uniform").tolist() == list(range(1, 1000, 20))
    with pytest.raises(ValueError, match="uniform"):
        ddim_timesteps(3, 1000, "uniform")


def test_zero_terminal_snr_schedule():
    sched = DDIMScheduler(DiffusionConfig())
    ac = sched.alphas_cumprod.double()
    assert ac[-1] == 0  # pure noise at the last step: v-prediction has to be used there
    assert torch.all(ac[1:] < ac[:-1])
    # The first value is unchanged by the rescale.
    plain = DDIMScheduler(DiffusionConfig(rescale_betas_zero_snr=False)).alphas_cumprod
    assert torch.isclose(sched.alphas_cumprod[0], plain[0])
    assert plain[-1] > 0
    # Dynamic rescale ramp: 1 -> base_scale over turning_step, then flat.
    assert sched.scale_arr[0] == 1 and torch.isclose(sched.scale_arr[399], torch.tensor(0.7))
    assert torch.all(sched.scale_arr[400:] == torch.tensor(0.7, dtype=torch.float32))


def test_v_step_recovers_a_clean_sample_exactly_from_its_true_velocity():
    sched = DDIMScheduler(DiffusionConfig(use_dynamic_rescale=False))
    sched.set_timesteps(10, "uniform_trailing")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 4, 3, 8, 8, generator=g)
    t = int(sched.timesteps[3])
    tt = torch.full((2,), t)
    x_t = sched.add_noise(x0, noise, tt)
    out = sched.step(sched.velocity(x0, noise, tt), t, x_t)
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-5)
    # eta = 0: x_prev is the forward process at the previous timestep with the same noise.
    prev = int(sched.timesteps[4])
    assert torch.allclose(out.prev_sample, sched.add_noise(x0, noise, torch.full((2,), prev)), atol=1e-5)


def test_guidance_rescale_matches_the_conditional_std():
    g = torch.Generator().manual_seed(1)
    cond, guided = torch.randn(2, 4, 8, generator=g), 3 * torch.randn(2, 4, 8, generator=g)
    full = rescale_guidance(guided, cond, 1.0)
    assert torch.allclose(full.std(dim=(1, 2)), cond.std(dim=(1, 2)), atol=1e-5)
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    half = rescale_guidance(guided, cond, 0.5)
    assert torch.allclose(half, 0.5 * full + 0.5 * guided)
    assert np.isfinite(half.numpy()).all()


@pytest.mark.parametrize("steps", [1, 2, 50])
def test_any_step_count_samples(steps):
    """One step is a valid DDIM schedule (the trailing spacing's flipped array must index the tables)."""
    sched = DDIMScheduler(DiffusionConfig())
    timesteps = sched.set_timesteps(steps)
    assert len(timesteps) == steps and int(timesteps[0]) == sched.num_train_timesteps - 1
    sample = torch.zeros(1, 4, 2, 4, 4)
    out = sched.step(torch.ones_like(sample), timesteps[0], sample)
    assert torch.isfinite(out.prev_sample).all() and out.prev_sample.shape == sample.shape

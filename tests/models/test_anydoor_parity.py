"""AnyDoor parity: upstream-made fixture, plus fixtures of other sizes and seeds written by us."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from storyagent.models import parity
from storyagent.models.anydoor.parity import write_fixture
from storyagent.models.anydoor.config import AnyDoorConfig, ImageEncoderConfig, SamplingConfig, UNetConfig, VAEConfig

from tests.support.paths import SHARED_PARITY

FIXTURE = SHARED_PARITY / "anydoor_tiny"


@pytest.fixture(scope="module")
def upstream_fixture() -> Path:
    if not (FIXTURE / "outputs.safetensors").is_file():
        pytest.skip(f"upstream AnyDoor fixture not found at {FIXTURE} (../shared is absent in this checkout)")
    return FIXTURE


def test_parity_command_passes_on_upstream_fixture(upstream_fixture, capsys):
    assert parity.main([str(upstream_fixture)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = set(load_file(str(upstream_fixture / "outputs.safetensors")))
    reported = {line.split()[0] for line in lines[:-1]}
    assert reported == expected and len(expected) == 19  # context, uncond, 13 controls, eps, ddim, decode, schedule
    assert all(line.split()[-1] == "ok" for line in lines[:-1])


def _other_config(seed: int) -> AnyDoorConfig:
    """A topology unlike anydoor_tiny: 3 levels, 1 block each, attention on one level only,
    a plain-MLP 1-block DINOv2 trained for 280 px, other widths and latent size."""
    unet = UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(2,),
                        num_head_channels=16, context_dim=24)
    return AnyDoorConfig(
        unet=unet, controlnet=replace(unet),
        vae=VAEConfig(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, resolution=64),
        dinov2=ImageEncoderConfig(img_size=280, embed_dim=32, depth=1, num_heads=2, ffn_layer="mlp", projector=(32, 24)),
        sampling=SamplingConfig(ddim_steps=3 + seed, cfg_scale=3.5, latent_hw=(8, 8)),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_parity_on_other_sizes_and_seeds(tmp_path, seed):
    folder = write_fixture(tmp_path / f"fx{seed}", _other_config(seed), seed=seed)
    errors = parity.run(folder)
    assert len(errors) == 6 + 7  # 6 non-control outputs; conv_in + 3 blocks + 2 downsamples + middle
    assert max(errors.values()) < 1e-6
    # The fixture's config, not anydoor_tiny's, decided the shapes.
    outputs = load_file(str(folder / "outputs.safetensors"))
    assert outputs["context"].shape == (1, 257, 24) and outputs["ddim_samples"].shape == (1, 4, 8, 8)


def test_parity_command_fails_on_a_changed_weight(tmp_path, capsys):
    folder = write_fixture(tmp_path / "fx", _other_config(0), seed=3)
    weights = load_file(str(folder / "weights.safetensors"))
    key = "model.diffusion_model.output_blocks.0.0.out_layers.3.weight"
    weights[key] = weights[key] * 1.01
    save_file(weights, str(folder / "weights.safetensors"))
    assert parity.main([str(folder)]) == 1
    out = capsys.readouterr().out
    assert "unet_eps" in out and "FAIL" in out and "NOT all" in out


def test_parity_command_refuses_a_folder_that_is_not_a_fixture(tmp_path):
    assert parity.main([str(tmp_path)]) == 2

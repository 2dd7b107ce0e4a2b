"""Converter: official-layout pickles (saved with torch.save) -> safetensors folder -> pipeline."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from storyagent.errors import ConversionError, InputError, UnsafeCheckpointError
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.anydoor.testing import tiny_config
from storyagent.models.anydoor.components import build_components
from storyagent.models.anydoor.convert import DINOV2_PREFIX, convert_checkpoint, main, to_official_state_dict
from tests.support.checkpoints import BAD_FILES, NotATensor, assert_refused_in_one_line, write_bad_checkpoint
from tests.support.process import BackgroundCommand


@pytest.fixture(scope="module", autouse=True)
def as_a_command(tmp_path_factory):
    """`python -m storyagent.models.anydoor.convert` on a random file, started with the module's first test
    (its imports take seconds, spent on the other core) and checked by its last one."""
    folder = tmp_path_factory.mktemp("as_a_command")
    ckpt = write_bad_checkpoint("random", folder)
    command = BackgroundCommand([sys.executable, "-m", "storyagent.models.anydoor.convert", str(ckpt), str(folder / "out")])
    yield ckpt, folder / "out", command
    command.stop()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config()
    components = build_components(config)
    with torch.no_grad():  # give every tensor, zero-initialised ones included, a value
        for module in ("unet", "controlnet", "vae", "image_encoder"):
            for p in components[module].parameters():
                p.add_(0.02 * torch.randn_like(p))
    state = to_official_state_dict(components, config)
    folder = tmp_path_factory.mktemp("ckpt")
    anydoor = {k: v for k, v in state.items() if not k.startswith(DINOV2_PREFIX)}
    # the release layout: a Lightning checkpoint with the weights under "state_dict"
    torch.save({"state_dict": anydoor, "global_step": 8687}, folder / "epoch=1-step=8687.ckpt")
    torch.save({k[len(DINOV2_PREFIX):]: v for k, v in state.items() if k.startswith(DINOV2_PREFIX)},
               folder / "dinov2_vitg14_pretrain.pth")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return folder, config, components


def test_converted_folder_loads_and_computes_what_the_source_modules_compute(official, tmp_path):
    folder, config, components = official
    out = convert_checkpoint(folder / "epoch=1-step=8687.ckpt", tmp_path / "anydoor",
                             dinov2_pth=folder / "dinov2_vitg14_pretrain.pth", config=config)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "config.json" in files and all(not f.endswith((".bin", ".pt", ".ckpt")) for f in files)
    assert {f.split("/")[0] for f in files if f.endswith(".safetensors")} == {"unet", "controlnet", "vae", "image_encoder"}

    pipe = AnyDoorPipeline.from_pretrained(out)
    reference = AnyDoorPipeline(**components, config=config)
    ref = torch.rand(1, 3, 224, 224)
    latents, hint = torch.randn(1, 4, 16, 16), torch.rand(1, 4, 128, 128) * 2 - 1
    with torch.no_grad():
        ctx = pipe.encode_reference(ref)
        torch.testing.assert_close(ctx, reference.encode_reference(ref))
        eps = pipe.predict_noise(latents, 500, ctx, hint)
        # the source ControlNet's conv_in is ignored upstream; the converter zeroes it
        torch.nn.init.zeros_(reference.controlnet.conv_in.weight)
        torch.nn.init.zeros_(reference.controlnet.conv_in.bias)
        torch.testing.assert_close(eps, reference.predict_noise(latents, 500, ctx, hint))
        torch.testing.assert_close(pipe.decode_latents(latents), reference.decode_latents(latents))


def test_controlnet_residuals_do_not_depend_on_the_latent_as_upstream(official, tmp_path):
    folder, config, _ = official
    out = convert_checkpoint(folder / "epoch=1-step=8687.ckpt", tmp_path / "a",
                             dinov2_pth=folder / "dinov2_vitg14_pretrain.pth", config=config)
    pipe = AnyDoorPipeline.from_pretrained(out)
    ctx, hint = torch.randn(1, 257, 32), torch.rand(1, 4, 128, 128)
    with torch.no_grad():
        a = pipe.control_residuals(torch.randn(1, 4, 16, 16), 10, ctx, hint)
        b = pipe.control_residuals(torch.randn(1, 4, 16, 16), 10, ctx, hint)
    # upstream's ControlNet starts from the hint embedding instead of conv_in(latent) + hint, so none
    # of its 13 residuals depends on the latent; only on hint, context and timestep
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    with torch.no_grad():
        c = pipe.control_residuals(torch.randn(1, 4, 16, 16), 10, ctx, torch.rand(1, 4, 128, 128))
    assert not torch.allclose(a[-1], c[-1])


def test_missing_dinov2_is_a_clear_error(official, tmp_path):
    folder, config, _ = official
    with pytest.raises(InputError, match="--dinov2"):
        convert_checkpoint(folder / "epoch=1-step=8687.ckpt", tmp_path / "b", config=config)


def test_unsafe_pickle_is_refused(official, tmp_path):
    folder, config, _ = official
    evil = tmp_path / "evil.ckpt"
    state = {"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "callback": NotATensor()}
    torch.save(state, evil)
    with pytest.raises(UnsafeCheckpointError, match="Refusing"):
        convert_checkpoint(evil, tmp_path / "c", dinov2_pth=folder / "dinov2_vitg14_pretrain.pth", config=config)
    with pytest.raises(UnsafeCheckpointError):
        convert_checkpoint(folder / "epoch=1-step=8687.ckpt", tmp_path / "d", dinov2_pth=evil, config=config)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_wrong_layout_names_the_offending_key(official, tmp_path):
    folder, config, _ = official
    state = torch.load(folder / "epoch=1-step=8687.ckpt", weights_only=True)["state_dict"]
    state["model.diffusion_model.input_blocks.99.0.in_layers.0.weight"] = torch.ones(4)
    torch.save(state, tmp_path / "odd.ckpt")
    with pytest.raises(InputError, match="input_blocks.99"):
        convert_checkpoint(tmp_path / "odd.ckpt", tmp_path / "e", dinov2_pth=folder / "dinov2_vitg14_pretrain.pth",
                           config=config)


def test_command_line(official, tmp_path, capsys):
    folder, _, _ = official
    code = main([str(folder / "epoch=1-step=8687.ckpt"), str(tmp_path / "cli"),
                 "--dinov2", str(folder / "dinov2_vitg14_pretrain.pth"), "--config", str(folder / "config.json")])
    assert code == 0 and "wrote" in capsys.readouterr().out
    assert AnyDoorPipeline.from_pretrained(tmp_path / "cli").config.unet.model_channels == 32


def _edited_checkpoint(official, tmp_path, edit) -> tuple:
    folder, config, _ = official
    state = torch.load(folder / "epoch=1-step=8687.ckpt", weights_only=True)["state_dict"]
    edit(state)
    torch.save({"state_dict": state}, tmp_path / "edited.ckpt")
    return tmp_path / "edited.ckpt", folder / "dinov2_vitg14_pretrain.pth", folder / "config.json"


@pytest.mark.parametrize("key", [
    "model.diffusion_model.output_blocks.0.0.in_layers.0.extra",  # a name the UNet's ResBlock lacks
    "control_model.zero_convs.99.0.weight",  # a ControlNet output the config does not have
    "first_stage_model.encoder.down.0.block.5.conv1.weight",  # the VAE
    "cond_stage_model.projector.extra",  # the identity encoder's projector
    "cond_stage_model.other.weight",  # no part of the model at all
])
def test_a_checkpoint_with_one_extra_key_is_refused_naming_it(official, tmp_path, capsys, key):
    ckpt, dinov2, config = _edited_checkpoint(official, tmp_path, lambda state: state.__setitem__(key, torch.zeros(4)))
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert_checkpoint(ckpt, tmp_path / "out", dinov2_pth=dinov2, config=official[1])
    assert not (tmp_path / "out" / "config.json").exists()
    assert main([str(ckpt), str(tmp_path / "cli"), "--dinov2", str(dinov2), "--config", str(config)]) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("key", [
    "model.diffusion_model.output_blocks.3.0.out_layers.3.weight",
    "control_model.middle_block_out.0.bias",
    "first_stage_model.decoder.mid.attn_1.proj_out.weight",
])
def test_a_checkpoint_with_one_missing_key_is_refused_naming_it(official, tmp_path, key):
    ckpt, dinov2, _ = _edited_checkpoint(official, tmp_path, lambda state: state.pop(key))
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert_checkpoint(ckpt, tmp_path / "out", dinov2_pth=dinov2, config=official[1])
    assert not (tmp_path / "out" / "config.json").exists()


# ---- the command line on files that are not the checkpoint (issue 16) --------------------------------


@pytest.mark.parametrize("kind", BAD_FILES)
def test_command_line_refuses_a_bad_checkpoint_in_one_line(official, tmp_path, capsys, kind):
    folder, _, _ = official
    ckpt = write_bad_checkpoint(kind, tmp_path)
    assert main([str(ckpt), str(tmp_path / "out"), "--dinov2", str(folder / "dinov2_vitg14_pretrain.pth"),
                 "--config", str(folder / "config.json")]) == 2
    assert_refused_in_one_line(capsys.readouterr(), BAD_FILES[kind], tmp_path / "out")


@pytest.mark.parametrize("kind", BAD_FILES)
def test_command_line_refuses_bad_dinov2_weights_in_one_line(official, tmp_path, capsys, kind):
    folder, _, _ = official
    dinov2 = write_bad_checkpoint(kind, tmp_path)
    assert main([str(folder / "epoch=1-step=8687.ckpt"), str(tmp_path / "out"), "--dinov2", str(dinov2),
                 "--config", str(folder / "config.json")]) == 2
    # The DINOv2 file holds no UNet: an unrelated one is refused naming an entry the encoder does not have.
    needle = "The DINOv2 weights hold 'cond_stage_model.model.head.bias'" if kind == "unrelated" else BAD_FILES[kind]
    assert_refused_in_one_line(capsys.readouterr(), needle, tmp_path / "out")


def test_command_line_without_dinov2_says_to_pass_it_and_keeps_an_existing_folder(official, tmp_path, capsys):
    folder, _, _ = official
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([str(folder / "epoch=1-step=8687.ckpt"), str(out), "--config", str(folder / "config.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"error: {folder / 'epoch=1-step=8687.ckpt'} holds no DINOv2 weights; "
                                                 "pass --dinov2 dinov2_vitg14_pretrain.pth."]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"], "a folder the user had is left as it was"


def test_module_run_as_a_command_shows_no_traceback(as_a_command):
    ckpt, out, command = as_a_command
    res = command.result()
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"error: {ckpt} is neither a PyTorch checkpoint nor a safetensors file; "
                                               "give the path of the AnyDoor checkpoint."]
    assert not out.exists()

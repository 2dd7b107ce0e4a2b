"""Converter: an official-layout model.ckpt (torch.save pickle) -> a folder the pipeline loads."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from storyagent.errors import ConversionError, UnsafeCheckpointError
from storyagent.models.dynamicrafter import DynamiCrafterConfig, DynamiCrafterPipeline
from storyagent.models.dynamicrafter.convert import convert_checkpoint, main
from storyagent.models.parity import relative_error
from storyagent.models.dynamicrafter.testing import write_tiny_tokenizer
from tests.support.checkpoints import BAD_FILES, NotATensor, assert_refused_in_one_line, write_bad_checkpoint
from tests.support.process import BackgroundCommand

from tests.support.paths import SHARED_PARITY

FIXTURE = SHARED_PARITY / "dynamicrafter_tiny"
needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason=f"parity fixture {FIXTURE} is absent (../shared not mounted)")


@pytest.fixture(scope="module", autouse=True)
def as_a_command(tmp_path_factory):
    """`python -m storyagent.models.dynamicrafter.convert` on a damaged file, started with the module's first
    test (its imports take seconds, spent on the other core) and checked by its last one."""
    folder = tmp_path_factory.mktemp("as_a_command")
    ckpt = write_bad_checkpoint("truncated", folder)
    command = BackgroundCommand([sys.executable, "-m", "storyagent.models.dynamicrafter.convert", str(ckpt),
                                 str(folder / "out")])
    yield ckpt, folder / "out", command
    command.stop()


WIDTH, HEADS, LAYERS, VOCAB = 32, 4, 3, 80
V_WIDTH, V_HEADS, PATCH, GRID = 48, 4, 8, 4



def _openclip_blocks(prefix: str, width: int, layers: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    out = {}
    for i in range(layers):
        p = f"{prefix}resblocks.{i}."
        out |= {p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
                p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
                p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width),
                p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
                p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width)}
    return out


def openclip_towers(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random OpenCLIP text and vision towers under the official checkpoint's key names."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    t = "cond_stage_model.model."
    state = {t + "token_embedding.weight": r(VOCAB, WIDTH), t + "positional_embedding": r(77, WIDTH),
             t + "ln_final.weight": 1 + r(WIDTH), t + "ln_final.bias": r(WIDTH), t + "text_projection": r(WIDTH, 16),
             t + "logit_scale": torch.tensor(4.6)}
    state |= _openclip_blocks(t + "transformer.", WIDTH, LAYERS, g)
    v = "embedder.model.visual."
    state |= {v + "conv1.weight": r(V_WIDTH, 3, PATCH, PATCH), v + "class_embedding": r(V_WIDTH),
              v + "positional_embedding": r(GRID * GRID + 1, V_WIDTH), v + "ln_pre.weight": 1 + r(V_WIDTH),
              v + "ln_pre.bias": r(V_WIDTH), v + "ln_post.weight": 1 + r(V_WIDTH), v + "ln_post.bias": r(V_WIDTH),
              v + "proj": r(V_WIDTH, 16)}
    state |= _openclip_blocks(v + "transformer.", V_WIDTH, 2, g)
    return state


def _reference_tower(state: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, width: int, heads: int,
                     layers: int, causal: bool) -> torch.Tensor:
    """OpenCLIP's residual attention blocks, written out with nn.MultiheadAttention."""
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1) if causal else None
    for i in range(layers):
        p = f"{prefix}resblocks.{i}."
        attn = nn.MultiheadAttention(width, heads, batch_first=True)
        attn.in_proj_weight.data, attn.in_proj_bias.data = state[p + "attn.in_proj_weight"], state[p + "attn.in_proj_bias"]
        attn.out_proj.weight.data, attn.out_proj.bias.data = state[p + "attn.out_proj.weight"], state[p + "attn.out_proj.bias"]
        h = F.layer_norm(x, (width,), state[p + "ln_1.weight"], state[p + "ln_1.bias"])
        x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = F.layer_norm(x, (width,), state[p + "ln_2.weight"], state[p + "ln_2.bias"])
        h = F.gelu(F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return x


@needs_fixture
def test_official_checkpoint_converts_and_reproduces_the_reference(tmp_path):
    # Official layout: the fixture's upstream state dict plus OpenCLIP towers, pickled with torch.save.
    state = load_file(FIXTURE / "weights.safetensors") | openclip_towers()
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 1000}, ckpt)
    config = DynamiCrafterConfig.from_dict(__import__("json").loads((FIXTURE / "config.json").read_text()))
    out = convert_checkpoint(ckpt, tmp_path / "converted", config, text_heads=HEADS, vision_heads=V_HEADS,
                             tokenizer_dir=write_tiny_tokenizer(tmp_path / "tok"))
    assert (out / "tokenizer").is_dir()
    pipe = DynamiCrafterPipeline.from_pretrained(out)

    inputs, refs = load_file(FIXTURE / "inputs.safetensors"), load_file(FIXTURE / "outputs.safetensors")
    tokens = pipe.resample(inputs["clip_image_tokens"])
    assert relative_error(tokens, refs["image_tokens"]) < 1e-4
    frames = inputs["x_T"].shape[2]
    x = torch.cat([inputs["x_T"], inputs["image_latent"][:, :, None].expand(-1, -1, frames, -1, -1)], dim=1)
    with torch.no_grad():
        unet_out = pipe.unet(x, inputs["probe_timestep"], torch.cat([inputs["text_context"], tokens], 1), fs=inputs["fs"])
    assert relative_error(unet_out, refs["unet_out"]) < 1e-4

    # Text tower: OpenCLIP's penultimate block output, then ln_final.
    ids = torch.randint(0, VOCAB, (2, 77))
    t = "cond_stage_model.model."
    x = state[t + "token_embedding.weight"][ids] + state[t + "positional_embedding"]
    ref = _reference_tower(state, t + "transformer.", x, WIDTH, HEADS, LAYERS - 1, causal=True)
    ref = F.layer_norm(ref, (WIDTH,), state[t + "ln_final.weight"], state[t + "ln_final.bias"])
    with torch.no_grad():
        ours = pipe.text_encoder(input_ids=ids)
    assert torch.allclose(ours, ref, atol=1e-5)

    # Vision tower: all tokens after the last block, before ln_post.
    pixels = torch.randn(2, 3, GRID * PATCH, GRID * PATCH)
    v = "embedder.model.visual."
    patches = F.conv2d(pixels, state[v + "conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    x = torch.cat([state[v + "class_embedding"].expand(2, 1, -1), patches], 1) + state[v + "positional_embedding"]
    x = F.layer_norm(x, (V_WIDTH,), state[v + "ln_pre.weight"], state[v + "ln_pre.bias"])
    ref = _reference_tower(state, v + "transformer.", x, V_WIDTH, V_HEADS, 2, causal=False)
    with torch.no_grad():
        ours = pipe.image_encoder.model(pixel_values=pixels).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)


def test_checkpoint_with_a_custom_object_is_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "callbacks": NotATensor()}, ckpt)
    with pytest.raises(UnsafeCheckpointError, match="Refusing checkpoint"):
        convert_checkpoint(ckpt, tmp_path / "out")
    assert not (tmp_path / "out" / "unet" / "diffusion_pytorch_model.safetensors").exists()


@pytest.mark.parametrize("kind", BAD_FILES)
def test_command_line_refuses_a_bad_checkpoint_in_one_line(tmp_path, capsys, kind):
    ckpt = write_bad_checkpoint(kind, tmp_path)
    assert main([str(ckpt), str(tmp_path / "out"), "--tokenizer", str(tmp_path)]) == 2
    assert_refused_in_one_line(capsys.readouterr(), BAD_FILES[kind], tmp_path / "out")


def test_a_state_dict_of_another_model_is_refused_naming_what_it_lacks(tmp_path, capsys):
    # Tensors under the model's own prefixes, but none of the UNet's names: another model's state dict.
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.encoder.layer.0.weight": torch.ones(4, 4),
                               "first_stage_model.quant.weight": torch.ones(4)}}, ckpt)
    assert main([str(ckpt), str(tmp_path / "out"), "--tokenizer", str(tmp_path)]) == 2
    needle = (r"is not a DynamiCrafter checkpoint: it holds none of the model's 1516 UNet weights "
              r"\(model\.diffusion_model\.fps_embedding\.0\.bias, ")
    assert_refused_in_one_line(capsys.readouterr(), needle, tmp_path / "out")


def test_command_line_refuses_a_tokenizer_that_is_not_a_folder(tmp_path, capsys):
    ckpt = write_bad_checkpoint("unrelated", tmp_path)
    assert main([str(ckpt), str(tmp_path / "out"), "--tokenizer", str(tmp_path / "nothing")]) == 2
    assert_refused_in_one_line(capsys.readouterr(), "--tokenizer .* is not a folder", tmp_path / "out")


@needs_fixture
def test_official_checkpoint_from_the_weights_registry_is_converted_once(tmp_path, monkeypatch):
    state = load_file(FIXTURE / "weights.safetensors") | openclip_towers()
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)
    monkeypatch.setenv("STORYAGENT_WEIGHTS_DYNAMICRAFTER_512", str(ckpt))
    monkeypatch.setenv("STORYAGENT_WEIGHTS_OPEN_CLIP_VIT_H_14", str(write_tiny_tokenizer(tmp_path / "tok")))
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    config = DynamiCrafterConfig.from_dict(__import__("json").loads((FIXTURE / "config.json").read_text()))
    pipe = DynamiCrafterPipeline.from_pretrained(config=config)
    (folder,) = (tmp_path / "cache").iterdir()
    stamp = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    again = DynamiCrafterPipeline.from_pretrained(config=config)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp  # reused, not converted again
    for a, b in zip(pipe.unet.parameters(), again.unet.parameters()):
        assert torch.equal(a, b)
    assert pipe.text_encoder is not None and pipe.image_encoder is not None

    # A cache folder in the earlier flat layout (unet.safetensors beside config.json) is converted again.
    for name in ("unet", "vae", "resampler"):
        (folder / name / "diffusion_pytorch_model.safetensors").rename(folder / f"{name}.safetensors")
    third = DynamiCrafterPipeline.from_pretrained(config=config)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    for a, b in zip(pipe.unet.parameters(), third.unet.parameters()):
        assert torch.equal(a, b)


def _official_checkpoint(tmp_path: Path, edit) -> Path:
    state = load_file(FIXTURE / "weights.safetensors") | openclip_towers()
    edit(state)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)
    return ckpt


@needs_fixture
@pytest.mark.parametrize("key", [
    "model.diffusion_model.input_blocks.1.0.in_layers.0.extra",  # under a known block, a name the UNet lacks
    "model.diffusion_model.input_blocks.99.0.conv.weight",  # a block the config does not have
    "image_proj_model.layers.0.9.weight",  # the Resampler
    "first_stage_model.decoder.up.0.block.7.conv1.weight",  # the VAE
    "cond_stage_model.model.transformer.resblocks.0.ls_1.gamma",  # the OpenCLIP text tower
    "something_else.weight",  # no part of the model at all
])
def test_a_checkpoint_with_one_extra_key_is_refused_naming_it(tmp_path, capsys, key):
    ckpt = _official_checkpoint(tmp_path, lambda state: state.__setitem__(key, torch.zeros(4)))
    config = DynamiCrafterConfig.from_json(FIXTURE / "config.json")
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert_checkpoint(ckpt, tmp_path / "out", config)
    assert not (tmp_path / "out" / "config.json").exists()
    assert main([str(ckpt), str(tmp_path / "cli")]) == 2  # the default variant: refused, if on another key
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "cli").exists()


@needs_fixture
@pytest.mark.parametrize("key", [
    "model.diffusion_model.output_blocks.2.0.temopral_conv.conv3.3.weight",
    "image_proj_model.proj_out.bias",
    "first_stage_model.encoder.mid.attn_1.q.weight",
    "embedder.model.visual.ln_post.bias",
])
def test_a_checkpoint_with_one_missing_key_is_refused_naming_it(tmp_path, key):
    ckpt = _official_checkpoint(tmp_path, lambda state: state.pop(key))
    config = DynamiCrafterConfig.from_json(FIXTURE / "config.json")
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert_checkpoint(ckpt, tmp_path / "out", config)
    assert not (tmp_path / "out" / "config.json").exists()


def test_module_run_as_a_command_shows_no_traceback(as_a_command):
    ckpt, out, command = as_a_command
    res = command.result()
    assert res.returncode == 2 and res.stdout == "", "no tokenizer note when nothing was converted"
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {ckpt} is a damaged safetensors file (") and line.endswith(
        "); download the DynamiCrafter model.ckpt again.")
    assert not out.exists()

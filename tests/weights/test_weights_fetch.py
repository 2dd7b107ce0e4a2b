"""`storyagent weights fetch / verify / list` and `doctor` against a local imitation of the Hugging Face
Hub on 127.0.0.1 serving tiny checkpoints in the upstream layouts; then a diffusion run with no
environment variable and no other command."""

from __future__ import annotations

import hashlib

import pytest
import torch
from typer.testing import CliRunner

from storyagent.weights import WEIGHTS
from tests.support.fake_hub import FakeHub, TinyUpstream, empty_caches_at

from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = FakeHub()
    server.tiny = TinyUpstream(server, tmp_path_factory.mktemp("upstream"))
    yield server
    server.server.shutdown()


@pytest.fixture
def caches(tmp_path, monkeypatch, hub):
    """Empty Hugging Face and StoryAgent caches, HF_ENDPOINT at the local hub, no STORYAGENT_WEIGHTS_*."""
    from storyagent.progress import console

    monkeypatch.setattr(console, "width", 250)  # table cells on one line each
    return empty_caches_at(hub, tmp_path, monkeypatch)


def storyagent(*args: str):
    """`storyagent ARGS` for the commands of commands/weights.py, as cli.py mounts them."""
    import typer

    from storyagent.commands.weights import app as weights_app
    from storyagent.commands.weights import doctor

    app = typer.Typer()
    app.command()(doctor)
    app.add_typer(weights_app, name="weights")
    return CliRunner().invoke(app, list(args))


def config_args(hub, *names: str) -> list[str]:
    return [a for n in names for a in ("--config", f"{n}={hub.tiny.configs[n]}")]


def test_fetch_converts_once_and_the_loader_finds_it_with_no_env_var(hub, caches):
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.dynamicrafter.config import DynamiCrafterConfig
    from storyagent.models.dynamicrafter.convert import convert_checkpoint
    from storyagent.weights.registry import load_registry

    hub.tiny.provide("dynamicrafter-512")
    result = storyagent("weights", "fetch", "dynamicrafter-512", *config_args(hub, "dynamicrafter-512"), "--quiet")
    assert result.exit_code == 0, result.output
    assert "open_clip_pytorch_model.bin" not in hub.sent, "only the tokenizer of the OpenCLIP repository"

    pipe = DynamiCrafterPipeline.from_pretrained()  # no path, no STORYAGENT_WEIGHTS_*: the converted cache
    served = hub.repos[WEIGHTS["dynamicrafter-512"].repo_id]["model.ckpt"]
    (caches / "model.ckpt").write_bytes(served)
    config = DynamiCrafterConfig.from_json(hub.tiny.configs["dynamicrafter-512"])
    direct = DynamiCrafterPipeline.from_pretrained(convert_checkpoint(
        caches / "model.ckpt", caches / "direct", config, tokenizer_dir=hub.tiny.tokenizer))
    for name, module in pipe.modules.items():
        theirs = direct.modules[name].state_dict()
        mine = module.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    for a, b in zip(pipe.unet.parameters(), hub.tiny.dynamicrafter.unet.parameters()):
        assert torch.equal(a, b)
    assert pipe.text_encoder.tokenizer("ab").input_ids == hub.tiny.dynamicrafter.text_encoder.tokenizer("ab").input_ids

    entry = load_registry()["dynamicrafter-512"]
    (ckpt,) = entry["files"]
    assert ckpt["sha256"] == hashlib.sha256(served).hexdigest() and ckpt["size"] == len(served)
    assert entry["revision"] == hub.commit(WEIGHTS["dynamicrafter-512"].repo_id)
    assert ckpt["url"].startswith(hub.url) and "Apache-2.0" in entry["licence"]
    assert entry["converted"]["folder"].startswith("converted/dynamicrafter-512-")
    assert {f["path"] for f in entry["converted"]["files"]} >= {"config.json", "unet/diffusion_pytorch_model.safetensors"}

    # Fetched again: nothing downloaded, nothing converted again.
    unet = caches / "cache" / entry["converted"]["folder"] / "unet" / "diffusion_pytorch_model.safetensors"
    stamp, sent = unet.stat().st_mtime_ns, dict(hub.sent)
    assert storyagent("weights", "fetch", "dynamicrafter-512", *config_args(hub, "dynamicrafter-512"),
                      "--quiet").exit_code == 0
    assert hub.sent == sent and unet.stat().st_mtime_ns == stamp


def test_an_interrupted_download_continues_where_it_stopped(hub, caches):
    from storyagent.weights import resolve_weights

    name, file = "sam-vit-h", "checkpoints/sam_vit_h_4b8939.pth"
    hub.tiny.provide(name)
    data = hub.repos[WEIGHTS[name].repo_id][file]
    hub.cut[file] = len(data) // 3
    first = storyagent("weights", "fetch", name, "--quiet")
    assert first.exit_code == 2 and "Traceback" not in first.output
    assert "run the same command again to continue" in first.output
    (partial,) = (caches / "hf").rglob("*.incomplete")
    assert partial.stat().st_size == len(data) // 3

    hub.down = False
    second = storyagent("weights", "fetch", name, "--quiet")
    assert second.exit_code == 0, second.output
    assert hub.ranges == [(file, f"bytes={len(data) // 3}-")], "the second fetch asks for the rest only"
    assert hub.sent[file] == len(data), "no byte is sent twice"
    assert resolve_weights(name).read_bytes() == data
    assert not list((caches / "hf").rglob("*.incomplete"))


def test_verify_catches_a_flipped_byte_and_a_missing_file(hub, caches):
    from storyagent.weights import resolve_weights

    hub.tiny.provide("sam-vit-h", "dynamicrafter-512")
    assert storyagent("weights", "fetch", "sam-vit-h", "dynamicrafter-512",
                      *config_args(hub, "dynamicrafter-512"), "--quiet").exit_code == 0
    ok = storyagent("weights", "verify", "--quiet")
    assert ok.exit_code == 0, ok.output
    assert "ok:" in ok.output

    sam = resolve_weights("sam-vit-h").resolve()
    raw = bytearray(sam.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    sam.write_bytes(bytes(raw))
    (resolve_weights("dynamicrafter-512") / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    bad = storyagent("weights", "verify", "--quiet")
    assert bad.exit_code == 1
    lines = [line for line in bad.output.splitlines() if "fix:" in line]
    assert len(lines) == 2, bad.output
    assert any(line.startswith("corrupt (sha256") and "sam_vit_h_4b8939.pth" in line
               and "storyagent weights fetch sam-vit-h" in line for line in lines), bad.output
    assert any(line.startswith("missing") and "vae/diffusion_pytorch_model.safetensors" in line for line in lines)

    # The fix it names repairs both: the damaged download is fetched anew, the conversion redone.
    sent = hub.sent.get("checkpoints/sam_vit_h_4b8939.pth", 0)
    assert storyagent("weights", "fetch", "sam-vit-h", "dynamicrafter-512",
                      *config_args(hub, "dynamicrafter-512"), "--quiet").exit_code == 0
    assert hub.sent["checkpoints/sam_vit_h_4b8939.pth"] == sent + len(raw)
    assert hub.sent["model.ckpt"] == len(hub.repos[WEIGHTS["dynamicrafter-512"].repo_id]["model.ckpt"]), "not again"
    assert storyagent("weights", "verify", "--quiet").exit_code == 0


def test_list_shows_states_and_doctor_names_one_fetch_command(hub, caches):
    from storyagent.weights.registry import registry_path

    hub.tiny.provide("anydoor", "sam-vit-h", "dynamicrafter-512")
    assert storyagent("weights", "fetch", "anydoor", "sam-vit-h", *config_args(hub, "anydoor"), "--quiet").exit_code == 0
    registry_path().unlink()  # as if the download was made by hand: anydoor is downloaded but not converted
    assert storyagent("weights", "fetch", "dynamicrafter-512", *config_args(hub, "dynamicrafter-512"),
                      "--quiet").exit_code == 0
    listed = {line.split("│")[1].strip(): line for line in storyagent("weights", "list").output.splitlines()
              if line.count("│") > 3}
    assert " converted " in listed["dynamicrafter-512"] and (" MB " in listed["dynamicrafter-512"]
                                                             or " KB " in listed["dynamicrafter-512"])
    assert "not converted" in listed["anydoor"]
    assert " downloaded " in listed["sam-vit-h"] and "Apache-2.0" in listed["sam-vit-h"]
    assert " missing " in listed["sdxl-base"] and "CreativeML Open RAIL++-M" in listed["sdxl-base"]

    from tests.frontends.test_doctor import rows

    status, _ = rows(storyagent("doctor").output)["weights: diffusion backend"]
    assert "3 of 6 (sdxl-base, grounding-dino-base, anydoor: not converted)" in status  # the fetched ones not named
    assert "storyagent weights fetch --backend diffusion" in status
    verbose = storyagent("doctor", "--verbose").output
    assert "storyagent weights fetch anydoor" in verbose and "storyagent weights fetch sdxl-base" in verbose
    assert "storyagent weights fetch dynamicrafter-512" not in verbose
    assert "python -m" not in verbose and "STORYAGENT_WEIGHTS" not in verbose


def test_the_aesthetic_head_is_kept_as_safetensors_and_loaded_from_there(hub, caches):
    from storyagent.models.aesthetic.head import AestheticHead
    from storyagent.weights import resolve_weights_file, weights_state

    hub.tiny.provide("laion-aesthetic-v2")
    assert storyagent("weights", "fetch", "laion-aesthetic-v2", "--quiet").exit_code == 0
    assert weights_state("laion-aesthetic-v2") == "converted"
    assert resolve_weights_file("laion-aesthetic-v2").name == "model.safetensors"
    loaded = AestheticHead.from_pretrained().state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in hub.tiny.head.state_dict().items())


def test_the_command_line_honours_hf_endpoint_and_hf_home(hub, tmp_path):
    """`python -m storyagent weights fetch` in a fresh process: HF_ENDPOINT and HF_HOME from the environment."""
    import os
    import subprocess
    import sys

    hub.tiny.provide("sam-vit-h")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYAGENT_WEIGHTS_", "HF_"))}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "STORYAGENT_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT), "COLUMNS": "250"}

    def storyagent_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "storyagent", *args], capture_output=True, text=True,
                              timeout=300, cwd=ROOT, env=env)

    fetched = storyagent_cli("weights", "fetch", "sam-vit-h", "--quiet")
    assert fetched.returncode == 0, fetched.stderr
    assert list((tmp_path / "hf" / "hub").rglob("sam_vit_h_4b8939.pth"))
    listed = storyagent_cli("weights", "list")
    (row,) = [line for line in listed.stderr.splitlines() if "sam-vit-h" in line]  # rich writes to stderr
    assert " downloaded " in row and "Apache-2.0" in row


def test_fetch_for_the_backend_then_a_diffusion_run_needs_nothing_else(hub, caches, tmp_path, pip_png):
    """The issue's target: one fetch command, then `run --backend diffusion` makes the film."""
    from storyagent.agents.crew import run_crew
    from storyagent.config import RunConfig

    hub.tiny.provide("sdxl-base", "grounding-dino-base", "sam-vit-h", "anydoor", "dynamicrafter-512")
    result = storyagent("weights", "fetch", "--backend", "diffusion", *config_args(hub, "anydoor", "dynamicrafter-512"),
                        "--quiet")
    assert result.exit_code == 0, result.output
    assert "Diffusion films: ready" in storyagent("doctor").output, "the command doctor names fetches all it needs"
    assert "sd_xl_base_1.0.safetensors" not in hub.sent, "the diffusers layout only, not the single-file copy"
    assert "pytorch_model.bin" not in hub.sent, "safetensors only where a repository holds both"
    cfg = RunConfig.build(prompt="a day at the seaside", subject=pip_png, name="Pip",
                          class_word="fox", shots=1, width=64, height=64, fps=4, backend="diffusion", steps=2,
                          storyboard_side=64, anydoor_steps=2, finetune="off")
    film = run_crew(cfg, tmp_path / "run", show_progress=False)
    assert film.film is not None and (tmp_path / "run" / "film.mp4").stat().st_size > 0
    shot = film.script.shots[0]
    assert len(film.clips) == 1 and film.clips[0].num_frames == round(shot.duration * cfg.fps)  # the shot's length

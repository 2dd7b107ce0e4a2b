"""`storyagent weights fetch / verify / list` and `doctor` against a local imitation of the Hugging Face
Hub on 127.0.0.1 serving tiny checkpoints in the upstream layouts; then a diffusion run with no
environment variable and no other command."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
from typer.testing import CliRunner

from storyagent.weights import WEIGHTS, env_var

ROOT = Path(__file__).resolve().parent.parent


class FakeHub:
    """The part of the Hub's HTTP API huggingface_hub uses to download: `/api/models/{repo}/revision/{rev}`
    (the file list and commit) and `/{repo}/resolve/{rev}/{file}` (HEAD and GET, ETag = sha256,
    X-Repo-Commit, Content-Length, Range). It counts the bytes it sends, records every Range asked
    for, and can drop the connection after `cut[file]` bytes, refusing everything after that."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.sent: dict[str, int] = {}
        self.ranges: list[tuple[str, str]] = []
        self.cut: dict[str, int] = {}
        self.down = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.serve(self, head=True)

            def do_GET(self):
                hub.serve(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, files: dict[str, bytes]) -> None:
        self.repos[repo] = files

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in self.repos[repo].items()))
                            .encode()).hexdigest()

    def serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        if self.down:
            return self.reply(h, 503, b"down", head)
        if path.startswith("/api/models/") and "/revision/" in path:
            repo = path[len("/api/models/"):].split("/revision/")[0]
            if repo not in self.repos:
                return self.reply(h, 404, b"{}", head)
            body = json.dumps({"id": repo, "sha": self.commit(repo),
                               "siblings": [{"rfilename": f} for f in self.repos[repo]]}).encode()
            return self.reply(h, 200, body, head, {"Content-Type": "application/json"})
        repo, _, rest = path.lstrip("/").partition("/resolve/")
        filename = rest.partition("/")[2]
        data = self.repos.get(repo, {}).get(filename)
        if data is None:
            return self.reply(h, 404, b"not found", head, {"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": self.commit(repo),
                   "Accept-Ranges": "bytes"}
        start = 0
        if not head and h.headers.get("Range"):
            self.ranges.append((filename, h.headers["Range"]))
            start = int(h.headers["Range"].split("=")[1].split("-")[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if not head and filename in self.cut:
            # Announce the whole body, send part of it, drop the connection; the Hub is gone afterwards.
            limit = self.cut.pop(filename)
            self.down = True
            h.send_response(200)
            for k, v in (headers | {"Content-Length": str(len(body))}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[:limit])
            h.wfile.flush()
            self.sent[filename] = self.sent.get(filename, 0) + limit
            h.close_connection = True
            return
        if not head:
            self.sent[filename] = self.sent.get(filename, 0) + len(body)
        self.reply(h, 206 if start else 200, body, head, headers)

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, head: bool, headers: dict | None = None) -> None:
        h.send_response(status)
        for k, v in ((headers or {}) | {"Content-Length": str(len(body))}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pickled(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": state, "global_step": 1}, buf)
    return buf.getvalue()


def _openclip(state: dict, prefix: str, top: dict[str, str]) -> dict:
    """A transformers CLIP tower back under OpenCLIP's names (the inverse of the converter's mapping)."""
    state = {k.split("_model.", 1)[1] if k.startswith(("text_model.", "vision_model.")) else k: v
             for k, v in state.items() if not k.endswith("position_ids")}
    blocks = prefix + ("visual.transformer." if "visual.conv1.weight" in top else "transformer.")
    out = {prefix + theirs: state[ours] for theirs, ours in top.items()}
    parts = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    for i in range(layers):
        p = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"{blocks}resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
                [state[f"{p}self_attn.{x}_proj.{kind}"] for x in "qkv"])
            out |= {f"{blocks}resblocks.{i}.{theirs}.{kind}": state[f"{p}{ours}.{kind}"] for ours, theirs in parts.items()}
    return out


def upstream_dynamicrafter(pipe) -> dict:
    """A tiny DynamiCrafter pipeline's weights as the official model.ckpt names them."""
    from storyagent.models.dynamicrafter import convert as dc
    from storyagent.models.ldm import invert, rename_keys, vae_to_ldm

    cfg = pipe.config
    state = {dc.UNET_PREFIX + k: v for k, v in rename_keys(pipe.unet.state_dict(), invert(dc.unet_renames(cfg.unet)),
                                                            "unet").items()}
    state |= {dc.VAE_PREFIX + k: v for k, v in vae_to_ldm(pipe.vae.state_dict(), cfg.vae).items()}
    state |= {dc.RESAMPLER_PREFIX + k: v for k, v in rename_keys(
        pipe.resampler.state_dict(), invert(dc.resampler_renames(cfg.resampler)), "resampler").items()}
    state |= _openclip(pipe.text_encoder.model.state_dict(), dc.TEXT_PREFIX, dc._TEXT_TOP)
    state |= _openclip(pipe.image_encoder.model.state_dict(), dc.VISION_PREFIX, dc._VISION_TOP)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


class TinyUpstream:
    """Every model of the diffusion backend, tiny and random, in its upstream repository's layout; each
    built the first time a test asks for it (SDXL alone takes seconds) and served by `hub`."""

    def __init__(self, hub: FakeHub, root: Path) -> None:
        self.hub, self.root = hub, root
        self.configs: dict[str, Path] = {}
        self.dynamicrafter = self.anydoor = self.tokenizer = self.head = None

    def provide(self, *names: str) -> None:
        for name in names:
            repo = WEIGHTS[name].repo_id
            if repo not in self.hub.repos:
                self.hub.add(repo, getattr(self, "_" + name.replace("-", "_"))())

    def _dynamicrafter_512(self) -> dict[str, bytes]:
        from storyagent.models.dynamicrafter.testing import tiny_config, tiny_pipeline

        self.provide("open-clip-vit-h-14")
        self.dynamicrafter = tiny_pipeline()
        self.configs["dynamicrafter-512"] = self.root / "dc.json"
        self.configs["dynamicrafter-512"].write_text(json.dumps(tiny_config().to_dict()))
        return {"model.ckpt": pickled(upstream_dynamicrafter(self.dynamicrafter)), "README.md": b"# DynamiCrafter"}

    def _open_clip_vit_h_14(self) -> dict[str, bytes]:
        from transformers import CLIPTokenizer

        from storyagent.models.dynamicrafter.testing import write_tiny_tokenizer

        self.tokenizer = write_tiny_tokenizer(self.root / "tok")
        CLIPTokenizer.from_pretrained(self.tokenizer).save_pretrained(self.tokenizer)
        # The OpenCLIP repository also holds its 4 GB towers; fetch takes the tokenizer files only.
        return folder_files(self.tokenizer) | {"open_clip_pytorch_model.bin": b"big"}

    def _anydoor(self) -> dict[str, bytes]:
        from storyagent.models.anydoor.components import build_components
        from storyagent.models.anydoor.convert import to_official_state_dict
        from storyagent.models.anydoor.testing import tiny_config

        torch.manual_seed(0)
        self.anydoor = build_components(tiny_config())
        self.configs["anydoor"] = self.root / "anydoor.json"
        self.configs["anydoor"].write_text(json.dumps(tiny_config().to_dict()))
        return {"epoch=1-step=8687.ckpt": pickled(to_official_state_dict(self.anydoor, tiny_config()))}

    def _sdxl_base(self) -> dict[str, bytes]:
        from storyagent.models.storydiffusion.testing import tiny_sdxl

        tiny_sdxl().save_pretrained(self.root / "sdxl")
        return folder_files(self.root / "sdxl") | {"sd_xl_base_1.0.safetensors": b"big"}

    def _grounding_dino_base(self) -> dict[str, bytes]:
        from storyagent.models.langsam.testing import save_tiny_grounding_dino

        # The repository also keeps a pickled copy of the weights; fetch takes the safetensors only.
        return folder_files(save_tiny_grounding_dino(self.root / "gdino")) | {"pytorch_model.bin": b"pickle"}

    def _sam_vit_h(self) -> dict[str, bytes]:
        from storyagent.models.langsam.testing import save_tiny_sam

        return {"checkpoints/sam_vit_h_4b8939.pth": save_tiny_sam(self.root / "sam.pth").read_bytes()}

    def _laion_aesthetic_v2(self) -> dict[str, bytes]:
        from storyagent.models.aesthetic.head import AestheticHead

        torch.manual_seed(0)
        self.head = AestheticHead()
        buf = io.BytesIO()
        torch.save(self.head.state_dict(), buf)
        return {"sac+logos+ava1-l14-linearMSE.pth": buf.getvalue()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = FakeHub()
    server.tiny = TinyUpstream(server, tmp_path_factory.mktemp("upstream"))
    yield server
    server.server.shutdown()


@pytest.fixture
def caches(tmp_path, monkeypatch, hub):
    """Empty Hugging Face and StoryAgent caches, HF_ENDPOINT at the local hub, no STORYAGENT_WEIGHTS_*."""
    from huggingface_hub import constants

    from storyagent.progress import console

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    for name in WEIGHTS:
        monkeypatch.delenv(env_var(name), raising=False)
    monkeypatch.setattr(console, "width", 250)  # table cells on one line each
    hub.sent.clear()
    hub.ranges.clear()
    hub.down = False
    return tmp_path


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
    from storyagent.weights_registry import load_registry

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
    from storyagent.weights_registry import registry_path

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

    doctor = storyagent("doctor").output
    assert "storyagent weights fetch anydoor" in doctor and "storyagent weights fetch sdxl-base" in doctor
    assert "storyagent weights fetch dynamicrafter-512" not in doctor
    assert "python -m" not in doctor and "STORYAGENT_WEIGHTS" not in doctor


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


def test_fetch_for_the_backend_then_a_diffusion_run_needs_nothing_else(hub, caches, tmp_path):
    """The issue's target: one fetch command, then `run --backend diffusion` makes the film."""
    from storyagent.agents.crew import run_crew
    from storyagent.config import RunConfig

    hub.tiny.provide("sdxl-base", "grounding-dino-base", "sam-vit-h", "anydoor", "dynamicrafter-512")
    result = storyagent("weights", "fetch", "--backend", "diffusion", *config_args(hub, "anydoor", "dynamicrafter-512"),
                        "--quiet")
    assert result.exit_code == 0, result.output
    assert "sd_xl_base_1.0.safetensors" not in hub.sent, "the diffusers layout only, not the single-file copy"
    assert "pytorch_model.bin" not in hub.sent, "safetensors only where a repository holds both"
    cfg = RunConfig.build(prompt="a day at the seaside", subject=ROOT / "examples" / "pip" / "pip.png", name="Pip",
                          class_word="fox", shots=1, width=64, height=64, fps=4, backend="diffusion", steps=2,
                          storyboard_side=64, anydoor_steps=2, finetune="off")
    film = run_crew(cfg, tmp_path / "run", show_progress=False)
    assert film.film is not None and (tmp_path / "run" / "film.mp4").stat().st_size > 0
    assert len(film.clips) == 1 and film.clips[0].num_frames == 4

"""A local imitation of the Hugging Face Hub on 127.0.0.1 and the tiny upstream-layout checkpoints it
serves, for tests/weights/test_weights_fetch.py (and anyone who wants to try `storyagent weights fetch` offline:
start `FakeHub()`, `TinyUpstream(hub, folder).provide(...)`, set HF_ENDPOINT to `hub.url`)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from storyagent.weights import WEIGHTS


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


def empty_caches_at(hub: FakeHub, tmp_path: Path, monkeypatch) -> Path:
    """Empty Hugging Face and StoryAgent caches under `tmp_path`, HF_ENDPOINT at `hub` (up, with nothing
    sent yet), and no STORYAGENT_WEIGHTS_* variable: what `storyagent weights fetch` starts from."""
    from huggingface_hub import constants

    from storyagent.weights import WEIGHTS, env_var

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    for name in WEIGHTS:
        monkeypatch.delenv(env_var(name), raising=False)
    hub.sent.clear()
    hub.ranges.clear()
    hub.down = False
    return tmp_path

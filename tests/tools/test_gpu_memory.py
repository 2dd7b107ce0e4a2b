"""GPU memory discipline of the diffusion backend, on CPU: one big model on the (spied) GPU at a
time, low-VRAM decoding that gives the same pixels, and a shot that runs out of GPU memory retried
once in low-VRAM mode, or skipped with the other shots kept and `--resume` redoing it alone."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from storyagent.models import placement
from storyagent.tools.shot_failure import ShotFailedError
from tests.support.diffusion import save_tiny_diffusion_weights
from tests.support.media import write_disc_video
from tests.support.paths import ROOT

PIP = ROOT / "examples" / "pip" / "pip.png"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_diffusion_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def weights(monkeypatch, tiny_weights, tmp_path):
    from storyagent.weights import env_var

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    return tiny_weights


def run_config(subject: Path, **kw):
    from storyagent.config import RunConfig

    settings = dict(prompt="a day at the seaside", subject=subject, name="Pip", class_word="fox", shots=4, width=64,
                    height=64, fps=4, backend="diffusion", steps=2, storyboard_side=64, anydoor_steps=1,
                    lora_be_epochs=1, finetune="off")
    return RunConfig.build(**(settings | kw))


# ---- 1. one big model on the GPU at a time ----------------------------------------------------


def test_each_model_is_on_the_gpu_only_for_its_own_stage(tmp_path, monkeypatch, weights):
    """A whole run (fine-tunes, storyboard, clips) with a spied "cuda": `placement.place` records each
    move instead of moving, and every model call records which models sit on the GPU as it runs."""
    from storyagent.agents.crew import run_crew
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.anydoor.training import StoryAnyDoorTrainer
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.langsam import LangSAMPipeline
    from storyagent.models.lora_be import LoRABETrainer
    from storyagent.models.removal import SubjectRemover
    from storyagent.models.storydiffusion import StoryDiffusionPipeline

    on_gpu: dict[int, str] = {}
    moves: list[tuple[str, str]] = []

    def spy_place(model, device):
        name, where = type(model).__name__, torch.device(device).type
        moves.append((name, where))
        assert not (where == "cuda" and on_gpu), f"{name} moved to the GPU while {list(on_gpu.values())} is there"
        if where == "cuda":
            on_gpu[id(model)] = name
        else:
            on_gpu.pop(id(model), None)

    monkeypatch.setattr(placement, "compute_device", lambda: "cuda")
    monkeypatch.setattr(placement, "place", spy_place)
    calls: list[tuple[str, list[str]]] = []

    def spy(cls, method, owner):
        original = getattr(cls, method)

        def wrapped(self, *args, **kwargs):
            calls.append((owner, sorted(on_gpu.values())))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapped)

    spy(StoryDiffusionPipeline, "__call__", "StoryDiffusionPipeline")
    spy(LangSAMPipeline, "__call__", "LangSAMPipeline")
    spy(SubjectRemover, "__call__", "StoryDiffusionPipeline")  # inpaints with SDXL's parts
    spy(AnyDoorPipeline, "__call__", "AnyDoorPipeline")
    spy(StoryAnyDoorTrainer, "train", "AnyDoorPipeline")
    spy(LoRABETrainer, "train", "DynamiCrafterPipeline")
    spy(DynamiCrafterPipeline, "__call__", "DynamiCrafterPipeline")

    subject = tmp_path / "pip"
    subject.mkdir()
    (subject / "pip.png").write_bytes(PIP.read_bytes())
    write_disc_video(subject / "walk.mp4", n=12, fps=12)  # a subject the cut-out can find (a flat clip is refused)
    result = run_crew(run_config(subject, shots=1, finetune="auto"), tmp_path / "run", show_progress=False)
    assert result.film is not None

    owners = {owner for owner, _ in calls}
    assert owners == {"StoryDiffusionPipeline", "LangSAMPipeline", "AnyDoorPipeline", "DynamiCrafterPipeline"}
    for owner, resident in calls:
        # The subject's reference masks load LangSAM by themselves, with nothing else on the GPU.
        assert resident in ([owner], []) if owner == "LangSAMPipeline" else resident == [owner], (owner, resident)
    assert on_gpu == {}, "every model is back on the CPU at the end"
    trained = [name for name, where in moves if where == "cuda"]
    assert trained.count("DynamiCrafterPipeline") == 1 + 1, "LoRA-BE training, then once per clip"


# ---- 2. low-VRAM mode: the same pixels -------------------------------------------------------


def test_chunked_dynamicrafter_decode_equals_the_whole_batch():
    from storyagent.models.dynamicrafter.testing import tiny_pipeline

    pipe = tiny_pipeline()
    latents = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pipe.vae_chunk = None
    whole = pipe.decode_latents(latents)
    for chunk in (1, 3):
        pipe.vae_chunk = chunk
        torch.testing.assert_close(pipe.decode_latents(latents), whole, atol=1e-5, rtol=0)
    assert whole.shape == (2, 3, 4, 16, 16)


def test_low_vram_storyboard_decodes_one_picture_at_a_time_with_the_same_pixels():
    from storyagent.models.storydiffusion import (
        StoryDiffusionConfig,
        StoryDiffusionPipeline,
    )
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    pipe = StoryDiffusionPipeline(tiny_sdxl(), StoryDiffusionConfig(num_identity=3, num_inference_steps=2, height=32,
                                                                    width=32, style="none"))
    shots = ["on a beach", "in a forest", "on a hill"]
    batches: list[int] = []
    pipe.sdxl.vae.decoder.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))

    def draw():
        return np.stack(pipe(shots, "a fox", output_type="np").images)

    whole = draw()
    assert batches == [3]
    batches.clear()
    with placement.on_device(pipe, "cpu", low_vram=True):
        assert pipe.sdxl.vae.use_slicing and hasattr(pipe.sdxl.unet, "_hf_hook"), "offload hooks and slicing on"
        low = draw()
    assert batches == [1, 1, 1]
    assert not pipe.sdxl.vae.use_slicing and not hasattr(pipe.sdxl.unet, "_hf_hook"), "undone after the block"
    np.testing.assert_allclose(low, whole, atol=1e-5, rtol=0)


def test_low_vram_anydoor_offload_redraws_the_same_picture():
    from storyagent.models.anydoor.testing import tiny_pipeline

    pipe = tiny_pipeline()
    rng = np.random.default_rng(0)
    ref, target = rng.integers(0, 255, (48, 48, 3), np.uint8), rng.integers(0, 255, (64, 64, 3), np.uint8)
    ref_mask, target_mask = np.zeros((48, 48), bool), np.zeros((64, 64), bool)
    ref_mask[10:38, 12:36], target_mask[20:50, 16:44] = True, True

    def redraw():
        return pipe.redraw(ref, ref_mask, target, target_mask, seed=3, num_inference_steps=2, show_progress=False)

    plain = redraw()
    with placement.on_device(pipe, "cpu", low_vram=True):
        assert all(hasattr(m, "_hf_hook") for m in pipe.models)
        offloaded = redraw()
    assert not any(hasattr(m, "_hf_hook") for m in pipe.models)
    np.testing.assert_array_equal(offloaded, plain)


# ---- 3. out of GPU memory in one shot ---------------------------------------------------------


def inject_out_of_memory(monkeypatch, shot: int, times: int) -> dict[str, list]:
    """DynamiCrafter's UNet raises a CUDA out-of-memory error on its first `times` calls for `shot`;
    returns what was seen: per try the shot and whether it ran in low-VRAM mode, and per decoded clip
    how many frames the VAE decoded at once (the pipeline is set to decode all frames at once, as
    the 1024 model does, so that low-VRAM mode has something to change)."""
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
    from storyagent.tools.backends.diffusion import DiffusionBackend

    seen: dict[str, list] = {"tries": [], "shot": [0], "failed": [], "chunks": []}
    animate, frames, forward = DiffusionBackend.animate, DiffusionBackend._frames, DynamiCrafterUNet.forward
    decode = DynamiCrafterPipeline.decode_latents

    def spy_animate(self, ws, s, *args):
        seen["shot"][0] = s.index
        return animate(self, ws, s, *args)

    def spy_frames(self, image, prompt, seed, low_vram, *rest):
        seen["tries"].append((seen["shot"][0], low_vram))
        self.pipe.vae_chunk = None
        return frames(self, image, prompt, seed, low_vram, *rest)

    def spy_decode(self, latents):
        seen["chunks"].append((seen["shot"][0], self.vae_chunk))
        return decode(self, latents)

    def failing_forward(self, *args, **kwargs):
        if seen["shot"][0] == shot and len(seen["failed"]) < times:
            seen["failed"].append(shot)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionBackend, "animate", spy_animate)
    monkeypatch.setattr(DiffusionBackend, "_frames", spy_frames)
    monkeypatch.setattr(DynamiCrafterUNet, "forward", failing_forward)
    monkeypatch.setattr(DynamiCrafterPipeline, "decode_latents", spy_decode)
    return seen


def test_a_shot_out_of_memory_once_is_retried_in_low_vram_mode(tmp_path, monkeypatch, weights):
    from storyagent.agents.crew import run_crew
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline

    offloads = []
    enable = DynamiCrafterPipeline.enable_model_cpu_offload
    monkeypatch.setattr(DynamiCrafterPipeline, "enable_model_cpu_offload",
                        lambda self, device="cuda": (offloads.append(str(device)), enable(self, device))[1])
    seen = inject_out_of_memory(monkeypatch, shot=2, times=1)
    result = run_crew(run_config(PIP), tmp_path / "run", show_progress=False)

    assert result.film is not None and (tmp_path / "run" / "film.mp4").exists(), "the film is made"
    assert seen["failed"] == [2]
    assert seen["tries"] == [(1, False), (2, False), (2, True), (3, False), (4, False)]
    # Each 2.5 s shot is 10 frames at 4 fps: three of the tiny model's 4-frame windows, each decoded.
    assert seen["chunks"] == [c for c in [(1, None), (2, 1), (3, None), (4, None)] for _ in range(3)], \
        "the retry decodes frame by frame"
    assert offloads == ["cpu"], "and offloads DynamiCrafter's models (on the CPU here: no GPU to leave)"
    artifacts = json.loads((tmp_path / "run" / "manifest.json").read_text())["artifacts"]
    notes = {k: a["meta"].get("out_of_memory_retry") for k, a in artifacts.items() if k.startswith("shots/")}
    assert set(notes) == {f"shots/shot_0{i}" for i in (1, 2, 3, 4)}
    assert notes.pop("shots/shot_02") and not any(notes.values()), "only shot 2 notes its retry"


def test_a_shot_out_of_memory_twice_is_skipped_and_resume_redoes_it_alone(tmp_path, monkeypatch, weights):
    from storyagent.agents.crew import run_crew

    seen = inject_out_of_memory(monkeypatch, shot=2, times=2)
    out = tmp_path / "run"
    cfg = run_config(PIP)
    with pytest.raises(ShotFailedError) as failure:
        run_crew(cfg, out, show_progress=False)
    message = str(failure.value)
    assert message.startswith("Shot 2 ran out of GPU memory") and "--resume" in message and "--low-vram" in message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith("."), "one sentence"
    assert [s for s, _ in seen["tries"]] == [1, 2, 2, 3, 4], "shots 3 and 4 are still made"

    artifacts = json.loads((out / "manifest.json").read_text())["artifacts"]
    kept = {i for i in (1, 2, 3, 4) if f"shots/shot_0{i}" in artifacts and (out / f"shots/shot_0{i}.mp4").exists()}
    assert kept == {1, 3, 4} and not (out / "film.mp4").exists()
    before = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".mp4")}

    seen["tries"].clear()
    result = run_crew(cfg, out, resume=True, show_progress=False)
    assert [s for s, _ in seen["tries"]] == [2], "only shot 2 is animated again"
    after = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".mp4")}
    assert {k for k in before if before[k] != after[k]} == set(), "nothing made before is touched"
    assert set(after) - set(before) == {"shots/shot_02.mp4", "film.mp4"}
    assert result.film is not None and len(result.clips) == 4


def test_a_storyboard_shot_out_of_memory_twice_keeps_the_others_and_resume_redraws_it_alone(tmp_path, monkeypatch,
                                                                                            weights):
    """The same in the storyboard: AnyDoor's UNet runs out of memory on every redraw of shot 2. The
    stale shots are drawn together, once more in low-VRAM mode, then (that failing too) shot by shot:
    shots 1 and 3 are drawn and recorded, shot 2 fails its own retry, and --resume redraws shot 2 only."""
    from diffusers import UNet2DConditionModel

    from storyagent.agents.crew import run_crew
    from storyagent.models.anydoor import AnyDoorPipeline
    from storyagent.models.storyboard import StoryboardPipeline

    current, failing, redraws = [0], [True], []
    redraw, forward = StoryboardPipeline.redraw, UNet2DConditionModel.forward

    def spy_redraw(self, shot, subject, low_vram):
        current[0] = shot.position + 1
        redraws.append((current[0], low_vram))
        return redraw(self, shot, subject, low_vram)

    def failing_forward(self, *args, **kwargs):
        if failing[0] and current[0] == 2 and id(self) in anydoor_unets:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(self, *args, **kwargs)

    anydoor_unets: set[int] = set()  # AnyDoor's UNet only, not SDXL's
    init = AnyDoorPipeline.__init__

    def spy_init(self, unet, *args, **kwargs):
        anydoor_unets.add(id(unet))
        init(self, unet, *args, **kwargs)

    monkeypatch.setattr(AnyDoorPipeline, "__init__", spy_init)
    monkeypatch.setattr(StoryboardPipeline, "redraw", spy_redraw)
    monkeypatch.setattr(UNet2DConditionModel, "forward", failing_forward)
    out, cfg = tmp_path / "run", run_config(PIP, shots=3)
    with pytest.raises(ShotFailedError, match=r"^Shot 2 ran out of GPU memory.*--resume"):
        run_crew(cfg, out, show_progress=False)
    assert redraws == [(1, False), (2, False), (1, True), (2, True),  # together, then their low-VRAM retry
                       (1, False), (2, False), (2, True), (3, False)], "then shot by shot: shot 3 still drawn"
    artifacts = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert {k for k in artifacts if k.startswith("storyboard/shot_") and k.count("_") == 1} == {
        "storyboard/shot_01", "storyboard/shot_03"}
    before = {p.name: p.read_bytes() for p in (out / "storyboard").glob("shot_0[13]*.png")}

    failing[0] = False
    redraws.clear()
    result = run_crew(cfg, out, resume=True, show_progress=False)
    assert redraws == [(2, False)], "only shot 2 is drawn again"
    assert {p.name: p.read_bytes() for p in (out / "storyboard").glob("shot_0[13]*.png")} == before
    assert result.film is not None and len(result.storyboard) == 3


# ---- 4. the end-to-end benchmark's smoke run --------------------------------------------------


def test_the_end_to_end_benchmark_prints_every_stage_for_both_modes():
    import os
    import re
    import subprocess
    import sys

    # Wide enough that no row wraps; one thread each, as the machine is shared.
    env = os.environ | {"COLUMNS": "220", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "e2e_diffusion.py"), "--tiny", "--parts", "film"],
                          env=env, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if "stage" in line)
    assert "default (s)" in header and "low-vram (s)" in header and "low-vram / default time" in header
    stages = ["subject: frames + LangSAM masks", "storyboard: fine-tunes", "storyboard", "video", "assembly", "total"]
    for stage in stages:
        row = re.search(rf"│ {re.escape(stage)}\s+│\s+([\d.]+) │\s+n/a \(CPU\) │\s+([\d.]+) │\s+n/a \(CPU\) │\s+"
                        rf"([\d.]+)x │", done.stdout)
        assert row, f"no row for {stage!r} in\n{done.stdout}"
        assert float(row[1]) >= 0 and float(row[2]) >= 0

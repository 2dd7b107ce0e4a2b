"""The fine-tunes' memory and time (issue 26, item 10), on CPU with every model tiny and random.

A fine-tune that runs out of GPU memory is trained once more in the low-VRAM setting and the manifest says
so (the error is raised by a forward hook on the tiny model, the way a real CUDA allocator raises it); the
low-VRAM setting holds frozen weights in bfloat16 and the trained networks checkpoint their activations; a
missing Observer weight stops the run before anything trains; the fine-tunes train at the storyboard stage,
after the story is written and approved, and what they will cost is printed when the run opens.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from storyagent.config import RunConfig
from storyagent.models.training_memory import TrainingMemory
from storyagent.tools.run import Run
from storyagent.weights import cache_dir, env_var
from tests.support.diffusion import use_weights
from tests.support.fine_tunes import SlowFineTunes, at_once
from tests.support.paths import PIP, ROOT


@pytest.fixture()
def weights(monkeypatch, tiny_weights):
    return use_weights(monkeypatch, tiny_weights)


def config(**kw) -> RunConfig:
    """A tiny diffusion film of Pip: 64 px, 2 denoising steps, StoryAnyDoor 2 steps, LoRA-BE 1 epoch."""
    settings = {"prompt": "a day at the seaside", "subject": PIP, "name": "Pip", "class_word": "fox", "shots": 2,
                "width": 64, "height": 64, "fps": 4, "backend": "diffusion", "steps": 2, "storyboard_side": 64,
                "anydoor_steps": 2, "lora_be_epochs": 1}
    return RunConfig.build(**(settings | kw))


class OutOfMemory:
    """A global forward pre-hook that raises CUDA's out-of-memory error when a module of `kind` runs forward
    in training (the trained network's first training step), `times` times."""

    def __init__(self, kind: type, times: int = 1) -> None:
        self.kind, self.left, self.raised = kind, times, 0

    def __enter__(self):
        def hook(module, args):
            if isinstance(module, self.kind) and module.training and torch.is_grad_enabled() and self.left:
                self.left -= 1
                self.raised += 1
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the test)")

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# ---- the retry after a CUDA out-of-memory error ------------------------------------------------------


def test_a_finetune_that_runs_out_of_memory_retries_in_the_low_vram_setting_and_records_it(
        tmp_path, monkeypatch, weights, capsys):
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    cfg = config()
    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "clean-cache"))
    with Run.open(cfg, tmp_path / "clean", show_progress=False) as run:
        run.train()
    clean = manifest(tmp_path / "clean")["finetunes"]

    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    with Run.open(cfg, tmp_path / "run", show_progress=False) as run, OutOfMemory(ControlNetModel) as oom:
        run.train()
    assert oom.raised == 1
    tunes = manifest(tmp_path / "run")["finetunes"]
    anydoor = tunes["story_anydoor"]
    assert anydoor["trained_now"] and anydoor["steps"] == 2
    assert "ran out of GPU memory" in anydoor["out_of_memory_retry"] and "low-VRAM" in anydoor["out_of_memory_retry"]
    assert "out_of_memory_retry" not in tunes["lora_be"], "only the fine-tune that ran out of memory says so"
    assert "out_of_memory_retry" not in clean["story_anydoor"]
    written = json.loads((Path(anydoor["path"]).parent / "finetune.json").read_text())
    assert written["memory"].startswith("low-VRAM") and written["out_of_memory_retry"] == anydoor["out_of_memory_retry"]
    assert "StoryAnyDoor fine-tune ran out of GPU memory; training on" in capsys.readouterr().err
    # On the CPU the low-VRAM setting changes how memory is spent, not what is learnt: the same fine-tune.
    a, b = load_file(anydoor["path"]), load_file(clean["story_anydoor"]["path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # A later run finds it in the cache and still says how it was trained.
    with Run.open(cfg, tmp_path / "again", show_progress=False) as run:
        run.train()
    again = manifest(tmp_path / "again")["finetunes"]["story_anydoor"]
    assert not again["trained_now"] and again["out_of_memory_retry"] == anydoor["out_of_memory_retry"]


def test_a_second_out_of_memory_error_stops_the_finetune_in_one_sentence_and_keeps_its_work(tmp_path, weights):
    from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
    from storyagent.tools.backends.finetunes import FineTuneOutOfMemoryError

    with (Run.open(config(), tmp_path / "run", show_progress=False) as run, OutOfMemory(DynamiCrafterUNet, 2) as oom,
          pytest.raises(FineTuneOutOfMemoryError) as err):
        run.train()
    assert oom.raised == 2, "tried twice: the run's setting, then low-VRAM"
    message = str(err.value)
    assert message.startswith("The LoRA-BE fine-tune ran out of GPU memory, also with --low-vram settings")
    assert message.count(". ") == 0 and "--resume" in message
    assert "finetunes" not in manifest(tmp_path / "run"), "nothing recorded as made"
    # StoryAnyDoor, trained before it, is in the cache: the next run goes on with LoRA-BE alone.
    done = list(cache_dir("subjects").glob("story_anydoor-*/finetune.json"))
    assert len(done) == 1 and not list(cache_dir("subjects").glob("lora_be-*/finetune.json"))


# ---- the low-VRAM setting and gradient checkpointing ------------------------------------------------------


def anydoor_data():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    masks = []
    for i in range(3):
        mask = np.zeros((64, 64), bool)
        mask[16 + i : 48, 20:44 + i] = True
        masks.append(mask)
    return frames, masks


def calls(module: torch.nn.Module) -> list[int]:
    count = [0]
    module.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_story_anydoor_low_vram_holds_frozen_weights_in_bf16_and_checkpoints_activations(tmp_path, preset):
    from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
    from storyagent.models.anydoor.testing import tiny_pipeline
    from storyagent.models.anydoor.training import StoryAnyDoorTrainer

    frames, masks = anydoor_data()
    config = StoryAnyDoorTrainingConfig.preset(preset, steps=1)
    losses, forwards = {}, {}
    for name, memory in {"default": TrainingMemory(), "no checkpointing": TrainingMemory(gradient_checkpointing=False),
                         "low-vram": TrainingMemory(low_vram=True, autocast_cpu=True)}.items():
        pipe = tiny_pipeline()
        resnet = calls(pipe.unet.up_blocks[0].resnets[0])
        trainer = StoryAnyDoorTrainer(pipe, frames, masks, tmp_path / name, config, memory=memory)
        before = {k: v.detach().clone() for k, v in trainer.params.items()}
        losses[name] = trainer.train_step()
        forwards[name] = resnet[0]
        assert all(p.dtype == torch.float32 for p in trainer.params.values()), "what trains stays float32"
        assert any(not torch.equal(before[k], v) for k, v in trainer.params.items()), "it trained"
        frozen = {p.dtype for n, p in pipe.image_encoder.dinov2.named_parameters()} | {
            p.dtype for p in pipe.vae.parameters()}
        assert frozen == ({torch.bfloat16} if name == "low-vram" else {torch.float32}), name
        trainer.train(show_progress=False)
        assert not pipe.unet.is_gradient_checkpointing and not pipe.controlnet.is_gradient_checkpointing, "off after training"
    # Checkpointing runs a block's forward again in the backward pass (its activations were not kept).
    assert forwards == {"default": 2, "no checkpointing": 1, "low-vram": 2}
    assert losses["default"] == losses["no checkpointing"], "the same step"
    assert losses["low-vram"] == pytest.approx(losses["default"], rel=0.05), "bf16 rounding only"


def test_lora_be_low_vram_holds_the_frozen_model_in_bf16_under_float32_lora(tmp_path):
    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.lora_be import Clip, LoRABEConfig, LoRABETrainer

    config = LoRABEConfig(token="<pip>", class_word="fox", epochs=1, gradient_checkpointing=False, augment=False)
    results = {}
    for name, memory in {"default": TrainingMemory(), "low-vram": TrainingMemory(low_vram=True, autocast_cpu=True)}.items():
        pipe = tiny_pipeline()
        trainer = LoRABETrainer(pipe, config, tmp_path / name, memory=memory)
        rng = np.random.default_rng(0)
        video = rng.integers(0, 255, (trainer.frames, trainer.height, trainer.width, 3), dtype=np.uint8)
        mask = np.zeros(video.shape[:3], bool)
        mask[:, 8:24, 8:24] = True
        lora_before = [p.detach().clone() for p in trainer.lora_params]
        results[name] = trainer.train_step(Clip(video, mask))
        frozen = {p.dtype for n, p in pipe.unet.named_parameters() if "lora_" not in n}
        assert all(p.dtype == torch.float32 for p in trainer.lora_params)
        assert trainer.embeddings.embeddings.dtype == torch.float32
        assert any(not torch.equal(a, p) for a, p in zip(lora_before, trainer.lora_params)), "LoRA trained"
        if name == "low-vram":
            assert frozen == {torch.bfloat16} and pipe.vae_chunk == 1
            assert {p.dtype for p in pipe.text_encoder.parameters()} == {torch.bfloat16}
            assert pipe.unet.gradient_checkpointing, "low-VRAM checkpoints whatever the settings say"
        else:
            assert frozen == {torch.float32} and not pipe.unet.gradient_checkpointing
    assert np.isfinite(results["low-vram"].loss)
    assert results["low-vram"].diffusion == pytest.approx(results["default"].diffusion, rel=0.1)


def test_adam_is_the_papers_on_the_cpu_and_adamw_takes_the_weight_decay():
    from storyagent.models.training_memory import adam

    p = torch.nn.Parameter(torch.zeros(3))
    assert type(adam([p], 1e-4)) is torch.optim.Adam
    opt = adam([p], 1e-5, weight_decay=0.01)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.01
    assert not opt.defaults.get("fused"), "the CPU keeps torch's default implementation (same results as before)"


@pytest.mark.gpu
def test_adam_is_fused_on_cuda():
    from storyagent.models.training_memory import adam

    p = torch.nn.Parameter(torch.zeros(3, device="cuda"))
    opt = adam([p], 1e-5, weight_decay=0.01)
    assert opt.defaults["fused"]
    p.grad = torch.ones_like(p)
    opt.step()
    assert (p < 0).all()


# ---- every weight checked before anything trains ---------------------------------------------------------


def test_a_missing_observer_weight_stops_the_run_before_anything_trains(tmp_path, monkeypatch, weights):
    from huggingface_hub import constants

    from storyagent.agents.crew import run_crew
    from storyagent.errors import WeightsNotFoundError
    from storyagent.tools.run import backend_class, check_review_weights

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    for name in ("clip-vit-l-14", "laion-aesthetic-v2"):
        monkeypatch.delenv(env_var(name), raising=False)
    cfg = config(review="aesthetic")
    with pytest.raises(WeightsNotFoundError) as err:
        run_crew(cfg, tmp_path / "run", show_progress=False)
    message = str(err.value)
    assert message.startswith("--review aesthetic needs weights that are not on this machine "
                              "(clip-vit-l-14, laion-aesthetic-v2)")
    assert "storyagent weights fetch clip-vit-l-14 laion-aesthetic-v2" in message
    assert not (tmp_path / "run").exists() and not cache_dir("subjects").exists(), "nothing made, nothing trained"

    # With CLIP at hand, only the head is named; with both, the run may start; the animatic (seconds to its
    # first review, nothing to train) is not held up by them.
    monkeypatch.setenv(env_var("clip-vit-l-14"), str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"^--review aesthetic needs weights .* \(laion-aesthetic-v2\)"):
        check_review_weights(backend_class("diffusion")(cfg))
    monkeypatch.setenv(env_var("laion-aesthetic-v2"), str(tmp_path))
    check_review_weights(backend_class("diffusion")(cfg))
    monkeypatch.delenv(env_var("laion-aesthetic-v2"))
    check_review_weights(backend_class("animatic")(cfg.model_copy(update={"backend": "animatic"})))


# ---- when they train, and what that costs ----------------------------------------------------------------


def test_the_story_is_written_and_approved_before_any_training_starts(tmp_path, weights, capsys):
    """A human reviewer approves the story; the fine-tunes' first training step (a forward hook on the tiny
    models, read at that moment) finds story.json written and its approval in the manifest, and the
    expected training time was printed when the run opened."""
    from diffusers import ControlNetModel

    from storyagent.agents.crew import run_crew
    from storyagent.models.dynamicrafter.unet import DynamiCrafterUNet
    from storyagent.tools.backends.finetunes import (
        step_kind,
        step_seconds,
        story_anydoor_config,
    )
    from tests.agents.test_human_review import ScriptedIO

    out = tmp_path / "run"
    seen: dict[str, dict] = {}

    def hook(module, args):
        kind = {ControlNetModel: "story_anydoor", DynamiCrafterUNet: "lora_be"}.get(type(module))
        if kind and module.training and torch.is_grad_enabled() and kind not in seen:
            data = manifest(out)
            seen[kind] = {"story": (out / "story.json").exists(), "approved": "story" in data.get("approved", {}),
                          "stages": data["stages"], "at": time.time()}

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    io = ScriptedIO(["ok", "ok", "ok"])
    try:
        result = run_crew(config(review="human"), out, show_progress=False, io=io)
    finally:
        handle.remove()
    assert result.film is not None and set(seen) == {"story_anydoor", "lora_be"}
    for kind, state in seen.items():
        assert state["story"] and state["approved"], f"{kind} trained before the story was approved"
        assert state["stages"]["story"] == "done"
        assert state["stages"]["storyboard"].startswith("running: fine-tuning"), state["stages"]
    story_written = (out / "story.json").stat().st_mtime
    assert all(s["at"] >= story_written - 1 for s in seen.values())
    err = capsys.readouterr().err
    assert ("Fine-tuning at the storyboard stage, once the story is approved, time unknown: StoryAnyDoor: 2 steps "
            "(no step time known for the CPU yet); LoRA-BE: 1 step (no step time known for the CPU yet).") in " ".join(
        err.split())
    tunes = manifest(out)["finetunes"]
    assert all(t["trained_now"] and t["seconds_per_step"] > 0 for t in tunes.values())

    # The next estimate on this machine uses the step time this training measured.
    cfg = config()
    seconds, source = step_seconds("story_anydoor", step_kind("story_anydoor", story_anydoor_config(cfg)), "cpu")
    assert seconds == tunes["story_anydoor"]["seconds_per_step"] and source == "measured by an earlier training on this cpu"


def test_the_estimate_counts_what_is_left_and_names_where_its_step_time_comes_from():
    from storyagent.tools.backends.finetunes import Planned, count_clips, estimate
    from tests.support.paths import PIP_VIDEO

    assert estimate([]) is None
    line = estimate([Planned(entry="story_anydoor", model="story_anydoor", steps=20_000, seconds_per_step=0.5,
                             source="assumed"),
                     Planned(entry="lora_be", model="lora_be", steps=12_800, seconds_per_step=1.5, source="measured")])
    assert line == ("Fine-tuning at the storyboard stage, once the story is approved, about 8.1 h: StoryAnyDoor: "
                    "20,000 steps x 0.5 s = 2.8 h (assumed); LoRA-BE: 12,800 steps x 1.5 s = 5.3 h (measured).")
    # A photo is one LoRA-BE clip, a video as many windows as load_subject_clips cuts from it.
    from storyagent.models.lora_be import load_subject_clips

    assert count_clips([PIP]) == 1
    assert count_clips([PIP, PIP_VIDEO]) == len(load_subject_clips([PIP, PIP_VIDEO]))


def test_a_batch_trains_each_subject_once_at_the_storyboard_stage(tmp_path, monkeypatch):
    """Two films of one subject reach their storyboard at once (two threads, as a batch's driver runs them):
    the backend's training runs for both, one at a time, and only the first trains (the stand-in's cache)."""
    from storyagent.tools.backends.animatic import AnimaticBackend
    from storyagent.tools.batch import BatchExecutor

    stand_in = SlowFineTunes()
    monkeypatch.setattr(AnimaticBackend, "train_subject", stand_in)
    executor = BatchExecutor()
    cfg = RunConfig.build(prompt="a day", subject=PIP, name="Pip", class_word="fox", shots=1, width=64, height=64)

    def film(name: str) -> None:
        with Run.open(cfg, tmp_path / name, show_progress=False, executor=executor) as run:
            run.train()
            run.train()  # once per session

    at_once(film, ("one", "two"))
    assert sorted(stand_in.calls) == ["one", "two"] and len(stand_in.trained) == 1


class FakeRay:
    """Just enough of Ray for `RayExecutor` in one process: a task runs when it is submitted."""

    class exceptions:  # Ray's own name
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            pass

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def remote(self, **options):
        ray = self

        class Task:
            def __init__(self, fn) -> None:
                self.fn = fn

            def options(self, **kw):
                return self

            def remote(self, *args):
                ray.tasks.append(args[2].__name__)
                return self.fn(*args)

        return Task

    def wait(self, pending, num_returns=1):
        return pending[:1], pending[1:]

    def get(self, ref):
        return ref

    def cancel(self, ref) -> None:
        pass


def test_a_batch_on_ray_trains_each_subject_once_in_one_task_at_the_storyboard_stage(tmp_path, monkeypatch):
    """`RayExecutor.train`: the first film of a subject to reach its storyboard hands its training to one task
    (a worker's `attach_subject`); every film's driver then records what the cache holds (`train_subject`)."""
    from storyagent.tools.backends.animatic import AnimaticBackend
    from storyagent.tools.ray_tasks import RayExecutor
    from tests.support.creature import write_creature_png

    on_workers: list[str] = []
    recorded: list[str] = []
    monkeypatch.setattr(AnimaticBackend, "subject_work", True)
    monkeypatch.setattr(AnimaticBackend, "attach_subject", lambda self, run: on_workers.append(run.subject.input_hash))
    monkeypatch.setattr(AnimaticBackend, "train_subject", lambda self, run: recorded.append(run.ws.root.name))
    ray = FakeRay()
    executor = RayExecutor(ray)
    small = {"prompt": "a day", "shots": 1, "width": 64, "height": 64}
    pip = RunConfig.build(subject=PIP, name="Pip", class_word="fox", **small)
    bo = RunConfig.build(subject=write_creature_png(tmp_path / "bo.png", 96), name="Bo", class_word="creature", **small)
    for name, cfg in (("pip-1", pip), ("pip-2", pip), ("bo", bo)):
        with Run.open(cfg, tmp_path / name, show_progress=False, executor=executor) as run:
            assert not recorded or recorded[-1] != name, "nothing trains when the run opens"
            run.train()
    assert ray.tasks == ["subject_ready", "subject_ready"], "one task per subject"
    assert len(set(on_workers)) == 2 and recorded == ["pip-1", "pip-2", "bo"]


def test_the_end_to_end_benchmark_times_both_fine_tunes_at_both_presets_in_both_memory_settings():
    import os
    import re
    import subprocess
    import sys

    env = os.environ | {"COLUMNS": "220", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "e2e_diffusion.py"), "--tiny", "--parts", "finetunes",
                           "--finetune-steps", "1"], env=env, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(m[1], m[2], m[3]): (int(m[4].replace(",", "")), float(m[5]), int(m[6].replace(",", "")))
            for m in re.finditer(r"│ (StoryAnyDoor|LoRA-BE)\s+│ (paper|quick)\s+│ (default|low-vram)\s+│\s+([\d,]+) │"
                                 r"\s+([\d.]+) │\s+n/a \(CPU\) │\s+([\d,]+) │\s+[\d.]+ (?:h|min) │", done.stdout)}
    assert len(rows) == 8, done.stdout
    assert all(seconds > 0 for _, seconds, _ in rows.values())
    # The paper's StoryAnyDoor trains the whole ControlNet and decoder for 20 000 steps, the quick one LoRA for 1 000.
    assert rows["StoryAnyDoor", "paper", "default"][0] > 10 * rows["StoryAnyDoor", "quick", "default"][0]
    assert rows["StoryAnyDoor", "paper", "default"][2] == 20_000 and rows["StoryAnyDoor", "quick", "low-vram"][2] == 1_000
    assert rows["LoRA-BE", "paper", "default"][2] == 400 * 5 and rows["LoRA-BE", "quick", "default"][2] == 40 * 5

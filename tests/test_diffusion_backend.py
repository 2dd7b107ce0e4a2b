"""The diffusion backend end to end on CPU: every model tiny and random, loaded from local folders
through the same weights lookup (`STORYAGENT_WEIGHTS_*`) a real install uses."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.media import read_frames
from storyagent.weights import env_var

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from storyagent.models.anydoor.testing import tiny_pipeline as anydoor_tiny
    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.langsam.testing import save_tiny_grounding_dino, save_tiny_sam
    from storyagent.models.storydiffusion.testing import tiny_sdxl

    root = tmp_path_factory.mktemp("weights")
    tiny_sdxl().save_pretrained(root / "sdxl")
    save_tiny_grounding_dino(root / "gdino")
    sam = save_tiny_sam(root / "sam_vit_b.pth")
    anydoor_tiny().save_pretrained(root / "anydoor")
    tiny_pipeline().save_pretrained(root / "dc")
    return {"sdxl-base": root / "sdxl", "grounding-dino-base": root / "gdino", "sam-vit-h": sam,
            "anydoor": root / "anydoor", "dynamicrafter-512": root / "dc"}


def test_diffusion_backend_makes_a_film_from_tiny_models(tmp_path, monkeypatch, tiny_weights):
    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    cfg = RunConfig.build(prompt="a day at the seaside", subject=ROOT / "examples" / "pip" / "pip.png", name="Pip",
                          class_word="fox", shots=2, width=64, height=64, fps=4, backend="diffusion", steps=2,
                          storyboard_side=64)
    result = run_crew(cfg, tmp_path / "run", show_progress=False)
    out = tmp_path / "run"
    for i in (1, 2):
        assert (out / f"storyboard/shot_0{i}_initial.png").exists()
        board = result.storyboard[i - 1]
        assert Image.open(out / board.path).size == (64, 64)
        clip = read_frames(out / f"shots/shot_0{i}.mp4", 100)
        assert len(clip) == 4 and clip[0].shape[2] == 3
        assert np.std(np.stack(clip)) > 1, "random tiny models still draw something"
    assert result.film is not None and (out / "film.mp4").exists()

    # Resume reuses every diffusion artifact.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    run_crew(cfg, out, resume=True, show_progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_a_failing_model_stops_the_run_with_its_own_message(tmp_path, monkeypatch, tiny_weights):
    import shutil

    from storyagent.errors import WeightsNotFoundError

    broken = shutil.copytree(tiny_weights["dynamicrafter-512"], tmp_path / "dc_without_tokenizer")
    shutil.rmtree(broken / "tokenizer")
    for name, path in {**tiny_weights, "dynamicrafter-512": broken}.items():
        monkeypatch.setenv(env_var(name), str(path))
    cfg = RunConfig.build(prompt="a day", subject=ROOT / "examples" / "pip" / "pip.png", name="Pip", shots=1,
                          width=64, height=64, fps=4, backend="diffusion", steps=2, storyboard_side=64)
    with pytest.raises(WeightsNotFoundError, match="no tokenizer"):
        run_crew(cfg, tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "storyboard" / "shot_01.png").exists(), "the finished storyboard is kept"


def test_a_subjects_lora_be_adapter_is_used_by_the_video_tool(tmp_path, monkeypatch, tiny_weights):
    import shutil

    import torch

    from storyagent.models.dynamicrafter.testing import tiny_pipeline
    from storyagent.models.lora_be import BlockwiseEmbeddings, LoRABEAdapter, LoRABEConfig, add_lora

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    subject = tmp_path / "pip"
    subject.mkdir()
    shutil.copy(ROOT / "examples" / "pip" / "pip.png", subject / "pip.png")
    pipe = tiny_pipeline()
    config = LoRABEConfig(token="<pip>", class_word="fox")
    add_lora(pipe.unet, config)
    emb = BlockwiseEmbeddings(len(pipe.unet.cross_attentions), 32)
    torch.nn.init.normal_(emb.embeddings)
    LoRABEAdapter.from_model(pipe.unet, emb, config).save_pretrained(subject / "pip.lora_be.safetensors")

    cfg = RunConfig.build(prompt="a day at the seaside", subject=subject, name="Pip", class_word="fox", shots=1,
                          width=64, height=64, fps=4, backend="diffusion", steps=2, storyboard_side=64)
    result = run_crew(cfg, tmp_path / "run", show_progress=False)
    clip = result.clips[0]
    assert clip.meta["adapter"] == str(subject / "pip.lora_be.safetensors")
    assert "<pip>" in clip.meta["prompt"] and "Pip" not in clip.meta["prompt"]


def test_dataset_protocol_with_the_diffusion_generator(monkeypatch, tiny_weights):
    from storyagent.eval.datasets import DiffusionGenerator, SubjectReference

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    gen = DiffusionGenerator(steps=2)
    frames = gen(first, mask, SubjectReference([first], [mask]), "a fox on a beach", 6)
    assert len(frames) == 6 and all(f.shape == first.shape and f.dtype == np.uint8 for f in frames)
    # The frames come from the animation of the redrawn storyboard, not a copy of the ground truth.
    assert not np.array_equal(frames[0], first)

"""`--video-model wan2.2-ti2v-5b` on the diffusion backend, end to end on CPU (issue 27, Done when): every
model tiny and random, loaded through the weights lookup a real install uses (`STORYAGENT_WEIGHTS_*`);
the Wan model is diffusers' own, saved as diffusers saves it, at a tiny preset of its settings."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.media import read_frames
from storyagent.weights import env_var

from tests.support.paths import ROOT

PIP = ROOT / "examples" / "pip" / "pip.png"
WAN = "wan2.2-ti2v-5b"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from storyagent.models.wan.testing import save_tiny_wan
    from tests.support.diffusion import save_tiny_anydoor, save_tiny_langsam, save_tiny_sdxl

    root = tmp_path_factory.mktemp("weights")
    dino, sam = save_tiny_langsam(root)
    return {"sdxl-base": save_tiny_sdxl(root / "sdxl"), "grounding-dino-base": dino, "sam-vit-h": sam,
            "anydoor": save_tiny_anydoor(root / "anydoor"), WAN: save_tiny_wan(root / "wan", WAN)}


@pytest.fixture
def tiny_wan(monkeypatch, tiny_weights):
    """The tiny weights in use, and Wan's settings at their scale (32 x 32 windows at 8 fps, 2 steps)."""
    from storyagent.models.wan import config
    from storyagent.models.wan.testing import tiny_config

    for name, path in tiny_weights.items():
        monkeypatch.setenv(env_var(name), str(path))
    monkeypatch.setitem(config.WAN_VIDEO_MODELS, WAN, tiny_config(WAN))
    return tiny_weights


@pytest.fixture(scope="module")
def subject_folder(tmp_path_factory):
    """Pip as a photo and as a short clip of a disc walking right (24 frames at 12 fps)."""
    import shutil

    from storyagent.media import write_video

    folder = tmp_path_factory.mktemp("pip")
    shutil.copy(PIP, folder / "pip.png")
    yy, xx = np.mgrid[:64, :64]
    frames = []
    for i in range(24):
        frame = np.full((64, 64, 3), 230, np.uint8)
        frame[(yy - 34) ** 2 + (xx - 14 - i) ** 2 < 120] = (170, 90, 40)
        frames.append(frame)
    write_video(folder / "walk.mp4", frames, 12)
    return folder


def wan_config(subject: Path, **kw) -> RunConfig:
    settings = dict(prompt="a day at the seaside", subject=subject, name="Pip", class_word="fox", shots=2, width=64,
                    height=64, fps=4, backend="diffusion", steps=2, storyboard_side=64, anydoor_steps=1,
                    lora_be_epochs=1, video_model=WAN)
    return RunConfig.build(**(settings | kw))


def test_a_wan_film_learns_the_subject_once_and_animates_with_it(tmp_path, tiny_wan, subject_folder, monkeypatch):
    """subject -> LoRA-BE on Wan trained and cached -> storyboard -> clips -> film; a second film of the same
    subject reuses the adapter; the clips' frames are the adapter's (the stock model's differ)."""
    from PIL import Image

    from storyagent.models.lora_be import LoRABEAdapter
    from storyagent.models.wan import WanVideoPipeline
    from storyagent.tools.backends.diffusion import DiffusionBackend

    made: list[np.ndarray] = []  # each clip's frames as the backend made them, before the video file
    wan_frames = DiffusionBackend._wan_frames
    monkeypatch.setattr(DiffusionBackend, "_wan_frames",
                        lambda self, *a: (out := wan_frames(self, *a), made.append(out.frames))[0])
    cfg = wan_config(subject_folder)
    first = run_crew(cfg, tmp_path / "first", show_progress=False)
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    tune = manifest["finetunes"]["lora_be"]
    assert tune["trained_now"] and tune["steps"] > 0
    adapter = LoRABEAdapter.from_pretrained(tune["path"])
    assert adapter.config.extra == {"video_model": WAN} and adapter.embeddings.shape[0] == 3, "one per block"
    assert manifest["inputs"]["video_model"] == WAN
    assert first.film is not None and (tmp_path / "first" / "film.mp4").exists()
    for clip, frames in zip(first.clips, made, strict=True):
        assert clip.meta["adapter"] == tune["path"] and "<pip>" in clip.meta["prompt"]
        assert len(read_frames(tmp_path / "first" / clip.path, 100)) == clip.num_frames == len(frames) == 10, \
            "the shot's 2.5 s at the film's 4 fps"
        assert frames.shape[1:] == (32, 32, 3), "the film's aspect at the (tiny) model's area"

    # The clip is the adapter's: its first window made again from the storyboard picture with the trained
    # adapter is the clip's, the stock Wan's is not. The shot's 2.5 s are 20 frames at the model's 8 fps: two
    # windows of 13 (4k+1); the first one's frames 0, 2, ..., 12 are the clip's first 7 at 4 fps.
    clip, board = first.clips[0], first.storyboard[0]
    assert clip.meta["windows"]["frames"] == [13, 13] and clip.meta["windows"]["seeds"][0] == clip.meta["seed"]
    image = np.asarray(Image.open(tmp_path / "first" / board.path).convert("RGB"))

    def again(pipe: WanVideoPipeline) -> np.ndarray:
        return pipe(image, clip.meta["prompt"], 13, clip.meta["seed"], width=32, height=32, num_inference_steps=2)[::2]

    trained = WanVideoPipeline.from_pretrained(WAN, torch_dtype=torch.float32)
    trained.load_adapter(tune["path"])
    np.testing.assert_array_equal(again(trained), made[0][:7])
    stock = again(WanVideoPipeline.from_pretrained(WAN, torch_dtype=torch.float32))
    assert np.abs(stock.astype(float) - made[0][:7]).mean() > 1, "the stock model draws another clip"

    second = run_crew(cfg, tmp_path / "second", show_progress=False)
    again_tune = json.loads((tmp_path / "second" / "manifest.json").read_text())["finetunes"]["lora_be"]
    assert (again_tune["path"], again_tune["trained_now"]) == (tune["path"], False), "the cached adapter"
    assert all(c.meta["adapter"] == tune["path"] for c in second.clips)


def test_a_wan_shot_out_of_gpu_memory_is_made_again_in_low_vram_mode(tmp_path, tiny_wan, monkeypatch):
    """The retry covers Wan shots: the first try's out-of-memory error sends the shot to group offload and a
    tiled VAE (here on the CPU), and the clip says so."""
    from storyagent.models.wan import WanVideoPipeline

    call = WanVideoPipeline.__call__
    tries = []

    def short_of_memory(self, *args, **kw):
        tries.append(self.group_offloaded)
        if not self.group_offloaded:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return call(self, *args, **kw)

    monkeypatch.setattr(WanVideoPipeline, "__call__", short_of_memory)
    result = run_crew(wan_config(PIP, shots=1, finetune="off"), tmp_path / "run", show_progress=False)
    clip = result.clips[0]
    assert tries == [False] + [True] * len(clip.meta["windows"]["frames"]), "every window of the retry offloaded"
    assert "low-vram" in clip.meta["out_of_memory_retry"] and clip.meta["adapter"] is None
    assert len(read_frames(tmp_path / "run" / clip.path, 100)) == clip.num_frames


def test_the_video_model_decides_the_weights_and_the_clip_key(tmp_path, monkeypatch):
    """A Wan run needs Wan's weights and not DynamiCrafter's; a DynamiCrafter run's inputs and clip key are
    what they were before Wan."""
    from storyagent.errors import WeightsNotFoundError
    from storyagent.tools.backends.diffusion import DiffusionBackend

    monkeypatch.setenv("STORYAGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    wan = DiffusionBackend(wan_config(PIP, finetune="off"))
    assert wan.video_weights[-1] == WAN and "dynamicrafter-512" not in wan.video_weights
    with pytest.raises(WeightsNotFoundError, match=f"storyagent weights fetch .*{WAN}"):
        wan.check()
    dc = DiffusionBackend(wan_config(PIP, finetune="off", video_model="dynamicrafter-512"))
    assert dc.video_weights == DiffusionBackend.weights
    assert "video_model" not in dc.clip_inputs() and wan.clip_inputs()["video_model"] == WAN
    assert "video_model" not in dc.cfg.inputs_record()
    with pytest.raises(Exception, match="video_model"):
        wan_config(PIP, video_model="sora")

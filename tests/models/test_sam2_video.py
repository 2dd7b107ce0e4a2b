"""SAM 2 mask propagation (storyagent.models.sam2): transformers' video predictor run on a tiny random
model saved to disk, the weights lookup through an empty cache and a fetched one, and (with the real
weights in the cache) tracking a moving figure."""

import subprocess
import sys

import numpy as np
import pytest

from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.models.sam2 import (
    SAM2_REPO_ID,
    SAM2_WEIGHTS,
    Sam2VideoMasks,
    sam2_available,
)
from storyagent.weights import env_var
from tests.support.paths import ROOT, cached_weights


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """No SAM 2 weights unless a test puts them there: an empty Hugging Face cache, no local-path variable."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv(env_var(SAM2_WEIGHTS), raising=False)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from storyagent.models.sam2.testing import save_tiny_sam2_video

    return save_tiny_sam2_video(tmp_path_factory.mktemp("tiny_sam2"))


def square_clip(n: int = 5, height: int = 48, width: int = 80, side: int = 20, step: int = 6):
    """A bright square moving right over a dark frame: the frames and the square's true mask in each."""
    frames, truth = [], []
    for i in range(n):
        mask = np.zeros((height, width), bool)
        mask[10:10 + side, 10 + step * i:10 + side + step * i] = True
        frame = np.full((height, width, 3), 40, np.uint8)
        frame[mask] = 220
        frames.append(frame)
        truth.append(mask)
    return frames, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_one_bool_mask_per_frame_at_the_frames_size_frame_0_the_prompt(tiny_folder):
    frames, truth = square_clip()
    masks = Sam2VideoMasks(device="cpu", model_id=tiny_folder)(frames, truth[0])
    assert len(masks) == len(frames)
    assert all(m.shape == (48, 80) and m.dtype == bool for m in masks)
    # The conditioning frame returns the prompt itself (resized to the model's side and back), even with random weights.
    assert iou(masks[0], truth[0]) >= 0.9


def test_the_prompt_is_carried_through_the_memory(tiny_folder):
    frames, truth = square_clip()
    propagate = Sam2VideoMasks(device="cpu", model_id=tiny_folder)
    elsewhere = np.zeros_like(truth[0])
    elsewhere[30:46, 50:76] = True
    first, second = propagate(frames, truth[0]), propagate(frames, elsewhere)
    assert iou(second[0], elsewhere) >= 0.9 and iou(second[0], truth[0]) == 0.0
    # Later frames see no prompt of their own: only the memory of frame 0 tells the two runs apart.
    assert any((a != b).any() for a, b in zip(first[1:], second[1:]))


def test_deterministic_loaded_once_and_released(tiny_folder, monkeypatch):
    from transformers import Sam2VideoModel

    loads = []
    original = Sam2VideoModel.from_pretrained

    def counting(*args, **kwargs):
        loads.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(Sam2VideoModel, "from_pretrained", counting)
    frames, truth = square_clip()
    propagate = Sam2VideoMasks(device="cpu", model_id=tiny_folder)
    assert propagate.model is None, "nothing is loaded before the first call"
    first, again = propagate(frames, truth[0]), propagate(frames, truth[0])
    assert len(loads) == 1 and loads[0]["local_files_only"] is True
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), "a fresh session per call: no state carried over"
    propagate.release()
    assert propagate.model is None and propagate.processor is None
    assert all(np.array_equal(a, b) for a, b in zip(first, propagate(frames, truth[0])))
    assert len(loads) == 2, "after release the next call loads again"


def test_from_pretrained_loads_at_once_and_save_pretrained_round_trips(tiny_folder, tmp_path):
    import torch

    loaded = Sam2VideoMasks.from_pretrained(tiny_folder, device="cpu")
    assert loaded.model is not None and not loaded.model.training
    copy = Sam2VideoMasks.from_pretrained(loaded.save_pretrained(tmp_path / "copy"), device="cpu")
    ours, theirs = loaded.model.state_dict(), copy.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("frames, mask, says", [
    ([], np.ones((4, 4), bool), "no frames"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], np.ones((8, 8), bool), "share one size"),
    ([np.zeros((8, 8, 3), np.float32)], np.ones((8, 8), bool), "uint8"),
    ([np.zeros((8, 8, 3), np.uint8)], np.ones((8, 9), bool), "mask is (8, 9)"),
    ([np.zeros((8, 8, 3), np.uint8)], np.zeros((8, 8), bool), "mask is empty"),
])
def test_bad_input_is_one_sentence_before_any_weights_are_read(frames, mask, says):
    with pytest.raises(InputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Sam2VideoMasks(device="cpu", model_id="no/such-model")(frames, mask)


def test_without_weights_nothing_is_available_and_the_error_names_the_fetch_command(tmp_path):
    assert not sam2_available()
    frames, truth = square_clip(2)
    with pytest.raises(WeightsNotFoundError, match=f"storyagent weights fetch {SAM2_WEIGHTS}"):
        Sam2VideoMasks(device="cpu")(frames, truth[0])
    with pytest.raises(WeightsNotFoundError, match="neither a local folder nor in the Hugging Face cache"):
        Sam2VideoMasks(device="cpu", model_id=tmp_path / "nothing")(frames, truth[0])
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="holds no SAM 2 video model"):
        Sam2VideoMasks(device="cpu", model_id=tmp_path / "partial")(frames, truth[0])


def test_fetched_into_the_cache_it_is_available_and_loads_offline(tiny_folder, monkeypatch):
    from huggingface_hub import constants

    from storyagent.weights.fetch import fetch_weights
    from tests.support.fake_hub import FakeHub, folder_files

    hub = FakeHub()
    # The real repository also keeps the original PyTorch checkpoint, which the loader never reads.
    hub.add(SAM2_REPO_ID, folder_files(tiny_folder) | {"sam2.1_hiera_tiny.pt": b"original checkpoint"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert not sam2_available()
    fetch_weights(SAM2_WEIGHTS, show_progress=False)
    assert "sam2.1_hiera_tiny.pt" not in hub.sent and hub.sent["model.safetensors"] > 0
    assert sam2_available()

    hub.down = True  # from here on every request would fail: the model must come from the cache
    frames, truth = square_clip(3)
    masks = Sam2VideoMasks(device="cpu")(frames, truth[0])
    assert len(masks) == 3 and iou(masks[0], truth[0]) >= 0.9
    hub.server.shutdown()


def test_the_package_imports_no_torch():
    """The animatic path asks `sam2_available()`; that must not pull torch in."""
    code = ("import sys; from storyagent.models.sam2 import Sam2VideoMasks, sam2_available; sam2_available(); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def figure_clip(n: int = 16, height: int = 180, width: int = 240):
    """A figure (a round head on a striped body) walking right and bobbing over a busy block background."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(30, 200, (height // 12 + 1, width // 12 + 1, 3), dtype=np.uint8)
    background = np.kron(blocks, np.ones((12, 12, 1), np.uint8))[:height, :width]
    yy, xx = np.mgrid[:height, :width]
    frames, truth = [], []
    for i in range(n):
        cx, cy = 60 + 7 * i, 90 + int(6 * np.sin(i / 2))
        head = (xx - cx) ** 2 + (yy - (cy - 35)) ** 2 <= 16 ** 2
        body = (abs(xx - cx) <= 18) & (yy >= cy - 20) & (yy <= cy + 40)
        mask = head | body
        frame = background.copy()
        frame[head] = (235, 190, 150)
        frame[body] = np.where(((yy[body] // 6) % 2)[:, None] == 0, (200, 30, 40), (250, 230, 60))
        frames.append(frame)
        truth.append(mask)
    return frames, truth


@pytest.mark.weights
def test_real_sam2_tracks_a_moving_figure():
    cached_weights(SAM2_WEIGHTS)
    frames, truth = figure_clip()
    masks = Sam2VideoMasks()(frames, truth[0])
    scores = [iou(m, t) for m, t in zip(masks, truth)]
    assert min(scores) >= 0.9, f"IoU per frame: {np.round(scores, 3).tolist()}"

"""Shots as long as the story says on the diffusion backend (issue 27, item 3), on tiny random models.

A 7-second shot is one clip of round(7 * fps) frames, made window by window from its last frame
(`models/continuation`), with per-window seeds derived from the shot's video seed; the film takes it
as it is. The seam's smoothness is proven with a deterministic stand-in in
tests/models/test_continuation.py; here the real (tiny, random) model is held to the same bound."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.media import read_frames
from storyagent.models.continuation import frame_steps, shot_frames, window_seed
from storyagent.weights import env_var
from tests.support.paths import PIP

SEAM_BOUND = 1.5  # as in tests/models/test_continuation.py


def use(monkeypatch, weights: dict[str, Path]) -> None:
    for name, path in weights.items():
        monkeypatch.setenv(env_var(name), str(path))


def seven_second_config(**kw) -> RunConfig:
    settings = {"prompt": "a day at the seaside", "subject": PIP, "name": "Pip", "class_word": "fox", "shots": 1,
                "width": 64, "height": 64, "fps": 4, "backend": "diffusion", "steps": 2, "storyboard_side": 64,
                "finetune": "off", "shot_duration": 7}
    return RunConfig.build(**(settings | kw))


def test_a_seven_second_dynamicrafter_shot_is_one_clip_of_seven_seconds(tmp_path, monkeypatch, tiny_weights):
    from storyagent.tools.film import title_frames

    use(monkeypatch, tiny_weights)
    cfg = seven_second_config()
    result = run_crew(cfg, tmp_path, show_progress=False)
    (shot,) = result.script.shots
    assert shot.duration == 7
    (clip,) = result.clips
    total = shot_frames(7, 4)
    assert total == 28 and clip.num_frames == total and clip.fps == 4
    assert len(read_frames(tmp_path / clip.path, 1000)) == total, "one clip file of 7 seconds"
    # The tiny model's window is 4 frames: 4 + 8 x 3 = 28, nine windows, seeds from the shot's video seed.
    windows = clip.meta["windows"]
    assert windows["frames"] == [4] * 9 and windows["seams"] == [4, 7, 10, 13, 16, 19, 22, 25]
    assert clip.meta["seed"] == 1 and windows["seeds"] == [1 + 1_000_000 * k for k in range(9)]
    assert windows["fades"] == [2] * 8, "a 4-frame window fades its drift over its 2 middle frames"
    # The film fits the clip as it is: the title, then the shot's 28 frames (a silent film holds nothing).
    assert result.film.num_frames == title_frames(4) + total


def test_every_window_is_the_models_own_from_the_clips_last_frame(monkeypatch, tiny_weights):
    """The backend's windows: window 0 is the shot's seed (a 1-window clip is its first frames), each next
    one DynamiCrafter's image-to-video from the clip's last frame so far, with its own derived seed; the
    seams of the clip stay within the clip's own median step."""
    from storyagent.models.dynamicrafter import DynamiCrafterPipeline
    from storyagent.tools.backends.diffusion import DiffusionBackend

    use(monkeypatch, tiny_weights)
    backend = DiffusionBackend(seven_second_config())
    calls = []
    call = DynamiCrafterPipeline.__call__

    def recording(pipe, image, prompt, num_frames=None, generator=None, **kw):
        calls.append((np.array(image), num_frames, generator.initial_seed()))
        return call(pipe, image, prompt, num_frames=num_frames, generator=generator, **kw)

    monkeypatch.setattr(DynamiCrafterPipeline, "__call__", recording)
    image = np.asarray(Image.open(PIP).convert("RGB").resize((16, 16)))
    made = backend._frames(image, "a fox on a beach", 5, low_vram=False, total=28)
    assert made.frames.shape == (28, 16, 16, 3)
    assert [c[1] for c in calls] == [4] * 9
    assert [c[2] for c in calls] == made.seeds == [window_seed(5, k) for k in range(9)]
    assert np.array_equal(calls[0][0], image)
    for seam, (start, *_) in zip(made.seams, calls[1:], strict=True):
        assert np.array_equal(start, made.frames[seam - 1]), "conditioned on the frame before the seam"

    one = backend._frames(image, "a fox on a beach", 5, low_vram=False, total=4)
    assert np.array_equal(one.frames, made.frames[:4]) and one.seeds == [5], "window 0 keeps the shot's seed"
    again = backend._frames(image, "a fox on a beach", 5, low_vram=False, total=28)
    assert np.array_equal(again.frames, made.frames), "same seed, same clip"

    # The tiny random model draws noise (its own steps vary by a third around their median), so this holds
    # it to the bound without proving much; the stand-in and tiny Wan (whose random VAE drifts) prove the seam.
    steps = frame_steps(made.frames)
    median = float(np.median(steps))
    for seam, fade in zip(made.seams, made.fades, strict=True):
        assert steps[seam - 1:seam + fade].max() <= SEAM_BOUND * median, (seam, steps.round(1).tolist())


@pytest.mark.parametrize("duration, frames", [(2, 8), (3.5, 14)])
def test_a_short_shot_is_its_own_length_too(tmp_path, monkeypatch, tiny_weights, duration, frames):
    use(monkeypatch, tiny_weights)
    result = run_crew(seven_second_config(shot_duration=duration), tmp_path, show_progress=False)
    (clip,) = result.clips
    assert clip.num_frames == frames == len(read_frames(tmp_path / clip.path, 1000))


# ---- Wan -------------------------------------------------------------------------------------------

WAN = "wan2.2-ti2v-5b"


@pytest.fixture(scope="module")
def tiny_wan_weights(tmp_path_factory, tiny_weights):
    from storyagent.models.wan.testing import save_tiny_wan

    storyboard = {k: v for k, v in tiny_weights.items() if k != "dynamicrafter-512"}
    return storyboard | {WAN: save_tiny_wan(tmp_path_factory.mktemp("wan"), WAN)}


@pytest.fixture
def tiny_wan(monkeypatch, tiny_wan_weights):
    """The tiny weights in use and Wan's settings at their scale (32 x 32, at most 17 frames at 8 fps, 2 steps)."""
    from storyagent.models.wan import config
    from storyagent.models.wan.testing import tiny_config

    use(monkeypatch, tiny_wan_weights)
    monkeypatch.setitem(config.WAN_VIDEO_MODELS, WAN, tiny_config(WAN))
    return tiny_wan_weights


def test_a_seven_second_wan_shot_is_one_clip_of_seven_seconds(tmp_path, tiny_wan):
    """Wan makes the shot at its own rate (8 fps here: 56 frames, four windows of 4k+1 = 17), and the clip is
    the shot's 7 seconds at the film's 4 fps; the film takes it whole."""
    from storyagent.tools.film import title_frames

    result = run_crew(seven_second_config(video_model=WAN), tmp_path, show_progress=False)
    (clip,) = result.clips
    assert clip.num_frames == shot_frames(7, 4) == 28 and clip.fps == 4
    assert len(read_frames(tmp_path / clip.path, 1000)) == 28
    windows = clip.meta["windows"]
    assert windows["frames"] == [17] * 4 and windows["seeds"] == [1 + 1_000_000 * k for k in range(4)]
    assert result.film.num_frames == title_frames(4) + 28


def test_every_wan_window_is_its_own_from_the_clips_last_frame(monkeypatch, tiny_wan):
    """The backend's Wan windows: each Wan's image-to-video of the clip's last frame so far (at the model's
    rate, before the clip is retimed to the film's), with its seed derived from the shot's; window 0 keeps
    the shot's seed; the seams, at the film's rate, within the bound the tiny models are held to."""
    from storyagent.models.wan import WanVideoPipeline
    from storyagent.tools.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(seven_second_config(video_model=WAN))
    calls = []
    call = WanVideoPipeline.__call__

    def recording(pipe, image, prompt, num_frames, seed=0, **kw):
        out = call(pipe, image, prompt, num_frames, seed, **kw)
        calls.append((np.array(image), num_frames, seed, out))
        return out

    monkeypatch.setattr(WanVideoPipeline, "__call__", recording)
    image = np.asarray(Image.open(PIP).convert("RGB").resize((32, 32)))
    made = backend._frames(image, "a fox on a beach", 5, low_vram=False, total=28)
    assert made.frames.shape[0] == 28
    assert [c[1] for c in calls] == [17] * 4 and [c[2] for c in calls] == [window_seed(5, k) for k in range(4)]
    assert np.array_equal(calls[0][0], image)
    for k in range(1, 4):
        assert np.array_equal(calls[k][0], calls[k - 1][3][-1]), "each window starts from the one before's last frame"
    # 8 fps -> 4 fps: every second frame of the shot Wan made, as Wan made it but in the drift's fades.
    wan_rate = np.concatenate([calls[0][3], *(c[3][1:] for c in calls[1:])])
    faded = {seam + j for seam, fade in zip((17, 33, 49), made.fades, strict=True) for j in range(fade)}
    for i, frame in enumerate(made.frames):
        assert np.array_equal(frame, wan_rate[2 * i]) == (2 * i not in faded), i
    # Tiny random Wan starts every window fast and settles (its first step is 2.5 median steps with no seam
    # before it), so at the film's rate a seam is held to the first window's own start; the median bound
    # is tested at Wan's rate in tests/models/test_continuation.py.
    steps = frame_steps(made.frames)
    for seam in made.seams:  # a fade of a few frames at 8 fps is one or two at 4 fps
        assert steps[seam - 1:seam + 2].max() <= 1.25 * steps[0], (seam, steps.round(1).tolist())

"""Shots longer than one window: frame counts, window seeds, and the seam (issue 27, item 3).

The seam is tested with a deterministic stand-in for an image-to-video model: its window moves the
conditioning picture steadily (the motion), and redraws it with a drift (a colour shift, as a model's
first frame and a VAE round trip have), so a careless join shows a jump the median step does not."""

import numpy as np
import pytest

from storyagent.models.continuation import (
    WINDOW_SEED_STRIDE,
    WindowRule,
    continue_shot,
    fade_frames,
    frame_steps,
    join_window,
    plan_windows,
    retime,
    shot_frames,
    window_seed,
)

DYNAMICRAFTER = WindowRule(max_frames=16)
WAN_480P = WindowRule(max_frames=81, step=4, fixed=False)
WAN_TI2V = WindowRule(max_frames=121, step=4, fixed=False)

SEAM_BOUND = 1.5
"""A seam's largest step (over the seam and its fade) may be at most this times the clip's median step."""


def scene(h: int = 48, w: int = 64) -> np.ndarray:
    """A textured picture: smooth colour ramps and a few soft blobs, so a 1-pixel move changes it a little."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([80 + 60 * np.sin(x / 5.0), 90 + 50 * np.cos(y / 4.0 + x / 9.0), 120 + 40 * np.sin((x + y) / 7.0)], -1)
    for cy, cx, r in ((12, 20, 6), (30, 45, 8), (36, 10, 5)):
        img += 50 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class StandIn:
    """A deterministic image-to-video stand-in: frame j is the conditioning picture moved j pixels to the
    right, all drawn with the model's drift (16 on every channel, up in even windows, down in odd ones, so
    it does not pile up) and a seed's faint grain. Records its calls."""

    drift = 16.0

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, int, int, int]] = []

    def __call__(self, image: np.ndarray, num_frames: int, seed: int, window: int) -> np.ndarray:
        self.calls.append((image.copy(), num_frames, seed, window))
        grain = np.random.default_rng(seed).normal(0, 1.0, image.shape).astype(np.float32)
        frames = [np.roll(image, j, axis=1).astype(np.float32) + self.drift * (-1) ** window + grain for j in range(num_frames)]
        return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def seam_steps(frames: np.ndarray, seams: list[int], fades: list[int]) -> list[float]:
    """The largest step across each seam and its fade."""
    steps = frame_steps(frames)
    return [float(steps[s - 1:s + fade].max()) for s, fade in zip(seams, fades, strict=True)]


# ---- frame counts --------------------------------------------------------------------------------

def test_a_shot_has_its_duration_in_frames():
    assert shot_frames(7, 8) == 56 and shot_frames(2.5, 8) == 20 and shot_frames(7, 24) == 168
    assert shot_frames(0.1, 8) == 2, "at least two frames, the animatic's rule"


def test_a_seven_second_dynamicrafter_shot_is_four_windows_of_sixteen_cut_to_56():
    plan = plan_windows(shot_frames(7, 8), DYNAMICRAFTER)
    assert plan.lengths == (16, 16, 16, 16)
    assert plan.made == 16 + 3 * 15 == 61 and plan.total == 56


def test_a_shot_within_one_window_is_one_window():
    assert plan_windows(16, DYNAMICRAFTER).lengths == (16,)
    assert plan_windows(12, DYNAMICRAFTER).lengths == (16,), "the model's own length, cut"
    assert plan_windows(17, DYNAMICRAFTER).lengths == (16, 16)
    assert plan_windows(81, WAN_480P).lengths == (81,)
    assert plan_windows(33, WAN_480P).lengths == (33,), "Wan makes only the 4k+1 frames it needs"


@pytest.mark.parametrize("rule", [DYNAMICRAFTER, WAN_480P, WAN_TI2V, WindowRule(max_frames=4)], ids=str)
@pytest.mark.parametrize("total", [2, 3, 5, 16, 17, 31, 56, 81, 82, 112, 121, 168, 480])
def test_the_windows_cover_the_shot_with_valid_lengths_and_no_spare_window(rule, total):
    plan = plan_windows(total, rule)
    assert all((n - 1) % rule.step == 0 and 2 <= n <= rule.max_frames for n in plan.lengths)
    assert plan.made >= total
    fewer = 1 + sum(n - 1 for n in plan.lengths[:-1])
    assert fewer < total, "the last window is needed"
    if not rule.fixed:
        assert plan.made - total < len(plan.lengths) * rule.step, "Wan's windows are the shortest that cover it"


def test_a_window_rule_refuses_a_length_the_model_cannot_make():
    with pytest.raises(ValueError, match="1 \\+ 4"):
        WindowRule(max_frames=80, step=4)


# ---- seeds and conditioning ----------------------------------------------------------------------

def test_window_seeds_come_from_the_shot_seed():
    assert WINDOW_SEED_STRIDE == 1_000_000
    assert [window_seed(42, k) for k in range(4)] == [42, 1_000_042, 2_000_042, 3_000_042]
    maker = StandIn()
    out = continue_shot(scene(), 56, DYNAMICRAFTER, maker, seed=42)
    assert out.seeds == [c[2] for c in maker.calls] == [42, 1_000_042, 2_000_042, 3_000_042]
    assert [c[3] for c in maker.calls] == [0, 1, 2, 3] and [c[1] for c in maker.calls] == [16] * 4


def test_each_window_starts_from_the_clips_last_frame_so_far():
    maker = StandIn()
    image = scene()
    out = continue_shot(image, 56, DYNAMICRAFTER, maker, seed=7)
    assert out.frames.shape == (56, *image.shape) and out.frames.dtype == np.uint8
    assert out.seams == [16, 31, 46]
    assert np.array_equal(maker.calls[0][0], image)
    for seam, (cond, *_) in zip(out.seams, maker.calls[1:], strict=True):
        assert np.array_equal(cond, out.frames[seam - 1])


def test_the_same_seed_makes_the_same_clip_and_another_seed_another():
    a = continue_shot(scene(), 40, DYNAMICRAFTER, StandIn(), seed=3).frames
    assert np.array_equal(a, continue_shot(scene(), 40, DYNAMICRAFTER, StandIn(), seed=3).frames)
    assert not np.array_equal(a, continue_shot(scene(), 40, DYNAMICRAFTER, StandIn(), seed=4).frames)


def test_a_shot_of_one_window_is_that_window_cut_to_length():
    maker = StandIn()
    out = continue_shot(scene(), 12, DYNAMICRAFTER, maker, seed=5)
    assert np.array_equal(out.frames, StandIn()(scene(), 16, 5, 0)[:12]) and out.seams == []


def test_a_window_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="window 0 should be 16"):
        continue_shot(scene(), 20, DYNAMICRAFTER, lambda image, n, seed, k: np.zeros((n - 1, 4, 4, 3), np.uint8), 0)


# ---- the seam --------------------------------------------------------------------------------------

def test_join_window_drops_the_conditioning_frame_and_fades_the_drift_out():
    last = scene()
    window = StandIn()(last, 8, 0, 1)
    joined = join_window(last, window, fade=4)
    assert len(joined) == 7
    assert np.array_equal(joined[4:], window[5:]), "after the fade the window is its own"
    drift = last.astype(np.float32) - window[0]
    for j in range(4):  # the drift's share falls 0.8, 0.6, 0.4, 0.2
        share = np.mean(joined[j].astype(np.float32) - window[j + 1]) / np.mean(drift)
        assert share == pytest.approx(1 - (j + 1) / 5, abs=0.02)
    exact = np.concatenate([last[None], window[1:]])
    assert np.array_equal(join_window(last, exact, fade=4), window[1:]), "no drift: the frames are kept as made"


def test_the_fade_is_as_long_as_the_drift_needs():
    last = scene()
    window = StandIn()(last, 16, 0, 1)  # drift 16 on every channel; the window moves ~5.4 a frame
    median = float(np.median(frame_steps(window)))
    rule = WindowRule(max_frames=16)
    fade = fade_frames(last, window, rule)
    assert fade == int(np.ceil(16 / (0.5 * median))) - 1 and 16 / (fade + 1) <= 0.5 * median < 16 / fade
    assert fade_frames(last, window, WindowRule(max_frames=16, drift_share=0.25)) > fade, "a smaller share, longer"
    exact = np.concatenate([last[None], window[1:]])
    assert fade_frames(last, exact, rule) == rule.min_fade == 2, "no drift: the shortest fade"
    still = np.repeat(last[None] + 40, 16, axis=0)
    assert fade_frames(last, still, rule) == 14, "a window that does not move: the whole window but its last frame"


@pytest.mark.parametrize("rule, fps", [(DYNAMICRAFTER, 8), (WAN_480P, 16)], ids=["dynamicrafter", "wan"])
def test_a_seven_second_shot_has_no_jump_at_its_seams(rule, fps):
    total = shot_frames(7, fps)
    out = continue_shot(scene(), total, rule, StandIn(), seed=11)
    assert len(out.frames) == total and len(out.seams) == len(out.plan.lengths) - 1 >= 1
    median = float(np.median(frame_steps(out.frames)))
    assert median > 1, "the clip moves"
    assert all(f >= rule.min_fade for f in out.fades)
    for step in seam_steps(out.frames, out.seams, out.fades):
        assert step <= SEAM_BOUND * median, (step, median)


def test_without_the_fade_the_seam_jumps():
    """The bound above can fail: the same windows joined naively (the conditioning frame kept, or only
    dropped) jump at every seam by more than the bound."""
    total = shot_frames(7, 8)
    kept, dropped = [], []
    start = scene()
    for k, n in enumerate(plan_windows(total, DYNAMICRAFTER).lengths):
        w = StandIn()(start, n, window_seed(11, k), k)
        kept.append(w)
        dropped.append(w if k == 0 else w[1:])
        start = w[-1]
    for parts in (kept, dropped):
        frames = np.concatenate(parts)[:total]
        seams = list(np.cumsum([len(p) for p in parts])[:-1])
        median = float(np.median(frame_steps(frames)))
        assert max(seam_steps(frames, seams, [0] * len(seams))) > SEAM_BOUND * median


def test_retime_takes_the_frame_nearest_each_time():
    frames = np.arange(169, dtype=np.uint8)[:, None, None, None].repeat(2, 1)
    out = retime(frames, 24, 8, 56)
    assert out.shape[0] == 56 and list(out[:4, 0, 0, 0]) == [0, 3, 6, 9] and out[-1, 0, 0, 0] == 165
    assert retime(frames[:10], 16, 8, 8)[-1, 0, 0, 0] == 9, "a short source holds its last frame"
    assert retime(frames, 8, 8, 169) is frames


# ---- a real video model: tiny random Wan ---------------------------------------------------------

TINY_MODEL_BOUND = 1.75
"""The seam bound on a tiny random model, whose own steps vary by up to half their median (it draws noise)."""


@pytest.mark.parametrize("kind", ["wan2.2-ti2v-5b", "wan2.1-i2v-14b-480p"])
def test_a_seven_second_shot_on_tiny_wan_has_no_jump_at_its_seams(kind):
    """Wan's own image-to-video windows (diffusers' pipeline, tiny and random, 17 frames at most, 8 fps):
    a 7-second shot is one clip of 56 frames in 4k+1-frame windows, every seam within the bound. Tiny
    Wan2.1's random VAE redraws a window's first frame about 3 median steps away from its picture: the
    same windows joined by dropping that frame alone jump past the bound (tiny Wan2.2's drift looks like
    its own noise, so there the bound is all there is to check)."""
    import torch
    from PIL import Image

    from storyagent.models.wan import WanVideoPipeline
    from storyagent.models.wan.testing import tiny_config, tiny_pipeline
    from tests.support.paths import PIP

    torch.manual_seed(0)
    config = tiny_config(kind)
    pipe = WanVideoPipeline(tiny_pipeline(kind), config)
    windows: list[np.ndarray] = []

    def window(image, num_frames, seed, k):
        windows.append(pipe(image, "a fox on a beach", num_frames, seed))
        return windows[-1]

    rule = WindowRule(max_frames=config.max_frames, step=4, fixed=False)
    total = shot_frames(7, config.fps)
    out = continue_shot(np.asarray(Image.open(PIP).convert("RGB").resize((32, 32))), total, rule, window, seed=3)
    assert total == 56 and out.frames.shape == (56, 32, 32, 3)
    assert out.plan.lengths == (17, 17, 17, 17) and out.seeds == [window_seed(3, k) for k in range(4)]
    median = float(np.median(frame_steps(out.frames)))
    assert max(seam_steps(out.frames, out.seams, out.fades)) <= TINY_MODEL_BOUND * median

    if kind == "wan2.1-i2v-14b-480p":
        # The same windows (each started from the one before's last frame, which the fade leaves as made).
        naive = np.concatenate([windows[0], *(w[1:] for w in windows[1:])])[:total]
        assert np.array_equal(naive[:17], out.frames[:17]) and np.array_equal(naive[-1], out.frames[-1])
        naive_median = float(np.median(frame_steps(naive)))
        assert min(seam_steps(naive, out.seams, [0] * 3)) > TINY_MODEL_BOUND * naive_median

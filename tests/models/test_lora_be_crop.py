"""LoRA-BE on real media (issue 26, items 6 and 8), tiny DynamiCrafter on the CPU.

Item 8: a portrait phone video is cropped to the 320x512 training frame around its subject (or
letterboxed when the subject is taller than the frame), never centre-cropped through it, and its
frames are kept large enough that covering the frame never upscales them.

Item 6: the adapter file pins the fs its clips were trained at (their frame rate after striding),
and a pipeline that loads it samples at that fs, not at the variant's 24.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

from storyagent.models.dynamicrafter.testing import tiny_pipeline
from storyagent.models.lora_be import (
    Clip,
    LoRABEAdapter,
    LoRABEConfig,
    LoRABETrainer,
    adapter_fs,
    fit_clip,
    load_adapter,
    load_subject_clips,
)
from storyagent.models.lora_be.data import MAX_SIDE, fit_long_side
from tests.support.media import write_index_video

HEIGHT, WIDTH = 40, 64  # the 512 model's 320x512 frame, at an eighth
HEAD, BODY, FEET, BO = (230, 40, 40), (40, 200, 60), (40, 60, 230), (240, 240, 0)


def standing_figure(frames: int = 6, size: tuple[int, int] = (160, 90), rows: tuple[int, int] = (12, 150),
                    cols: tuple[int, int] = (30, 60)) -> Clip:
    """A portrait (9:16) clip of a figure standing most of the frame's height, swaying sideways: red
    head, green body, blue feet, on grey."""
    h, w = size
    video = np.full((frames, h, w, 3), 128, np.uint8)
    masks = np.zeros((frames, h, w), bool)
    top, bottom = rows
    for f in range(frames):
        left, right = cols[0] + f % 3, cols[1] + f % 3
        masks[f, top:bottom, left:right] = True
        video[f, top:bottom, left:right] = BODY
        video[f, top : top + 15, left:right] = HEAD
        video[f, bottom - 12 : bottom, left:right] = FEET
    return Clip(video, masks, fps=8.0, stride=4)


def has(frames: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((np.abs(frames.astype(int) - colour).sum(axis=-1) < 30).any())


def test_a_portrait_clip_keeps_its_whole_subject_inside_the_training_crop():
    clip = standing_figure()
    fitted = fit_clip(clip, 6, HEIGHT, WIDTH)
    assert fitted.frames.shape == (6, HEIGHT, WIDTH, 3) and fitted.masks.shape == (6, HEIGHT, WIDTH)
    # Head and feet both made it into the crop (the centre crop keeps the middle 35% of the rows: the body).
    assert has(fitted.frames, HEAD) and has(fitted.frames, FEET)
    # Nothing of the subject touches the crop's edge: it was not cut.
    edge = np.zeros((HEIGHT, WIDTH), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    assert not (fitted.masks & edge).any()
    # Its whole area is there: the mask's area is the source's at the scale the crop used.
    scale = fitted.masks[0].any(axis=1).sum() / clip.masks[0].any(axis=1).sum()
    assert fitted.masks[0].sum() == pytest.approx(clip.masks[0].sum() * scale**2, rel=0.15)
    # Where the picture did not reach, letterbox bars (black, not the subject).
    assert (fitted.frames[:, :, 0] == 0).all() and not fitted.masks[:, :, 0].any()

    # The old rule (cover, centre crop) cut the head and the feet off: the case this guards.
    h, w = clip.frames.shape[1:3]
    scale = max(HEIGHT / h, WIDTH / w)
    big = cv2.resize(clip.frames[0], (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    top = (big.shape[0] - HEIGHT) // 2
    centre = big[top : top + HEIGHT]
    assert not has(centre, HEAD) and not has(centre, FEET)


def test_a_small_subject_off_centre_is_held_by_moving_the_crop_not_by_shrinking():
    # A cat low in a portrait frame: at the covering scale it fits, so the crop moves down to it.
    clip = standing_figure(rows=(120, 150), cols=(20, 50))
    fitted = fit_clip(clip, 6, HEIGHT, WIDTH)
    assert has(fitted.frames, HEAD) and has(fitted.frames, FEET)
    assert not (fitted.frames == 0).all(axis=-1).any(), "no bars: the picture still covers the frame"


def test_a_subject_inside_the_centre_crop_gets_the_centre_crop_as_before():
    """Landscape clips whose subject is in the middle train on exactly what they trained on before."""
    clip = standing_figure(size=(90, 160), rows=(30, 60), cols=(70, 90))
    fitted = fit_clip(clip, 6, HEIGHT, WIDTH)
    h, w = clip.frames.shape[1:3]
    scale = max(HEIGHT / h, WIDTH / w)
    size = (max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale)))
    top, left = (size[1] - HEIGHT) // 2, (size[0] - WIDTH) // 2
    for i in range(6):
        centre = cv2.resize(clip.frames[i], size, interpolation=cv2.INTER_AREA)[top : top + HEIGHT, left : left + WIDTH]
        np.testing.assert_array_equal(fitted.frames[i], centre)


def test_a_cast_composites_partner_is_kept_too():
    """The crop holds every character a clip shows (`Clip.others`), not only its own."""
    clip = standing_figure(size=(90, 240), rows=(30, 60), cols=(110, 130))
    other = np.zeros_like(clip.masks)
    other[:, 30:60, 2:20] = True  # a second character at the far left, outside the centre crop
    clip.frames[other] = BO
    assert not has(fit_clip(clip, 6, HEIGHT, WIDTH).frames, BO), "the centre crop would have cut it"
    fitted = fit_clip(dataclasses.replace(clip, others={"<bo>": other}), 6, HEIGHT, WIDTH)
    assert fitted.others["<bo>"].any(axis=(1, 2)).all() and has(fitted.frames, BO)


def test_frames_are_kept_large_enough_to_cover_the_frame_in_either_orientation():
    """A 1080x1920 phone video used to be shrunk to 288x512 and then upscaled 1.8x to cover 512 wide."""
    for shape in ((1920, 1080, 3), (1080, 1920, 3)):
        kept = fit_long_side(np.zeros(shape, np.uint8), MAX_SIDE)
        assert kept.shape[0] >= 320 and kept.shape[1] >= 512, kept.shape


# ---------------------------------------------------------------- item 6: fs pinned in the adapter file

def config(**kw) -> LoRABEConfig:
    return LoRABEConfig(**({"token": "<pip>", "class_word": "fox", "epochs": 1, "augment": False,
                            "checkpoint_every": 1000} | kw))


def fs_seen(pipe) -> tuple[list[int], object]:
    seen: list[int] = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(int(kw["fs"][0])), with_kwargs=True)
    return seen, handle


@pytest.fixture(scope="module")
def video_clip(tmp_path_factory) -> Clip:
    """40 frames at 30 fps: 16 frames at stride 2, so 15 fps after striding (see test_lora_be_data.py)."""
    folder = tmp_path_factory.mktemp("fs")
    (clip,) = load_subject_clips([write_index_video(folder / "v.mp4", 40)], segment=lambda fs: [
        (np.ones(f.shape[:2], bool), "all") for f in fs])
    return clip


def test_the_adapter_pins_the_fs_it_was_trained_at_and_the_sampler_uses_it(tmp_path, video_clip):
    assert video_clip.fps == 15.0
    pipe = tiny_pipeline()
    assert pipe.config.sampling.fs == 24, "the variant's default, which the clips used to be sampled at"
    photo = Clip(video_clip.frames[:1], video_clip.masks[:1], still=True)
    trainer = LoRABETrainer(pipe, config(), tmp_path / "work")
    seen, handle = fs_seen(pipe)
    trainer.train([video_clip, photo], show_progress=False)
    handle.remove()
    assert 15 in seen, "the clip trained at its own rate"
    path = trainer.save(tmp_path / "pip.safetensors")
    with safe_open(path, "pt") as f:
        assert f.metadata()["fs"] == "15"
    assert adapter_fs(path) == 15 and LoRABEAdapter.from_pretrained(path).fs == 15

    # The sampler reads it: a pipeline with the adapter loaded samples at 15 unless told otherwise.
    sampler = tiny_pipeline()
    load_adapter(sampler, path)
    assert sampler.adapter_fs == 15 and sampler.default_fs == 15
    seen, handle = fs_seen(sampler)
    image = np.full((16, 16, 3), 120, np.uint8)
    sampler(image, "a video of <pip>", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
            show_progress=False)
    sampler(image, "a video of <pip>", num_inference_steps=2, fs=24, generator=torch.Generator().manual_seed(0),
            show_progress=False)
    handle.remove()
    assert set(seen[: len(seen) // 2]) == {15} and set(seen[len(seen) // 2 :]) == {24}


def test_the_most_common_video_rate_wins_and_photos_alone_keep_the_default(tmp_path, video_clip):
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path)
    slow = dataclasses.replace(video_clip, fps=7.5, stride=4)
    assert trainer.sampling_fs([video_clip, slow, slow]) == 8  # round(7.5): two clips against one
    assert trainer.sampling_fs([video_clip, slow]) == 8  # a tie goes to the lower rate
    photo = Clip(video_clip.frames[:1], video_clip.masks[:1], still=True)
    assert trainer.sampling_fs([photo]) == pipe.config.unet.default_fs
    pipe.config.diffusion.fps_condition_type = "fs"  # the 256 model is conditioned on the stride
    assert trainer.sampling_fs([video_clip]) == 2


def test_an_adapter_from_before_the_pin_samples_at_the_models_default(tmp_path, video_clip):
    pipe = tiny_pipeline()
    trainer = LoRABETrainer(pipe, config(), tmp_path / "work")
    path = trainer.save(tmp_path / "old.safetensors")  # never trained: no fs decided, none written
    with safe_open(path, "pt") as f:
        assert "fs" not in f.metadata()
    assert adapter_fs(path) is None
    sampler = tiny_pipeline()
    load_adapter(sampler, path)
    assert sampler.adapter_fs is None and sampler.default_fs == sampler.config.sampling.fs

"""StoryAnyDoor fine-tuning on a tiny random AnyDoor: what trains, checkpoints, resume, LoRA, the
upstream training recipe (timesteps, perturbed masks, reference augmentation), fine-tune files.

Upstream details are pinned against ali-vilab/AnyDoor at commit
44ca2b2a70ec2cf107f3d26a5b46def6670fb0a5 (UPSTREAM below).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from storyagent.errors import InputError
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.anydoor.preprocessing import (
    PreprocessConfig,
    augment_reference,
    brightness_contrast,
    high_frequency_map,
    mask_iou,
    perturb_mask,
    prepare_reference,
    prepare_target,
)
from storyagent.models.anydoor.testing import tiny_config, tiny_pipeline
from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.models.anydoor.finetune import apply_finetune
from storyagent.models.anydoor.pairs import PairSampler, draw_ratio, sample_timestep
from storyagent.models.anydoor.training import StoryAnyDoorTrainer

UPSTREAM = "ali-vilab/AnyDoor@44ca2b2a70ec2cf107f3d26a5b46def6670fb0a5"


def _frames(n=3, size=96):
    rng = np.random.default_rng(0)
    frames, masks = [], []
    for k in range(n):
        frame = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), bool)
        mask[20 + 5 * k:60 + 5 * k, 25:70 - 3 * k] = True
        frames.append(frame)
        masks.append(mask)
    return frames, masks


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    config = tiny_config()
    config.sampling.latent_hw = (8, 8)  # 64 px crops keep CPU backward passes short
    pipe = tiny_pipeline(config)
    with torch.no_grad():  # diffusers zero-initialises ControlNet outputs; give them a value so gradients reach everything
        for p in pipe.controlnet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return pipe.save_pretrained(tmp_path_factory.mktemp("anydoor"))


@pytest.fixture(scope="module")
def loaded(tiny_folder):
    """`tiny_folder` loaded once; tests take copies of it (`fresh_pipe`) and never change this one."""
    return AnyDoorPipeline.from_pretrained(tiny_folder)


@pytest.fixture
def fresh_pipe(loaded):
    """A new pipeline holding the folder's weights at each call: a deep copy of `loaded`, ~4x cheaper than
    loading the folder again (the round trip through the folder is tested in test_anydoor_pipeline.py)."""
    return lambda: copy.deepcopy(loaded)


def _settings(**kw):
    return StoryAnyDoorTrainingConfig(**{"steps": 2, "checkpoint_every": 1, "learning_rate": 1e-3, **kw})


def _snapshot(pipe):
    return {f"{n}.{k}": v.detach().clone() for n in ("unet", "controlnet", "vae", "image_encoder")
            for k, v in getattr(pipe, n).state_dict().items()}


def test_a_step_changes_only_controlnet_unet_decoder_and_projector(fresh_pipe, tmp_path):
    pipe = fresh_pipe()
    before = _snapshot(pipe)
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "run", _settings())
    loss = trainer.train_step()
    assert np.isfinite(loss) and loss > 0
    after = _snapshot(pipe)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable_prefixes = ("controlnet.", "unet.up_blocks.", "unet.conv_norm_out.", "unet.conv_out.",
                          "image_encoder.projector.")
    assert changed, "nothing trained"
    assert all(k.startswith(trainable_prefixes) for k in changed), sorted(changed)[:5]
    assert "controlnet.conv_in.weight" not in changed  # upstream never uses it
    for prefix in ("controlnet.controlnet_down_blocks.", "unet.up_blocks.", "image_encoder.projector.",
                   "controlnet.controlnet_cond_embedding."):
        assert any(k.startswith(prefix) for k in changed), prefix
    frozen = ("unet.down_blocks.", "unet.mid_block.", "unet.conv_in.", "vae.", "image_encoder.dinov2.")
    assert not any(k.startswith(frozen) for k in changed)


def test_resume_continues_exactly_where_the_checkpoint_left_off(fresh_pipe, tmp_path):
    frames, masks = _frames()
    straight = fresh_pipe()
    losses_straight = StoryAnyDoorTrainer(straight, frames, masks, tmp_path / "a", _settings(steps=3)).train(
        show_progress=False)

    first = fresh_pipe()
    StoryAnyDoorTrainer(first, frames, masks, tmp_path / "b", _settings(steps=3)).train(steps=2, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint-1", "checkpoint-2"]

    resumed = fresh_pipe()  # fresh weights: everything must come from the checkpoint
    trainer = StoryAnyDoorTrainer(resumed, frames, masks, tmp_path / "b", _settings(steps=3))
    losses_resumed = trainer.train(show_progress=False)
    assert trainer.step == 3 and len(losses_resumed) == 1
    assert losses_resumed[0] == pytest.approx(losses_straight[2], rel=1e-5)
    a, b = _snapshot(straight), _snapshot(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    # keep_checkpoints=2 pruned the oldest
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint-2", "checkpoint-3"]


def test_lora_trains_adapters_only_and_exports_a_loadable_pipeline(fresh_pipe, tmp_path):
    pipe = fresh_pipe()
    before = _snapshot(pipe)
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "lora", _settings(use_lora=True, lora_rank=4))
    names = set(trainer.params)
    assert names and all("lora_" in n or n.startswith("image_encoder.projector.") for n in names)
    assert not any(n.startswith("unet.down_blocks") for n in names)
    trainer.train(show_progress=False)
    trainer.export(tmp_path / "export")
    merged = AnyDoorPipeline.from_pretrained(tmp_path / "export")
    after = _snapshot(merged)
    assert set(after) == set(before)  # adapters folded in, names back to the base layout
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".attn1.to_q." in k or ".attn2.to_k." in k for k in changed)
    assert not any(k.startswith(("unet.down_blocks.", "vae.", "image_encoder.dinov2.")) for k in changed)


def test_bad_inputs_are_refused(fresh_pipe, tmp_path):
    pipe = fresh_pipe()
    with pytest.raises(InputError):
        StoryAnyDoorTrainer(pipe, [], [], tmp_path, _settings())
    trainer = StoryAnyDoorTrainer(pipe, *_frames(), tmp_path / "x", _settings())
    trainer.train(show_progress=False)
    lora = StoryAnyDoorTrainer(fresh_pipe(), *_frames(), tmp_path / "x",
                               _settings(use_lora=True, steps=4))
    with pytest.raises(InputError, match="LoRA"):
        lora.train(show_progress=False)


def test_finetune_storyboard_command(tiny_folder, tmp_path):
    import cv2
    from typer.testing import CliRunner

    from storyagent.commands.finetune_storyboard import app

    subject = tmp_path / "subject"
    subject.mkdir()
    for k, (frame, mask) in enumerate(zip(*_frames(2, size=80))):
        rgba = np.dstack([frame[..., ::-1], mask.astype(np.uint8) * 255])  # BGRA for OpenCV
        cv2.imwrite(str(subject / f"pip_{k}.png"), rgba)
    args = ["storyboard", "--subject", str(subject), "--out", str(tmp_path / "out"), "--weights", str(tiny_folder),
            "--steps", "1", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "checkpoint-1" / "state.json").is_file()
    assert AnyDoorPipeline.from_pretrained(tmp_path / "out" / "model").config.image_size == 64
    # again: resumes at the finished step, trains nothing more
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already complete" in again.output
    missing = CliRunner().invoke(app, [*args[:5], "--weights", str(tmp_path / "none"), "--device", "cpu"])
    assert missing.exit_code == 2 and "storyagent weights fetch anydoor" in missing.output


# ---------------------------------------------------------------------- upstream's training recipe


def _is_filled_rectangle(region: np.ndarray) -> bool:
    ys, xs = np.nonzero(region)
    return bool(region[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all())


def test_timesteps_follow_upstream_sample_timestep():
    """UPSTREAM datasets/base.py `BaseDataset.sample_timestep`: with probability 0.3 uniform over
    [0, 1000), else [500, 1000) for `dynamic == 1` (ytb_vos.py, vipseg.py: videos), [0, 500) for
    `dynamic == 0` (sam.py, saliency_modular.py: one image as reference and target) and [0, 1000)
    for `dynamic == 2` (mvimagenet.py: multi-view)."""
    rng = np.random.default_rng(0)
    n = 20_000
    draws = {kind: np.array([sample_timestep(rng, kind) for _ in range(n)]) for kind in ("video", "still", "multiview")}
    for t in draws.values():
        assert t.min() >= 0 and t.max() < 1000 and t.dtype.kind == "i"
    assert (draws["video"] >= 500).mean() == pytest.approx(0.7 + 0.3 * 0.5, abs=0.015)
    assert (draws["still"] < 500).mean() == pytest.approx(0.85, abs=0.015)
    assert (draws["multiview"] >= 500).mean() == pytest.approx(0.5, abs=0.015)
    # the biased part alone stays in its range; the uniform part alone covers everything
    assert min(sample_timestep(rng, "video", uniform_probability=0.0) for _ in range(2000)) >= 500
    assert max(sample_timestep(rng, "still", uniform_probability=0.0) for _ in range(2000)) < 500
    assert StoryAnyDoorTrainingConfig().uniform_timestep_probability == 0.3


def test_pairs_and_their_kind_follow_the_frame_sources():
    """A video's frame pairs with another frame of it (UPSTREAM ytb_vos.py: two frames of one clip,
    dynamic 1); a photo pairs with itself (sam.py: tar_image = ref_image, dynamic 0) or with another
    file's frame (multi-view, dynamic 2)."""
    frames, masks = _frames(5, size=48)
    config = StoryAnyDoorTrainingConfig()
    sources = ["clip.mp4"] * 3 + ["a.png", "b.png"]
    sampler = PairSampler(frames, masks, config, 64, 28, sources=sources)
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(600):
        i, j, kind = sampler.pair(rng)
        if i < 3:
            assert j < 3 and j != i and kind == "video"
        else:
            assert kind == ("still" if j == i else "multiview")
        seen.add(kind)
    assert seen == {"video", "still", "multiview"}
    clip = PairSampler(frames, masks, config, 64, 28)  # no sources: one clip, always two different frames
    assert all((p := clip.pair(rng))[0] != p[1] and p[2] == "video" for _ in range(100))
    assert PairSampler(frames[:1], masks[:1], config, 64, 28).pair(rng) == (0, 0, "still")
    with pytest.raises(InputError, match="source"):
        PairSampler(frames, masks, config, 64, 28, sources=sources[:2])


def test_each_sample_carries_its_own_timestep_reproducibly():
    frames, masks = _frames(3, size=48)
    sampler = PairSampler(frames, masks, StoryAnyDoorTrainingConfig(seed=3), 64, 28, sources=["v.mp4"] * 3)
    a, b = sampler.batch(7, 4), sampler.batch(7, 4)
    assert a["timestep"].shape == (4,) and a["timestep"].dtype == torch.long
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["timestep"], sampler.batch(8, 4)["timestep"])


def test_crop_ratios_are_drawn_in_tenths_like_upstream():
    """UPSTREAM datasets/base.py `process_pairs`: reference margin `np.random.randint(11, 15) / 10`;
    datasets/data_utils.py `expand_bbox`: `randint(ratio[0] * 10, ratio[1] * 10) / 10` with
    [1.1, 1.2] for the target box (always 1.1) and [1.3, 3.0] for the crop."""
    rng = np.random.default_rng(0)
    c = StoryAnyDoorTrainingConfig()
    draws = {name: {draw_ratio(rng, getattr(c, name)) for _ in range(2000)}
             for name in ("reference_margin", "target_box_expand", "target_crop_expand")}
    assert draws["reference_margin"] == {1.1, 1.2, 1.3, 1.4}
    assert draws["target_box_expand"] == {1.1}
    assert draws["target_crop_expand"] == {round(1.3 + 0.1 * k, 1) for k in range(17)}


def test_perturb_mask_grows_a_coarse_region_around_the_mask():
    """UPSTREAM datasets/data_utils.py `perturb_mask`: an IoU aim drawn in [0.3, 0.99], random
    rectangle dilations/erosions OR-ed with the mask until the IoU falls below it, largest
    connected region kept."""
    mask = np.zeros((120, 100), bool)
    mask[30:90, 25:70] = True
    ious = []
    for seed in range(12):
        region = perturb_mask(mask, np.random.default_rng(seed))
        assert region.dtype == bool and region.shape == mask.shape
        assert (region >= mask).all()  # the subject is never cut off
        assert not _is_filled_rectangle(region)
        ious.append(mask_iou(region, mask))
        assert np.array_equal(region, perturb_mask(mask, np.random.default_rng(seed)))
    assert 0.2 < min(ious) and max(ious) < 0.99 and np.ptp(ious) > 0.1


def test_collage_mask_channel_is_the_box_or_a_perturbed_target_mask():
    """UPSTREAM datasets/base.py `process_pairs`: with probability 0.7 the collage mask is
    `perturb_mask(cropped_tar_mask)` instead of the box; the collage RGB and the padding (-1) stay."""
    frames, masks = _frames(2, size=96)
    settings = PreprocessConfig(reference_size=28, target_size=64)
    reference = prepare_reference(frames[0], masks[0], settings)
    target_mask = np.zeros((96, 96), bool)
    target_mask[30:70, 20:60] = True
    target_mask[30:45, 20:35] = False  # not a rectangle, so its box is not itself

    def hint(region=None):
        return prepare_target(frames[1], target_mask, reference, settings, crop_expand=1.6,
                              region_from_mask=region).hint

    boxed, truth = hint(), hint(lambda m: m)
    perturbed = hint(lambda m: perturb_mask(m, np.random.default_rng(0)))
    np.testing.assert_array_equal(boxed[..., :3], perturbed[..., :3])
    np.testing.assert_array_equal(boxed[..., 3] == -1, perturbed[..., 3] == -1)
    assert _is_filled_rectangle(boxed[..., 3] == 1)
    region = perturbed[..., 3] == 1
    assert not _is_filled_rectangle(region) and not np.array_equal(region, boxed[..., 3] == 1)
    assert 0.3 <= mask_iou(region, truth[..., 3] == 1) <= 0.99

    # the trainer's switch: probability 0 keeps the box, 1 always perturbs
    def sampled_region(probability):
        config = StoryAnyDoorTrainingConfig(perturbed_mask_probability=probability)
        return PairSampler([frames[1]], [target_mask], config, 64, 28).batch(0, 1)["hint"][0, 3].numpy() == 1

    assert _is_filled_rectangle(sampled_region(0.0)) and not _is_filled_rectangle(sampled_region(1.0))
    assert StoryAnyDoorTrainingConfig().perturbed_mask_probability == 0.7


def test_brightness_contrast_is_albumentations_with_brightness_by_max():
    """UPSTREAM datasets/base.py `aug_data_mask`: HorizontalFlip(p=0.5), RandomBrightnessContrast(p=0.5)
    with albumentations 1.3.0 defaults (brightness_limit=0.2, contrast_limit=0.2, brightness_by_max=True:
    lut = clip(v * alpha + 255 * beta) as uint8, albumentations@2a857a8c8cb604f95729b387c465f0dd26ef560a
    functional.py `_brightness_contrast_adjust_uint`); the Rotate there is commented out."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    out = brightness_contrast(values, 1.2, 0.1)
    expected = np.clip(np.arange(256, dtype=np.float32) * np.float32(1.2) + np.float32(25.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0].ravel(), expected)
    c = StoryAnyDoorTrainingConfig()
    assert (c.flip_probability, c.brightness_contrast_probability, c.brightness_limit, c.contrast_limit) == (
        0.5, 0.5, 0.2, 0.2)

    frame = np.full((96, 96, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    frame[20:70, 30:60] = rng.integers(60, 180, (50, 30, 3), dtype=np.uint8)
    mask = np.zeros((96, 96), bool)
    mask[20:70, 30:60] = True
    settings = PreprocessConfig(reference_size=56)
    ref = prepare_reference(frame, mask, settings)
    subject, background = ref.mask, (~ref.mask) & (ref.image == 255).all(-1)

    brighter = augment_reference(ref, settings, alpha=1.0, beta=0.1)
    np.testing.assert_array_equal(brighter.mask, ref.mask)
    shift = brighter.image[subject].astype(float) - ref.image[subject]
    assert np.all(shift == 25)  # trunc(v + 25.5) for unclipped v
    assert (brighter.image[background] == 255).all()  # white stays white when alpha + beta >= 1

    flatter = augment_reference(ref, settings, alpha=0.8, beta=-0.1)
    np.testing.assert_array_equal(flatter.mask, ref.mask)
    assert flatter.image[subject].std() == pytest.approx(0.8 * ref.image[subject].std(), rel=0.02)
    assert (flatter.image[background] == 178).all()  # trunc(255 * 0.8 - 25.5): upstream greys the background too
    assert not np.array_equal(flatter.detail, ref.detail)  # the collage's detail comes from the augmented image
    np.testing.assert_array_equal(flatter.detail, high_frequency_map(flatter.image, flatter.mask, settings))

    mirrored = augment_reference(ref, settings, flip=True)
    np.testing.assert_array_equal(mirrored.mask, ref.mask[:, ::-1])
    np.testing.assert_array_equal(mirrored.image, ref.image[:, ::-1])
    assert augment_reference(ref, settings) is ref


def test_the_trainer_applies_brightness_contrast_to_the_reference():
    frames, masks = _frames(3, size=96)

    def reference(probability):
        config = StoryAnyDoorTrainingConfig(flip_probability=0.0, brightness_contrast_probability=probability)
        image = PairSampler(frames, masks, config, 64, 56).batch(0, 1)["reference"][0]
        return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    plain, changed = reference(0.0), reference(1.0)
    assert not np.array_equal(plain, changed)
    # one lookup table for every pixel: each input value maps to one output value, linear within the limits
    pairs = np.unique(np.stack([plain.ravel(), changed.ravel()], 1), axis=0)
    assert len(pairs) == len(np.unique(pairs[:, 0]))
    inside = pairs[(pairs[:, 1] > 0) & (pairs[:, 1] < 255)].astype(float)
    alpha, offset = np.polyfit(inside[:, 0], inside[:, 1], 1)
    assert 0.8 - 0.01 <= alpha <= 1.2 + 0.01 and -0.2 * 255 - 1 <= offset <= 0.2 * 255 + 1


# ---------------------------------------------------------------------- presets and fine-tune files


def test_presets():
    paper = StoryAnyDoorTrainingConfig.preset("paper")
    assert paper == StoryAnyDoorTrainingConfig()
    assert (paper.steps, paper.learning_rate, paper.use_lora) == (20_000, 1e-5, False)
    quick = StoryAnyDoorTrainingConfig.preset("quick", seed=4)
    assert (quick.use_lora, quick.lora_rank, quick.learning_rate, quick.steps, quick.seed) == (True, 16, 1e-4, 1000, 4)
    assert quick.to_dict()["reference_margin"] == [1.1, 1.5]
    with pytest.raises(InputError, match="preset"):
        StoryAnyDoorTrainingConfig.preset("slow")


def _redraw(pipe):
    frames, masks = _frames(2, size=96)
    return pipe.redraw(frames[0], masks[0], frames[1], masks[1], seed=0, show_progress=False)


def test_apply_finetune_reproduces_the_trained_pipeline(fresh_pipe, tmp_path):
    trained = fresh_pipe()
    trainer = StoryAnyDoorTrainer(trained, *_frames(), tmp_path / "run", _settings())
    trainer.train(show_progress=False)
    path = trainer.save_finetune(tmp_path / "story_anydoor.safetensors")
    assert path.is_file() and not list(tmp_path.glob("*.tmp*"))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == set(trainer.params)  # only what trained

    fresh = apply_finetune(fresh_pipe(), path)
    for name in ("unet", "controlnet", "vae", "image_encoder"):
        module = getattr(fresh, name)
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    result = _redraw(fresh)
    # atol=1: the trained pipeline holds the weights the optimizer wrote in place, the fresh one the same
    # float32 values read back from the file into new tensors; on CPU the two can take different kernels
    # (memory layout, alignment) and round a few pixels the other way (3 of 27648 values by 1 on one machine).
    np.testing.assert_allclose(result.astype(int), _redraw(trained).astype(int), rtol=0, atol=1)
    assert not np.array_equal(result, _redraw(fresh_pipe()))


def test_apply_finetune_with_lora_and_refusals(fresh_pipe, tmp_path):
    from peft.tuners.lora import LoraLayer

    trained = fresh_pipe()
    trainer = StoryAnyDoorTrainer(trained, *_frames(), tmp_path / "run", _settings(use_lora=True, lora_rank=4))
    trainer.train(show_progress=False)
    path = trainer.save_finetune(tmp_path / "lora.safetensors")
    fresh = apply_finetune(fresh_pipe(), path)
    assert not any(isinstance(m, LoraLayer) for m in fresh.unet.modules())  # merged
    latents, hint = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 64, 64)
    context = torch.randn(1, 257, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict_noise(latents, 500, context, hint),
                                   trained.predict_noise(latents, 500, context, hint), atol=1e-5, rtol=1e-5)
    assert np.abs(_redraw(fresh).astype(int) - _redraw(trained)).max() <= 1

    other = tiny_config(context=16)
    other.sampling.latent_hw = (8, 8)
    wrong = tiny_pipeline(other)
    before = _snapshot(wrong)
    with pytest.raises(InputError, match="another AnyDoor model shape"):
        apply_finetune(wrong, path)
    assert not any(isinstance(m, LoraLayer) for m in wrong.unet.modules())  # refused before touching it
    after = _snapshot(wrong)
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    with pytest.raises(InputError, match="not a StoryAnyDoor fine-tune"):
        apply_finetune(fresh_pipe(), tmp_path / "run" / "checkpoint-2" / "trainable.safetensors")

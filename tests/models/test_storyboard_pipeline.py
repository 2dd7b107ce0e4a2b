"""The storyboard pipeline (paper, Fig. 3) on tiny random SDXL, Grounding DINO, SAM and AnyDoor: each
step's output, a redraw of one shot alone, the models loaded once for every call, a subject not found."""

import numpy as np
import pytest

from storyagent.errors import WeightsNotFoundError
from storyagent.models.anydoor import AnyDoorPipeline
from storyagent.models.langsam import LangSAMConfig, LangSAMPipeline
from storyagent.models.storyboard import StoryboardConfig, StoryboardPipeline, StoryboardSubject, default_identity
from storyagent.models.storydiffusion import StoryDiffusionConfig, StoryDiffusionPipeline

SIZE = 32
SHOTS = ["hops, pip on a sunny beach", "hops, pip in a dark forest", "hops, pip on a snowy hill"]


@pytest.fixture(scope="module")
def weights(tiny_sdxl_folder, tiny_langsam_weights, tiny_anydoor_folder):
    """The session's tiny weights (tests/conftest.py), as the pipeline's path arguments."""
    dino, sam = tiny_langsam_weights
    return dict(sdxl_path=tiny_sdxl_folder, dino_path=dino, sam_path=sam, anydoor_path=tiny_anydoor_folder)


def config(**langsam) -> StoryboardConfig:
    return StoryboardConfig(story=StoryDiffusionConfig(style="none"), langsam=LangSAMConfig(**langsam), width=SIZE,
                            height=SIZE, steps=2, num_identity=2)


def subject(redraw: bool = True) -> StoryboardSubject:
    image = np.full((24, 24, 3), 200, np.uint8)
    image[:12, :12] = (90, 60, 30)
    mask = np.zeros((24, 24), bool)
    mask[:12, :12] = True
    return StoryboardSubject("Pip, a rabbit", "rabbit", image if redraw else None, mask if redraw else None)


@pytest.fixture(scope="module")
def loads():
    return {"story": 0, "langsam": 0, "anydoor": 0}


@pytest.fixture(scope="module")
def pipe(weights, loads):
    mp = pytest.MonkeyPatch()
    for cls, name in ((StoryDiffusionPipeline, "story"), (LangSAMPipeline, "langsam"), (AnyDoorPipeline, "anydoor")):
        load = cls.from_pretrained.__func__

        def counted(klass, *args, _load=load, _name=name, **kwargs):
            loads[_name] += 1
            return _load(klass, *args, **kwargs)

        mp.setattr(cls, "from_pretrained", classmethod(counted))
    pipe = StoryboardPipeline.from_pretrained(config(box_threshold=0.0, text_threshold=0.0), removal="opencv",
                                              device="cpu", **weights)
    mp.undo()
    return pipe


def test_the_config_nests_the_families_configs_and_puts_its_own_settings_over_them():
    cfg = StoryboardConfig(width=64, height=48, steps=7, num_identity=2)
    story = cfg.story_config()
    assert (story.width, story.height, story.num_inference_steps, story.num_identity) == (64, 48, 7, 2)
    assert story.guidance_scale == StoryDiffusionConfig().guidance_scale, "StoryDiffusion's own default, not a copy"
    assert cfg.removal_config().num_inference_steps == 7 and cfg.langsam == LangSAMConfig()
    assert StoryboardConfig().story_config() == StoryDiffusionConfig()
    with pytest.raises(ValueError, match="multiple of 8"):
        StoryboardConfig(width=30)


def test_every_step_gives_its_output(pipe):
    results = pipe(SHOTS, subject(), [1, 2, 3], show_progress=False)
    assert [r.position for r in results] == [0, 1, 2] and [r.seed for r in results] == [1, 2, 3]
    for r in results:
        # 1. the initial storyboard, 2. the subject's mask in it
        assert r.initial.shape == (SIZE, SIZE, 3) and r.initial.dtype == np.uint8 and r.prompt
        assert r.found.found and r.found.mask.shape == (SIZE, SIZE)
        # 3. removal: only the grown hole is refilled
        hole = r.removal.mask
        assert hole.sum() >= r.found.mask.sum() and r.removal.method == "opencv"
        np.testing.assert_array_equal(r.removal.image[~hole], r.initial[~hole])
        # 4. redraw, 5. paste: the redrawn subject (its own mask) over the removal's background
        assert r.redrawn.shape == r.initial.shape and 0 < r.mask.sum() < r.mask.size
        np.testing.assert_array_equal(r.final[r.mask], r.redrawn[r.mask])
        np.testing.assert_array_equal(r.final[~r.mask], r.removal.image[~r.mask])
        assert r.picture is r.final and r.reason == ""


def test_the_models_are_loaded_once_for_every_call_and_a_shot_is_redrawn_alone(pipe, loads):
    seeds = [1, 2, 3]
    identity = default_identity(SHOTS, seeds, 2)
    whole = pipe(SHOTS, subject(), seeds, identity, show_progress=False)
    alone = pipe(SHOTS, subject(), seeds, identity, only=[1], show_progress=False)
    assert loads == {"story": 1, "langsam": 1, "anydoor": 1}, "each model family loaded once, for every call"
    assert [r.position for r in alone] == [1]
    np.testing.assert_array_equal(alone[0].initial, whole[1].initial)
    np.testing.assert_array_equal(alone[0].final, whole[1].final)


def test_without_a_reference_the_shot_stays_removed_and_keeps_the_drawn_subjects_mask(pipe):
    (r,) = pipe(SHOTS, subject(redraw=False), only=[0], show_progress=False)
    assert r.removal is not None and r.redrawn is None and r.final is None
    assert r.picture is r.initial and np.array_equal(r.mask, r.found.mask)


def test_a_subject_not_found_is_a_result_not_an_error(weights):
    pipe = StoryboardPipeline.from_pretrained(config(box_threshold=1.0), redraw=False, removal="opencv",
                                              device="cpu", **weights)
    results = pipe(SHOTS[:2], subject(), show_progress=False)
    assert [r.found.found for r in results] == [False, False] and [r.seed for r in results] == [0, 1]
    assert results[0].reason.startswith("no 'rabbit' found") and "keeps the initial picture" in results[0].reason
    assert results[0].removal is None and not results[0].mask.any() and results[0].picture is results[0].initial


def test_the_diffusion_removal_shares_sdxl(weights):
    pipe = StoryboardPipeline.from_pretrained(config(box_threshold=0.0), redraw=False, device="cpu",
                                              **{k: v for k, v in weights.items() if k != "anydoor_path"})
    assert pipe.remover.method == "diffusion" and pipe.remover.inpaint_pipe.unet is pipe.story.sdxl.unet
    (r,) = pipe(SHOTS, subject(), only=[2], show_progress=False)
    assert r.removal.method == "diffusion"


def test_missing_weights_fail_clearly(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch sdxl-base"):
        StoryboardPipeline.from_pretrained(StoryboardConfig(), device="cpu")

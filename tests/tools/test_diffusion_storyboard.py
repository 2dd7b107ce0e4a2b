"""The diffusion storyboard tool end to end with tiny random SDXL, Grounding DINO and SAM."""

import json

import numpy as np
import pytest
from PIL import Image

from storyagent.errors import WeightsNotFoundError
from storyagent.models.langsam.testing import save_tiny_grounding_dino, save_tiny_sam
from storyagent.models.storydiffusion.testing import tiny_sdxl
from storyagent.schemas import Region, Shot, StoryScript, Subject
from storyagent.tools.backends.diffusion_storyboard import (
    DiffusionStoryboardConfig,
    StoryboardModels,
    generate_storyboard_diffusion,
)
from storyagent.workspace import Workspace

SIZE = 32


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    tiny_sdxl().save_pretrained(root / "sdxl")
    return root / "sdxl", save_tiny_grounding_dino(root / "dino"), save_tiny_sam(root / "sam.pth")


def config(weights, **kw) -> DiffusionStoryboardConfig:
    sdxl, dino, sam = weights
    base = dict(sdxl_path=sdxl, dino_path=dino, sam_path=sam, width=SIZE, height=SIZE, steps=2, num_identity=2,
                style="none", removal="opencv", device="cpu")
    return DiffusionStoryboardConfig(**(base | kw))


def script(n: int = 3) -> StoryScript:
    places = ["a sunny beach", "a dark forest", "a snowy hill"]
    return StoryScript(title="Pip", logline="Pip travels.", shots=[
        Shot(index=i + 1, narration=f"line {i}", description=f"pip in {places[i]}", subject_action="hops",
             subject_region=Region.named("center"), background=places[i], shot_type="wide", camera_motion="static")
        for i in range(n)])


@pytest.fixture()
def subject(tmp_path):
    frames, masks = [], []
    for i, side in enumerate([6, 12]):
        frame = np.full((24, 24, 3), 200, np.uint8)
        frame[:side, :side] = (90, 60, 30)
        mask = np.zeros((24, 24), np.uint8)
        mask[:side, :side] = 255
        frames.append(tmp_path / f"f{i}.png")
        masks.append(tmp_path / f"m{i}.png")
        Image.fromarray(frame).save(frames[-1])
        Image.fromarray(mask).save(masks[-1])
    return Subject(name="Pip", class_word="rabbit", reference_media=[frames[0]], frames=frames, masks=masks)


def test_storyboard_files_records_manifest_and_redraw_hook(weights, subject, tmp_path):
    cfg = config(weights, box_threshold=0.0, text_threshold=0.0)
    ws = Workspace.open(tmp_path / "run", inputs={}, resume=False)
    calls = []

    def redraw(reference_image, reference_mask, target_image, target_mask, seed=0):
        calls.append((reference_mask.sum(), target_image.copy(), target_mask.copy(), seed))
        out = target_image.copy()
        out[target_mask] = reference_image[reference_mask].mean(0).astype(np.uint8)
        return out

    records = generate_storyboard_diffusion(script(), subject, ws.root, cfg, redraw=redraw, workspace=ws,
                                            show_progress=False).records
    assert [r.shot for r in records] == [1, 2, 3] and all(r.found for r in records)
    for r in records:
        initial = np.asarray(Image.open(ws.root / r.initial))
        hole = np.asarray(Image.open(ws.root / r.hole)) > 127
        removed = np.asarray(Image.open(ws.root / r.removed))
        assert initial.shape == removed.shape == (SIZE, SIZE, 3) and hole.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(removed[~hole], initial[~hole])  # only the hole was refilled
        assert r.final == f"storyboard/shot_{r.shot:02d}.png" and (ws.root / r.final).exists()
    # the redraw got the largest reference mask (12×12), the removed frame and its hole
    assert [c[0] for c in calls] == [144] * 3 and [c[3] for c in calls] == [1, 2, 3]
    np.testing.assert_array_equal(calls[0][1], np.asarray(Image.open(ws.root / records[0].removed)))
    np.testing.assert_array_equal(calls[0][2], np.asarray(Image.open(ws.root / records[0].hole)) > 127)
    manifest = json.loads((ws.root / "manifest.json").read_text())
    assert {"storyboard/shot_01_initial", "storyboard/shot_01_removed", "storyboard/shot_01"} <= set(manifest["artifacts"])
    saved = json.loads((ws.root / "storyboard/diffusion_storyboard.json").read_text())
    assert [s["shot"] for s in saved] == [1, 2, 3]


def test_the_redrawn_picture_keeps_the_removal_output_outside_the_new_subject(weights, subject, tmp_path):
    """AnyDoor regenerates its whole crop (here: noise over the entire frame); only the new subject
    (LangSAM's mask on the redrawn picture) is taken from it, every other pixel is the removal's."""
    cfg = config(weights, box_threshold=0.0, text_threshold=0.0)
    drawn = {}

    def redraw(reference_image, reference_mask, target_image, target_mask, seed=0):
        drawn[seed] = np.random.default_rng(seed).integers(0, 256, target_image.shape, dtype=np.uint8)
        return drawn[seed]

    records = generate_storyboard_diffusion(script(2), subject, tmp_path, cfg, redraw=redraw,
                                            show_progress=False).records
    for r in records:
        final = np.asarray(Image.open(tmp_path / r.final))
        mask = np.asarray(Image.open(tmp_path / r.mask)) > 127
        removed = np.asarray(Image.open(tmp_path / r.removed))
        assert 0 < mask.sum() < mask.size
        np.testing.assert_array_equal(final[~mask], removed[~mask])
        np.testing.assert_array_equal(final[mask], drawn[r.seed][mask])


def test_subject_not_found_is_reported_not_raised(weights, subject, tmp_path):
    cfg = config(weights, box_threshold=1.0)
    records = generate_storyboard_diffusion(script(2), subject, tmp_path / "run", cfg, show_progress=False).records
    assert [r.found for r in records] == [False, False]
    assert "shot 1: no 'rabbit' found" in records[0].reason
    assert records[0].hole is None and records[0].removed is None and records[0].final is None
    assert (tmp_path / "run" / records[0].initial).exists()


def test_models_load_through_the_real_loaders_and_are_reusable(weights, subject, tmp_path):
    cfg = config(weights, box_threshold=0.0, removal="auto", dtype="float32")
    models = StoryboardModels.load(cfg)
    assert models.remover.method == "diffusion"
    a = generate_storyboard_diffusion(script(2), subject, tmp_path / "a", cfg, models=models, show_progress=False).records
    b = generate_storyboard_diffusion(script(2), subject, tmp_path / "b", cfg, models=models, show_progress=False).records
    for ra, rb in zip(a, b):  # same seed, same pictures
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / ra.removed)),
                                      np.asarray(Image.open(tmp_path / "b" / rb.removed)))


def test_missing_weights_fail_clearly(tmp_path, monkeypatch, subject):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch sdxl-base"):
        generate_storyboard_diffusion(script(1), subject, tmp_path / "run", DiffusionStoryboardConfig(device="cpu"))

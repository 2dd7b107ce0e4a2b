"""Subject consistency without weights: the fallback descriptor scores the same subject alike by day and
by night (rendered by the real animatic renderer, through H.264 and the eval's flow-propagated masks),
still scores another subject lower, and is labelled as a fallback in the report."""

import cv2
import numpy as np
import pytest

from storyagent.eval.consistency import (
    ColorHistogramFeatures, LightingRobustFeatures, subject_consistency, subject_crops)
from storyagent.eval.flow import FarnebackFlow, propagate_mask
from storyagent.media import ReferenceMedia, load_reference, read_frames, write_video
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.schemas import Shot
from tests.support.media import disc_image
from tests.support.paths import PIP


def hue_turned(ref: ReferenceMedia) -> ReferenceMedia:
    """Another character: Pip's shape with its colours turned half-way round the hue circle (a blue fox)."""
    hsv = cv2.cvtColor(ref.frames[0], cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 90) % 180
    return ReferenceMedia(frames=[cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)], masks=list(ref.masks))


def disc() -> ReferenceMedia:
    img, mask = disc_image()
    return ReferenceMedia(frames=[img], masks=[mask])


def scene_scores(tmp_path, subject: ReferenceMedia, background: str, features) -> dict[str, float]:
    """Render a shot of `subject`, encode it, and score it against Pip the way `eval film` does."""
    ref = load_reference(PIP)
    ref_crops, ref_masks = subject_crops(ref.frames, list(ref.masks))
    shot = Shot(index=1, narration="Pip looks around.", description="d", subject_action="walks home",
                subject_region="center", background=background, shot_type="medium", camera_motion="pan left",
                duration=1.0)
    render = AnimaticPipeline(AnimaticConfig(width=192, height=128, fps=4))(shot, SubjectSprites.from_reference(subject))
    path = tmp_path / f"{abs(hash((background, id(subject))))}.mp4"
    write_video(path, render.frames, 4)
    frames = read_frames(path, 16)
    masks = propagate_mask(frames, render.storyboard_mask, FarnebackFlow())
    crops, crop_masks = subject_crops(frames, masks)
    return {f.name: float(subject_consistency(ref_crops, ref_masks, crops, crop_masks, f).mean()) for f in features}


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clips")
    feats = [LightingRobustFeatures(), ColorHistogramFeatures()]
    pip = load_reference(PIP)
    subjects = {"pip": pip, "blue fox": hue_turned(pip), "disc": disc()}
    return {(name, time): scene_scores(tmp, subj, f"a flowery meadow at {time}", feats)
            for name, subj in subjects.items() for time in ("noon", "night")}


def test_same_subject_scores_alike_by_day_and_by_night(scores):
    fb = LightingRobustFeatures.name
    day, night = scores[("pip", "noon")][fb], scores[("pip", "night")][fb]
    assert abs(day - night) < 0.15, (day, night)
    assert min(day, night) > 0.7
    # The scene really changes the subject's pixels: plain colour histograms fall apart at night.
    hist_day, hist_night = scores[("pip", "noon")]["color-hist"], scores[("pip", "night")]["color-hist"]
    assert hist_day - hist_night > 0.3, (hist_day, hist_night)


@pytest.mark.parametrize("other", ["blue fox", "disc"])
def test_a_different_subject_scores_clearly_lower(scores, other):
    fb = LightingRobustFeatures.name
    same = min(scores[("pip", "noon")][fb], scores[("pip", "night")][fb])
    for time in ("noon", "night"):
        assert scores[(other, time)][fb] < same - 0.1, (other, time, scores[(other, time)][fb], same)


def test_fallback_ignores_per_channel_light_and_mirroring():
    img, mask = disc_image()
    crops, masks = subject_crops([img], [mask])
    crop, m = crops[0], masks[0]
    feats = LightingRobustFeatures()
    night = np.clip(crop.astype(np.float32) * np.array([0.5, 0.6, 0.9]), 0, 255).astype(np.uint8)
    mirrored = np.ascontiguousarray(crop[:, ::-1])
    square = np.zeros_like(crop)
    square_mask = np.zeros(m.shape, bool)
    square_mask[10:-10, 10:-10] = True
    square[square_mask] = (230, 90, 40)  # the disc's colour, another shape
    emb = feats([crop, night, mirrored, square], [m, m, np.ascontiguousarray(m[:, ::-1]), square_mask])
    assert emb.shape[0] == 4 and torch_close(emb.norm(dim=1), 1.0)
    sims = (emb @ emb[0]).tolist()
    assert sims[1] > 0.97 and sims[2] > 0.97, sims
    assert sims[3] < sims[1] - 0.1, sims
    # No mask: the whole crop is described, still unit length.
    assert torch_close(feats([crop], [None]).norm(dim=1), 1.0)


def torch_close(t, value: float) -> bool:
    return bool(((t - value).abs() < 1e-5).all())


def test_report_labels_the_fallback(tmp_path):
    from storyagent.eval.protocols import EvalModels, FilmEval, write_film_report

    models = EvalModels.load(use_cache=False)
    assert [f.name for f in models.features] == [LightingRobustFeatures.name]
    assert any("weights-free stand-in for DINO" in n for n in models.notes)
    name = LightingRobustFeatures.name
    result = FilmEval("run", [{"Shot": 1, f"Subject ({name})": 0.9}, {"Shot": 2, f"Subject ({name})": 0.85}],
                      {f"Subject ({name})": 0.875, f"Inter-shot ({name})": 0.95},
                      {name: [np.array([0.9, 0.91]), np.array([0.84, 0.86])]}, models.notes)
    written = write_film_report(result, tmp_path)
    md = (tmp_path / "film_metrics.md").read_text()
    assert "Subject (fallback: lighting-normalised colour+shape)↑" in md
    assert {p.name for p in written} >= {"subject_per_shot_fallback.png", "subject_per_frame_fallback.png"}


def test_dino_replaces_the_fallback_when_its_weights_are_given(tiny_dinov2_folder):
    from storyagent.eval.protocols import EvalModels

    models = EvalModels.load(dino=str(tiny_dinov2_folder), use_cache=False)
    assert [f.name for f in models.features] == ["dino"]
    assert not any("fallback" in n and "Subject" in n for n in models.notes)

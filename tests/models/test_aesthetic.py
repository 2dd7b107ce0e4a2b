import numpy as np
import pytest
import torch

from storyagent.errors import InputError, UnsafeCheckpointError, WeightsNotFoundError
from storyagent.eval.observer import AestheticObserver
from storyagent.models.aesthetic import (
    PUBLISHED_HEAD_SHAPES, AestheticHead, AestheticHeadConfig, AestheticPredictor, convert_head_to_safetensors,
    load_head_state_dict)
from tests.support.eval import save_tiny_clip
from tests.support.model_tester import ModelTesterMixin
from tests.support.paths import cached_weights


def test_default_head_matches_published_key_names_and_shapes():
    head = AestheticHead()
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == PUBLISHED_HEAD_SHAPES
    # The linear head has no activations: it is one affine map of the embedding.
    head.eval()
    x, y = torch.randn(3, 768), torch.randn(3, 768)
    torch.testing.assert_close(head(x + y) - head(y), head(x) - head(torch.zeros(1, 768)).expand(3), atol=1e-4, rtol=1e-4)


def test_pth_round_trip_weights_only_and_safetensors(tmp_path):
    head = AestheticHead(AestheticHeadConfig(embed_dim=8, hidden_dims=(16, 8, 8, 4)))
    pth = tmp_path / "head.pth"
    torch.save(head.state_dict(), pth)
    loaded = AestheticHead.from_pretrained(pth)
    assert loaded.config.embed_dim == 8 and loaded.config.hidden_dims == (16, 8, 8, 4)
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), head.eval()(x))
    st = convert_head_to_safetensors(pth, tmp_path / "head.safetensors")
    torch.testing.assert_close(AestheticHead.from_pretrained(st)(x), head(x))
    assert set(load_head_state_dict(st)) == set(head.state_dict())


def test_pickle_with_code_is_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"layers.0.weight": torch.zeros(1), "obj": AestheticHeadConfig()}, bad)
    with pytest.raises(UnsafeCheckpointError):
        AestheticHead.from_pretrained(bad)


def test_predictor_embeds_normalises_and_scores(tmp_path):
    model = save_tiny_clip(tmp_path / "clip")
    head = AestheticHead(AestheticHeadConfig(embed_dim=8, hidden_dims=(16, 8, 8, 4)))
    torch.save(head.state_dict(), tmp_path / "head.pth")
    predictor = AestheticPredictor.from_pretrained(clip_path=tmp_path / "clip", head_path=tmp_path / "head.pth")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    scores = predictor(images, batch_size=2)
    assert len(scores) == 3
    # Independent path: the full CLIPModel's projected features, normalised, through the head.
    from transformers import CLIPImageProcessor
    from PIL import Image

    pixels = CLIPImageProcessor.from_pretrained(tmp_path / "clip")(images=[Image.fromarray(i) for i in images],
                                                                   return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=pixels)
        feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        expected = head.eval()(feats / feats.norm(dim=-1, keepdim=True))
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def predictor_files(tmp_path_factory):
    """A tiny CLIP folder and a head .pth: (clip folder, head file)."""
    root = tmp_path_factory.mktemp("aesthetic")
    save_tiny_clip(root / "clip")
    torch.save(AestheticHead(AestheticHeadConfig(embed_dim=8, hidden_dims=(16, 8, 8, 4))).state_dict(), root / "head.pth")
    return root / "clip", root / "head.pth"


class TestAestheticPredictorModel(ModelTesterMixin):
    """CLIP tower and head through save_pretrained/from_pretrained, half precision, unknown keys."""

    # The CLIP tower loads through transformers, which only reports weights it does not use.
    strict_weights = ("head/model.safetensors",)
    unknown_key_error = InputError

    @pytest.fixture
    def model(self, predictor_files):
        clip, head = predictor_files
        return AestheticPredictor.from_pretrained(clip_path=clip, head_path=head)

    def dummy_inputs(self):
        return {"images": [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)]}

    def save(self, model, folder):
        folder = model.save_pretrained(folder)
        assert (folder / "image_encoder").is_dir() and (folder / "head" / "model.safetensors").is_file()
        return folder

    def load(self, path, model):
        return AestheticPredictor.from_pretrained(path)

    def cast(self, model, dtype):
        model.vision_model.to(dtype=dtype)
        model.head.to(dtype=dtype)
        return model

    def modules(self, model):
        return [model.vision_model, model.head]


def test_missing_weights_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch"):
        AestheticPredictor.from_pretrained(clip_path=tmp_path / "nope", head_path=tmp_path / "nope.pth")


def test_observer_flags_frames_under_threshold():
    # A scorer whose answer is known: the mean brightness on a 0..10 scale.
    observer = AestheticObserver(scorer=lambda imgs: [float(i.mean()) / 25.5 for i in imgs])
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (200, 40, 150)]
    reviews = observer.review(frames, min_score=5.0)
    assert [(r.shot, r.ok) for r in reviews] == [(1, True), (2, False), (3, True)]
    assert reviews[1].score == pytest.approx(40 / 25.5)
    assert "redo shots [2]" in observer.feedback(reviews, 5.0)
    assert observer.feedback(observer.review({4: frames[0]}, 5.0), 5.0) == "good"


def test_observer_with_tiny_predictor(predictor_files):
    clip, head = predictor_files
    observer = AestheticObserver(clip_path=clip, head_path=head)
    frames = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)]
    scores = [r.score for r in observer.review(frames, 0.0)]
    threshold = (scores[0] + scores[1]) / 2
    assert sum(r.ok for r in observer.review(frames, threshold)) == 1


@pytest.mark.weights
def test_published_head_file_layout():
    path = cached_weights("laion-aesthetic-v2")
    state = load_head_state_dict(path)
    assert {k: tuple(v.shape) for k, v in state.items()} == PUBLISHED_HEAD_SHAPES


@pytest.mark.weights
def test_real_predictor_scores_on_the_ava_scale(pip_png):
    try:
        predictor = AestheticPredictor.from_pretrained()
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))
    from PIL import Image

    pip = np.asarray(Image.open(pip_png).convert("RGB"))
    noise = np.random.default_rng(0).integers(0, 256, pip.shape, dtype=np.uint8)
    pip_score, noise_score = predictor([pip, noise])
    assert 1.0 < noise_score < pip_score < 10.0

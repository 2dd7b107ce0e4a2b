"""LangSAM with a tiny random Grounding DINO and SAM: box → mask flow, thresholds, not found, resizing."""

import numpy as np
import pytest
import torch

from storyagent.errors import WeightsNotFoundError
from storyagent.models.langsam import (
    LangSAMConfig,
    LangSAMPipeline,
    SamConfig,
    SamSegmenter,
    build_sam,
    grounding_prompt,
    resize_mask,
)
from storyagent.models.langsam.testing import TINY_SAM
from storyagent.weights import load_state_dict
from tests.support.model_tester import DTYPES, ModelTesterMixin

H, W = 40, 72  # non-square on purpose: both models resize it, the results must come back at 40×72


@pytest.fixture()
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def raw_scores(pipe: LangSAMPipeline, image: np.ndarray, text: str):
    """The detector's own outputs, independent of our post-processing: per-query, per-token probabilities."""
    det = pipe.detector
    inputs = det.processor(images=[image], text=[grounding_prompt(text)], return_tensors="pt")
    with torch.no_grad():
        out = det.model(**inputs)
    probs = torch.sigmoid(out.logits[0])  # (queries, text tokens)
    cx, cy, bw, bh = out.pred_boxes[0].unbind(-1)
    boxes = torch.stack([(cx - bw / 2) * W, (cy - bh / 2) * H, (cx + bw / 2) * W, (cy + bh / 2) * H], -1)
    return probs, boxes, inputs["input_ids"][0], det.processor.tokenizer


def test_defaults_are_grounding_dinos_thresholds():
    cfg = LangSAMConfig()
    assert (cfg.box_threshold, cfg.text_threshold) == (0.3, 0.25)
    with pytest.raises(ValueError):
        LangSAMConfig(box_threshold=1.5)
    assert grounding_prompt("Grey Rabbit") == "grey rabbit."
    assert grounding_prompt("rabbit, toy.") == "rabbit. toy."


def test_box_to_mask_flow(tiny_langsam_weights, image):
    dino, sam = tiny_langsam_weights
    pipe = LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam, config=LangSAMConfig(box_threshold=0.0, text_threshold=0.0))
    seen = []
    pipe.segmenter.sam.prompt_encoder.register_forward_hook(lambda m, args, kw, out: seen.append(kw["boxes"].clone()),
                                                            with_kwargs=True)
    result = pipe([image], "rabbit")[0]
    probs, boxes, _, _ = raw_scores(pipe, image, "rabbit")
    best = int(probs.max(-1).values.argmax())
    assert result.found and result.reason == ""
    assert result.score == pytest.approx(float(probs[best].max()), abs=1e-5)
    expected_box = boxes[best].clone()
    expected_box[0::2] = expected_box[0::2].clamp(0, W)
    expected_box[1::2] = expected_box[1::2].clamp(0, H)
    np.testing.assert_allclose(result.box, expected_box.numpy(), atol=1e-3)
    # SAM got that box once, in its own input frame: 40×72 resized to 36×64 (longest side 64)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0][0].numpy(), expected_box.numpy() * np.array([64 / W, 36 / H] * 2), atol=1e-3)
    # and the returned mask is SAM's mask for it, at the image's own size
    direct = SamSegmenter(build_sam(TINY_SAM))
    direct.sam.load_state_dict(load_state_dict(sam))
    masks, ious = direct(image, np.array([result.box]))
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    np.testing.assert_array_equal(result.mask, masks[0])
    assert result.mask_score == pytest.approx(float(ious[0]), abs=1e-6)


def test_thresholds_filter_boxes_and_label_words(tiny_langsam_weights, image):
    dino, sam = tiny_langsam_weights
    pipe = LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam)
    probs, _, ids, tok = raw_scores(pipe, image, "grey rabbit")
    query_scores = probs.max(-1).values
    box_t = float(query_scores.median())
    text_t = float(probs[int(query_scores.argmax())][1:-1].median())
    pipe = LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam, config=LangSAMConfig(box_threshold=box_t, text_threshold=text_t))
    result = pipe([image], "grey rabbit")[0]
    assert result.candidates == int((query_scores > box_t).sum()) and 0 < result.candidates < len(query_scores)
    best = probs[int(query_scores.argmax())]
    words = [tok.decode([int(i)]) for i, p in zip(ids, best) if p > text_t and tok.decode([int(i)]) not in ".[CLS][SEP]"]
    assert result.label.split() == [w for w in words if w not in {"[CLS]", "[SEP]", "."}]


def test_not_found_is_a_result(tiny_langsam_weights, image):
    dino, sam = tiny_langsam_weights
    pipe = LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam, config=LangSAMConfig(box_threshold=1.0))
    calls = []
    pipe.segmenter.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    results = pipe([image, image[:20]], "rabbit")
    assert [r.found for r in results] == [False, False]
    assert results[0].mask.shape == (H, W) and not results[0].mask.any()
    assert results[1].mask.shape == (20, W)
    assert "no 'rabbit' found" in results[0].reason and "threshold 1.00" in results[0].reason
    assert results[0].box is None and not calls, "SAM is not run when nothing was detected"


def test_masks_resized_to_the_requested_size(tiny_langsam_weights, image):
    dino, sam = tiny_langsam_weights
    pipe = LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam, config=LangSAMConfig(box_threshold=0.0))
    own = pipe([image], "rabbit")[0]
    big = pipe([image], "rabbit", output_size=(2 * H, 2 * W))[0]
    assert big.mask.shape == (2 * H, 2 * W)
    np.testing.assert_array_equal(big.mask, own.mask.repeat(2, 0).repeat(2, 1))
    np.testing.assert_allclose(big.box, np.array(own.box) * 2, atol=1e-4)
    small = resize_mask(np.eye(8, dtype=bool), (4, 4))
    assert small.dtype == bool and small.shape == (4, 4)


@pytest.mark.parametrize("kind", ["vit_b", "vit_l", "vit_h"])
def test_sam_sizes_are_read_off_the_checkpoint(kind):
    arch = SamConfig.preset(kind)
    with torch.device("meta"):
        sd = build_sam(arch).state_dict()
    assert SamConfig.from_state_dict(sd) == arch


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch grounding-dino-base"):
        LangSAMPipeline.from_pretrained()
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch sam-vit-h"):
        SamSegmenter.from_pretrained()


class TestLangSAMModel(ModelTesterMixin):
    """Both models and the config through save_pretrained/from_pretrained, half precision, unknown keys."""

    # Grounding DINO loads through transformers, which only reports weights it does not use.
    strict_weights = ("sam/model.safetensors",)

    @pytest.fixture
    def model(self, tiny_langsam_weights):
        dino, sam = tiny_langsam_weights
        return LangSAMPipeline.from_pretrained(dino_path=dino, sam_path=sam, config=LangSAMConfig(box_threshold=0.0))

    def dummy_inputs(self):
        return {"image": np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)}

    def forward(self, model, inputs):
        return model([inputs["image"]], "rabbit")[0]  # mask, box, scores, label

    def load(self, path, model):
        return LangSAMPipeline.from_pretrained(path)  # config.json included

    def cast(self, model, dtype):
        model.detector.model.to(dtype=dtype)
        model.segmenter.sam.to(dtype=dtype)
        return model

    def modules(self, model):
        return [model.detector.model, model.segmenter.sam]

    @pytest.mark.xfail(raises=RuntimeError, strict=True,
                       reason="neither model runs in half precision yet: the detector and SAM's predictor feed "
                              "float32 inputs to the cast weights (storyagent/models/langsam does not cast them)")
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtype_cast_keeps_shapes_and_runs(self, model, dtype):
        super().test_dtype_cast_keeps_shapes_and_runs(model, dtype)

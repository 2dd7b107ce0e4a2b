"""Every metric against its reference implementation, on shared inputs and weights.

References: torchmetrics (SSIM, PSNR, LPIPS, Inception Score, CLIPScore) called in the test on the
same inputs; and committed parity fixtures (tests/support/fixtures/parity/*, each with a README naming the
upstream commit and how its numbers were made) from EvalCrafter (CLIP-score, CLIP-temp, flow score,
warping error), piergiaj/pytorch-i3d (I3D) and StyleGAN-V (FVD), all run outside this repository.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from storyagent.errors import InputError, UnsafeCheckpointError, WeightsNotFoundError
from storyagent.eval.clip_metrics import CLIPEncoder, clip_score, clip_temp
from storyagent.eval.consistency import (
    ColorHistogramFeatures, inter_shot_consistency, subject_consistency, subject_crops)
from storyagent.eval.flow import FarnebackFlow, RAFTFlow, flow_score, propagate_mask, warp, warping_error
from storyagent.eval.fvd import frechet_distance, fvd, gaussian_stats
from storyagent.eval.i3d import I3D, I3DConfig, load_i3d
from storyagent.eval.inception import inception_score, inception_score_and_std, load_inception
from storyagent.eval.lpips import LPIPS, lpips
from storyagent.eval.pixel import psnr, ssim

from tests.support.eval import (
    FixedLogits, as_tensor, grey_frames, noisy_video, seeded_i3d_state, seeded_raft_small, textured)

from tests.support.paths import FIXTURES

PARITY = FIXTURES / "parity"


def rel_close(value, expected, rel=1e-4):
    return abs(float(value) - float(expected)) <= rel * abs(float(expected))


# ---- SSIM / PSNR: torchmetrics ------------------------------------------------------------------

def test_ssim_and_psnr_equal_torchmetrics_and_identity():
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    noisy, clean = noisy_video(1)
    a, b = as_tensor(noisy), as_tensor(clean)
    # torchmetrics' Metric classes, one frame at a time, averaged: the per-frame protocol.
    ref_ssim = np.mean([float(StructuralSimilarityIndexMeasure(data_range=1.0)(a[i:i + 1], b[i:i + 1])) for i in range(3)])
    ref_psnr = np.mean([float(PeakSignalNoiseRatio(data_range=1.0)(a[i:i + 1], b[i:i + 1])) for i in range(3)])
    assert rel_close(ssim(noisy, clean), ref_ssim) and rel_close(psnr(noisy, clean), ref_psnr)
    # Independent cross-checks: scikit-image's PSNR is the same formula; its SSIM differs only at the border.
    assert rel_close(psnr(noisy, clean), np.mean([peak_signal_noise_ratio(y, x, data_range=255) for x, y in zip(noisy, clean)]))
    sk = np.mean([structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255, channel_axis=-1) for x, y in zip(noisy, clean)])
    assert ssim(noisy, clean) == pytest.approx(sk, abs=5e-3) and ssim(noisy, clean) < 0.99
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-6)
    assert psnr(clean, clean) == float("inf")  # not capped, as torchmetrics


# ---- LPIPS: torchmetrics' _LPIPS with the same weights --------------------------------------------

def test_lpips_equals_torchmetrics_with_shared_weights(tmp_path):
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    torch.manual_seed(0)
    # torchmetrics' LPIPS: its own v0.1 heads (shipped with it), a random AlexNet backbone.
    ref = _NoTrainLpips(pretrained=True, net="alex", pnet_rand=True).eval()
    backbone = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.net.state_dict().items()}
    torch.save(backbone, tmp_path / "alex.pth")  # torchvision's AlexNet layout
    ours = LPIPS("alex").load_weights(backbone=tmp_path / "alex.pth")  # heads: torchmetrics' file by default
    noisy, clean = noisy_video(3, h=64, w=64)
    a, b = as_tensor(noisy), as_tensor(clean)
    with torch.no_grad():
        expected = ref(a, b, normalize=True).flatten().mean()
    d = lpips(noisy, clean, ours)
    assert d > 0 and rel_close(d, expected)
    assert lpips(clean, clean, ours) == pytest.approx(0.0, abs=1e-7)
    # The lpips-package head layout loads to the same model.
    torch.save({f"lin{i}.model.1.weight": lin.weight.data for i, lin in enumerate(ours.lins)}, tmp_path / "heads.pth")
    loaded = LPIPS("alex").load_weights(tmp_path / "heads.pth", tmp_path / "alex.pth")
    assert rel_close(lpips(noisy, clean, loaded), expected)
    with pytest.raises(WeightsNotFoundError, match="backbone"):
        LPIPS("alex").load_weights(tmp_path / "heads.pth")
    with pytest.raises(WeightsNotFoundError):
        LPIPS("alex").load_weights(tmp_path / "missing.pth")


# ---- I3D and FVD: piergiaj/pytorch-i3d and StyleGAN-V fixtures -----------------------------------


def test_i3d_equals_pytorch_i3d_on_shared_weights():
    expected = load_file(PARITY / "i3d_fvd" / "expected.safetensors")["logits"]
    model = I3D().eval()
    model.load_state_dict(seeded_i3d_state(model.state_dict(), 0), strict=True)
    clip = torch.rand(1, 3, 9, 193, 193, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == expected.shape == (1, 400)
    assert float((logits - expected).abs().max()) <= 1e-4 * float(expected.abs().max())


def test_frechet_distance_equals_stylegan_v():
    fx = load_file(PARITY / "i3d_fvd" / "expected.safetensors")
    gen, real = fx["gen_features"].double().numpy(), fx["real_features"].double().numpy()
    assert rel_close(frechet_distance(*gaussian_stats(gen), *gaussian_stats(real)), fx["fvd"])
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 2, (4000, 3)) + np.array([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|² + 3·(1 + 4 - 2·2) = 1 + 3
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(4.0, rel=0.1)


def tiny_i3d():
    torch.manual_seed(0)
    model = I3D(I3DConfig(num_classes=8, width_mult=1 / 16)).eval()
    model.load_state_dict(seeded_i3d_state(model.state_dict(), 0))
    return model


def test_fvd_identity_refusals_and_loading(tmp_path):
    model = tiny_i3d()
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (17, 24, 24, 3), dtype=np.uint8) for _ in range(9)]  # 8 features: 9 clips needed
    other = [np.clip(c.astype(int) // 2 + 100, 0, 255).astype(np.uint8) for c in clips]
    kw = dict(size=(32, 32))
    assert fvd(clips, clips, model, **kw) == pytest.approx(0.0, abs=1e-6)
    d = fvd(clips, other, model, **kw)
    assert d > 1e-3
    with pytest.raises(InputError, match="at least 9 generated clips"):
        fvd(clips[:8], clips, model, **kw)
    with pytest.raises(InputError, match="at least 16 frames, but clip 2 has 15"):
        fvd(clips[:2] + [clips[2][:15]] + clips[3:], clips, model, **kw)
    # Only the first 16 frames count (StyleGAN-V's 16 consecutive frames), never a repetition.
    assert fvd([c[:16] for c in clips], other, model, **kw) == pytest.approx(d, rel=1e-6)
    torch.save(model.state_dict(), tmp_path / "i3d.pt")
    loaded = load_i3d(tmp_path / "i3d.pt")
    assert loaded.config.num_classes == 8
    assert rel_close(fvd(clips, other, loaded, **kw), d)
    with pytest.raises(WeightsNotFoundError, match="I3D"):
        load_i3d(tmp_path / "nope.pt")


def test_full_size_i3d_key_layout():
    keys = I3D().state_dict()
    assert tuple(keys["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(keys["Mixed_5c.b1b.conv3d.weight"].shape) == (384, 192, 3, 3, 3)
    assert tuple(keys["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1)
    assert "logits.conv3d.bias" in keys and "Mixed_3b.b0.bn.running_var" in keys


# ---- Inception Score: torchmetrics over all frames pooled -----------------------------------------


def test_inception_score_equals_its_definition_with_torchmetrics_splits():
    rng = np.random.default_rng(0)
    videos = [grey_frames(rng.integers(0, 256, 7)) for _ in range(3)]  # 21 frames over 3 films
    net = FixedLogits().eval()
    score, _ = inception_score_and_std(videos, net, splits=10, size=(8, 8), seed=3)
    # Independent: torchmetrics' procedure written out (shuffle with the seed, 10 chunks, exp E KL).
    from storyagent.eval.inception import class_probabilities

    probs = class_probabilities(torch.cat([as_tensor(list(v)) for v in videos]), net, size=(8, 8)).double()
    torch.manual_seed(3)
    probs = probs[torch.randperm(len(probs))]
    parts = []
    for p in probs.chunk(10):
        kl = (p * (p.clamp_min(1e-30).log() - p.mean(0, keepdim=True).log())).sum(1)
        parts.append(float(kl.mean().exp()))
    assert rel_close(score, np.mean(parts))
    # Pooled over films, not per film: the same frames as one video give the same score.
    assert rel_close(inception_score([np.concatenate(videos)], net, splits=10, size=(8, 8), seed=3), score)
    with pytest.raises(InputError, match="at least 10 frames"):
        inception_score([videos[0]], net, splits=10, size=(8, 8))


def test_inception_score_known_answers():
    net = FixedLogits(k=5, sharpness=200.0).eval()
    certain = [grey_frames([0, 64, 128, 191, 255] * 4)]  # each class equally often, each prediction sure
    assert inception_score(certain, net, splits=1, size=(8, 8)) == pytest.approx(5.0, rel=1e-3)
    assert inception_score([grey_frames([90] * 20)], FixedLogits(k=5, sharpness=0.0), splits=2,
                           size=(8, 8)) == pytest.approx(1.0, abs=1e-6)


def test_inception_score_through_torchvision_inception_and_loader(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True).eval()
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    loaded = load_inception(tmp_path / "inception.pth")
    videos = [np.random.default_rng(i).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for i in range(2)]
    score = inception_score(videos, loaded, splits=2, size=(75, 75))
    assert rel_close(score, inception_score(videos, net, splits=2, size=(75, 75)))
    assert 1.0 <= score <= 2.0  # at most the frames per split
    torch.save({"fc.weight": net.fc.weight, "note": object()}, tmp_path / "bad.pth")
    with pytest.raises(UnsafeCheckpointError):
        load_inception(tmp_path / "bad.pth")
    with pytest.raises(WeightsNotFoundError, match="Inception"):
        load_inception(tmp_path / "nope.pth")


# ---- CLIP-score and CLIP-temp: EvalCrafter fixture and torchmetrics' CLIPScore ---------------------

CLIP_FIXTURE = PARITY / "evalcrafter_clip"


def test_clip_score_and_clip_temp_equal_evalcrafter():
    fx = load_file(CLIP_FIXTURE / "expected.safetensors")
    text = json.loads((CLIP_FIXTURE / "inputs.json").read_text())["text"]
    enc = CLIPEncoder.from_pretrained(CLIP_FIXTURE / "model")
    frames = list(fx["frames"].numpy())
    assert rel_close(clip_score(frames, text, enc), fx["clip_score"])  # a plain cosine: may be negative
    temp = clip_temp(frames, enc)
    assert rel_close(temp, fx["clip_temp"]) and rel_close(1 - temp, 1 - fx["clip_temp"], rel=1e-2)
    assert clip_temp([frames[0]] * 3, enc) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="protocol"):
        clip_score(frames, text, enc, protocol="x100")


def test_clip_score_torchmetrics_protocol_equals_clipscore():
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    def load():
        model = CLIPModel.from_pretrained(CLIP_FIXTURE / "model")
        # torchmetrics 1.9 expects transformers 4's tensor from get_*_features; transformers 5 wraps it.
        image, text = model.get_image_features, model.get_text_features
        model.get_image_features = lambda *a, **k: image(*a, **k).pooler_output
        model.get_text_features = lambda *a, **k: text(*a, **k).pooler_output
        return model, CLIPProcessor.from_pretrained(CLIP_FIXTURE / "model")

    metric = CLIPScore(model_name_or_path=load)
    enc = CLIPEncoder.from_pretrained(CLIP_FIXTURE / "model")
    frames = list(load_file(CLIP_FIXTURE / "expected.safetensors")["frames"].numpy())
    images = [torch.from_numpy(f).permute(2, 0, 1) for f in frames]
    for text in ("a girl runs", "green hills"):  # a positive mean, and a negative one torchmetrics clamps
        metric.reset()
        expected = float(metric(images, [text] * len(images))) / 100
        assert clip_score(frames, text, enc, protocol="torchmetrics") == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_clip_missing_weights_fail_clearly(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch"):
        CLIPEncoder.from_pretrained(tmp_path / "nothing", name="clip-vit-b-32")


# ---- flow score and warping error: EvalCrafter fixture; Farnebäck fallback ------------------------


def test_flow_score_and_warping_error_equal_evalcrafter():
    fx = load_file(PARITY / "evalcrafter_flow" / "expected.safetensors")
    frames = list(fx["frames"].numpy())
    est = RAFTFlow(seeded_raft_small(0))
    assert est.iterations == 20  # EvalCrafter's iters=20
    assert rel_close(flow_score(frames, est), fx["flow_score"])
    assert rel_close(warping_error(frames, est), fx["warping_error"])
    assert float(fx["warping_error"]) > 0.01  # the fixture's flicker is seen: not a degenerate all-occluded case


def shifted_video(step, n=5, h=48, w=64):
    big = textured(h, w + step * n + 8, 7)
    return [big[:, 4 + i * step:4 + i * step + w] for i in range(n)]  # content moves left by `step` px/frame


def test_farneback_fallback_flow_score_of_known_translation():
    flow = FarnebackFlow()
    assert flow_score(shifted_video(0), flow) < 0.02
    for step in (2, 3):
        assert flow_score(shifted_video(step), flow) == pytest.approx(step, rel=0.15)


def test_farneback_fallback_warping_error_static_zero_and_rises_with_flicker():
    flow = FarnebackFlow()
    base = textured(96, 128, 3)
    assert warping_error([base] * 4, flow) == pytest.approx(0.0, abs=1e-6)
    errors = []
    for amp in (10, 30, 60):
        flicker = [np.clip(base.astype(int) + (amp if i % 2 else -amp), 0, 255).astype(np.uint8) for i in range(4)]
        errors.append(warping_error(flicker, flow))
    assert 0 < errors[0] < errors[1] < errors[2]


def test_warp_moves_pixels_by_the_flow():
    img = torch.from_numpy(textured(16, 16, 1)).permute(2, 0, 1)[None].float() / 255
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0
    out = warp(img, flow)
    torch.testing.assert_close(out[..., :, :-2], img[..., :, 2:])


def test_raft_estimator_shapes_and_loading(tmp_path):
    torch.save(seeded_raft_small(0).state_dict(), tmp_path / "raft_small.pth")
    est = RAFTFlow.from_file(tmp_path / "raft_small.pth", small=True)
    est.iterations = 2
    video = [textured(36, 44, s) for s in range(3)]  # not a multiple of 8 and under 128 px: padded, cropped back
    assert np.isfinite(flow_score(video, est))
    a = as_tensor(video[:2])
    assert est(a[:1], a[1:]).shape == (1, 2, 36, 44)
    with pytest.raises(WeightsNotFoundError):
        RAFTFlow.from_file(tmp_path / "none.pth")


def test_propagate_mask_follows_translation():
    video = shifted_video(3, n=4)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    masks = propagate_mask(video, mask, FarnebackFlow())
    xs = np.nonzero(masks[-1])[1]
    assert xs.mean() == pytest.approx(30 - 9, abs=2.0)  # moved left by 3 px per frame


# ---- subject consistency ---------------------------------------------------------------------

def test_subject_consistency_prefers_the_true_subject():
    feats = ColorHistogramFeatures()
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    blue = red[..., ::-1].copy()
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    frame_red = textured(64, 64, 1)
    frame_red[16:48, 16:48] = red
    frame_blue = frame_red.copy()
    frame_blue[16:48, 16:48] = blue
    frame_mask = np.zeros((64, 64), bool)
    frame_mask[16:48, 16:48] = True
    crops, crop_masks = subject_crops([frame_red, frame_blue], [frame_mask, frame_mask])
    scores = subject_consistency([red], [mask], crops, crop_masks, feats)
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1] < 0.5
    same, matrix = inter_shot_consistency([feats([red], [None]), feats([red], [None])])
    assert same == pytest.approx(1.0, abs=1e-6) and matrix.shape == (2, 2)
    mixed, _ = inter_shot_consistency([feats([red], [None]), feats([blue], [None])])
    assert mixed < same


def test_dino_features_from_a_saved_tiny_dinov2(tiny_dinov2_folder):
    from storyagent.eval.consistency import DINOFeatures

    feats = DINOFeatures.from_pretrained(tiny_dinov2_folder)
    a, b = textured(40, 40, 1), textured(40, 40, 2)
    emb = feats([a, a, b], [None] * 3)
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    scores = subject_consistency([a], [None], [a, b], [None, None], feats)
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1] < scores[0]



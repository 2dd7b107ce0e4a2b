import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from storyagent.errors import UnsafeCheckpointError, WeightsNotFoundError
from storyagent.eval.clip_metrics import CLIPEncoder, clip_score, clip_temp
from storyagent.eval.consistency import (
    ColorHistogramFeatures, inter_shot_consistency, subject_consistency, subject_crops)
from storyagent.eval.flow import FarnebackFlow, RAFTFlow, flow_score, propagate_mask, warp, warping_error
from storyagent.eval.fvd import frechet_distance, fvd, gaussian_stats
from storyagent.eval.i3d import I3D, I3DConfig, load_i3d
from storyagent.eval.inception import inception_score, inception_score_from_probs, load_inception
from storyagent.eval.lpips import LPIPS, lpips
from storyagent.eval.pixel import psnr, ssim


def textured(h, w, seed=0):
    """A smooth random texture (blurred noise): trackable by optical flow, unlike white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 2.0) * 2.5 - 190, 0, 255).astype(np.uint8)


def noisy_video(seed, t=3, h=40, w=48, noise=20):
    rng = np.random.default_rng(seed)
    base = [textured(h, w, seed + i) for i in range(t)]
    return [np.clip(f.astype(int) + rng.integers(-noise, noise + 1, f.shape), 0, 255).astype(np.uint8) for f in base], base


# ---- SSIM / PSNR against scikit-image ----------------------------------------------------------

def test_ssim_matches_scikit_image():
    noisy, clean = noisy_video(1)
    expected = np.mean([structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=255, channel_axis=-1) for a, b in zip(noisy, clean)])
    assert ssim(noisy, clean) == pytest.approx(expected, abs=1e-5)
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-6)


def test_psnr_matches_scikit_image():
    noisy, clean = noisy_video(2)
    expected = np.mean([peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(noisy, clean)])
    assert psnr(noisy, clean) == pytest.approx(expected, abs=1e-4)
    assert psnr(clean, clean) == float("inf")


# ---- LPIPS -----------------------------------------------------------------------------------

def test_lpips_identical_is_zero_and_weights_load(tmp_path):
    torch.manual_seed(0)
    model = LPIPS("alex")
    for lin in model.lins:  # the real heads are non-negative
        lin.weight.data.abs_()
    noisy, clean = noisy_video(3, h=64, w=64)
    assert lpips(clean, clean, model) == pytest.approx(0.0, abs=1e-7)
    d = lpips(noisy, clean, model)
    assert d > 0
    assert lpips(clean, noisy, model) == pytest.approx(d, rel=1e-5)  # symmetric
    # Load through the real path: torchvision backbone + lpips-package head layout.
    torch.save({k: v for k, v in model.state_dict().items() if k.startswith("features.")}, tmp_path / "alex.pth")
    torch.save({f"lin{i}.model.1.weight": lin.weight.data for i, lin in enumerate(model.lins)}, tmp_path / "heads.pth")
    loaded = LPIPS("alex").load_weights(tmp_path / "heads.pth", tmp_path / "alex.pth")
    assert lpips(noisy, clean, loaded) == pytest.approx(d, rel=1e-5)
    with pytest.raises(WeightsNotFoundError, match="backbone"):
        LPIPS("alex").load_weights(tmp_path / "heads.pth")
    with pytest.raises(WeightsNotFoundError):
        LPIPS("alex").load_weights(tmp_path / "missing.pth")


# ---- FVD -------------------------------------------------------------------------------------

def test_frechet_distance_of_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 2, (4000, 3)) + np.array([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|² + 3·(1 + 4 - 2·2) = 1 + 3
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(4.0, rel=0.1)


def test_fvd_of_a_set_with_itself_is_zero_and_i3d_round_trips(tmp_path):
    torch.manual_seed(0)
    model = I3D(I3DConfig(num_classes=8, width_mult=1 / 16)).eval()
    for m in model.modules():  # variance-preserving init, so random features do not vanish through ~20 layers
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8) for _ in range(4)]
    other = [np.clip(c.astype(int) // 2 + 100, 0, 255).astype(np.uint8) for c in clips]
    kw = dict(size=(32, 32))
    assert fvd(clips, clips, model, **kw) == pytest.approx(0.0, abs=1e-6)
    assert fvd(clips, other, model, **kw) > 1e-3
    torch.save(model.state_dict(), tmp_path / "i3d.pt")
    loaded = load_i3d(tmp_path / "i3d.pt")
    assert loaded.config.num_classes == 8
    assert fvd(clips, other, loaded, **kw) == pytest.approx(fvd(clips, other, model, **kw), rel=1e-4)
    with pytest.raises(WeightsNotFoundError, match="I3D"):
        load_i3d(tmp_path / "nope.pt")


def test_full_size_i3d_key_layout():
    keys = I3D().state_dict()
    assert tuple(keys["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(keys["Mixed_5c.b1b.conv3d.weight"].shape) == (384, 192, 3, 3, 3)
    assert tuple(keys["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1)
    assert "logits.conv3d.bias" in keys and "Mixed_3b.b0.bn.running_var" in keys


# ---- Inception Score -------------------------------------------------------------------------

def test_inception_score_known_answers():
    k = 5
    assert inception_score_from_probs(torch.full((20, k), 1 / k), splits=2)[0] == pytest.approx(1.0)
    one_hot = torch.eye(k).repeat(4, 1)  # every class equally often, each prediction certain
    assert inception_score_from_probs(one_hot, splits=1)[0] == pytest.approx(k, rel=1e-6)


def test_inception_score_through_classifier_and_loader(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True).eval()
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    loaded = load_inception(tmp_path / "inception.pth")
    videos = [np.random.default_rng(i).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for i in range(2)]
    score = inception_score(videos, loaded, splits=1, size=(75, 75))
    assert score == pytest.approx(inception_score(videos, net, splits=1, size=(75, 75)), rel=1e-5)
    assert 1.0 <= score <= 4.0  # at most the number of frames
    torch.save({"fc.weight": net.fc.weight, "note": object()}, tmp_path / "bad.pth")
    with pytest.raises(UnsafeCheckpointError):
        load_inception(tmp_path / "bad.pth")


# ---- CLIP-score and CLIP-temp ------------------------------------------------------------------

def tiny_clip_encoder(tmp_path):
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    folder = tmp_path / "clip"
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return CLIPEncoder.from_pretrained(folder)


def test_clip_temp_and_clip_score(tmp_path):
    enc = tiny_clip_encoder(tmp_path)
    frame = textured(32, 32, 5)
    assert clip_temp([frame] * 4, enc) == pytest.approx(1.0, abs=1e-5)
    changing = [textured(32, 32, s) for s in range(4)]
    assert clip_temp(changing, enc) < 1.0 - 1e-4
    # Independent computation of the score: the model's own projected features and cosine.
    text = "a red fox"
    img, txt = enc.embed_images([frame]), enc.embed_texts([text])
    expected = 100 * max(float(img @ txt.T), 0.0)
    assert clip_score([frame, frame], text, enc) == pytest.approx(expected, abs=1e-4)


def test_clip_missing_weights_fail_clearly(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="storyagent weights fetch"):
        CLIPEncoder.from_pretrained(tmp_path / "nothing")


# ---- warping error and flow score -------------------------------------------------------------

def shifted_video(step, n=5, h=48, w=64):
    big = textured(h, w + step * n + 8, 7)
    return [big[:, 4 + i * step:4 + i * step + w] for i in range(n)]  # content moves left by `step` px/frame


def test_flow_score_of_known_translation():
    flow = FarnebackFlow()
    assert flow_score(shifted_video(0), flow) < 0.02
    for step in (2, 3):
        assert flow_score(shifted_video(step), flow) == pytest.approx(step, rel=0.15)


def test_warping_error_static_zero_and_rises_with_flicker():
    flow = FarnebackFlow()
    base = textured(48, 64, 3)
    static = [base] * 4
    assert warping_error(static, flow) == pytest.approx(0.0, abs=1e-6)
    errors = []
    for amp in (10, 30, 60):
        flicker = [np.clip(base.astype(int) + (amp if i % 2 else -amp), 0, 255).astype(np.uint8) for i in range(4)]
        errors.append(warping_error(flicker, flow))
    assert 0 < errors[0] < errors[1] < errors[2]
    # A translating but otherwise unchanged clip is predicted well by the warped next frame.
    assert warping_error(shifted_video(2), flow) < errors[0]


def test_warp_moves_pixels_by_the_flow():
    img = torch.from_numpy(textured(16, 16, 1)).permute(2, 0, 1)[None].float() / 255
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0
    out = warp(img, flow)
    torch.testing.assert_close(out[..., :, :-2], img[..., :, 2:])


def test_raft_estimator_shapes_and_loading(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    net = raft_small(weights=None, progress=False).eval()
    torch.save(net.state_dict(), tmp_path / "raft_small.pth")
    est = RAFTFlow.from_file(tmp_path / "raft_small.pth", small=True)
    est.iterations = 2
    video = [textured(36, 44, s) for s in range(3)]  # not a multiple of 8: padded and cropped back
    assert np.isfinite(flow_score(video, est))
    a = torch.from_numpy(np.stack(video[:2])).permute(0, 3, 1, 2).float() / 255
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


def test_dino_features_from_a_saved_tiny_dinov2(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from storyagent.eval.consistency import DINOFeatures

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             patch_size=8, image_size=32)).save_pretrained(tmp_path / "dino")
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "dino")
    feats = DINOFeatures.from_pretrained(tmp_path / "dino")
    a, b = textured(40, 40, 1), textured(40, 40, 2)
    emb = feats([a, a, b], [None] * 3)
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    scores = subject_consistency([a], [None], [a, b], [None, None], feats)
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1] < scores[0]


def test_inception_missing_weights_fail_clearly(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="Inception"):
        load_inception(tmp_path / "nope.pth")

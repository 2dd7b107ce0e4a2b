"""Time (and CUDA peak memory) of every evaluation metric on one clip, with full-size models.

    python benchmarks/eval_speed.py              # full-size architectures, 16 frames at 256×256
    python benchmarks/eval_speed.py --tiny       # tiny models and frames: a smoke test on a laptop

Models carry random weights (same cost as trained ones); uses CUDA when available.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from storyagent.eval.clip_metrics import CLIPEncoder, clip_score, clip_temp
from storyagent.eval.flow import FarnebackFlow, RAFTFlow, flow_score, warping_error
from storyagent.eval.fvd import i3d_features
from storyagent.eval.i3d import I3D, I3DConfig
from storyagent.eval.inception import class_probabilities
from storyagent.eval.lpips import LPIPS, lpips
from storyagent.eval.pixel import psnr, ssim


def clip_encoder(tiny: bool, device: str) -> CLIPEncoder:
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        side, proj = 32, 16
    else:  # ViT-L/14 at 224 px, the aesthetic predictor's CLIP
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14)
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        side, proj = 224, 768
    cfg = CLIPConfig(text_config=dict(text, vocab_size=64, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                      pad_token_id=1), vision_config=vision, projection_dim=proj)
    model = CLIPModel(cfg).to(device)
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return CLIPEncoder(model, processor, CLIPTokenizer(vocab=vocab, merges=[]))


def timed(fn: Callable[[], object], device: str, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (kernel selection, lazy init)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return (time.perf_counter() - t) / repeats, mem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models and frames (CPU smoke test)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    side = 64 if args.tiny else args.size
    n = 4 if args.tiny else args.frames
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    video = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]
    other = [np.roll(f, 3, axis=1) for f in video]

    from torchvision.models import inception_v3
    from torchvision.models.optical_flow import raft_large, raft_small

    lp = LPIPS("alex").to(device)
    i3d = I3D(I3DConfig(width_mult=1 / 16 if args.tiny else 1.0)).to(device).eval()
    inception = inception_v3(weights=None, aux_logits=False, init_weights=False).to(device).eval()
    raft = RAFTFlow((raft_small if args.tiny else raft_large)(weights=None, progress=False).to(device),
                    iterations=2 if args.tiny else 12)
    clip = clip_encoder(args.tiny, device)
    frames_t = torch.from_numpy(np.stack(video)).permute(0, 3, 1, 2).float() / 255
    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("SSIM", "Gaussian 11×11", lambda: ssim(video, other)),
        ("PSNR", "-", lambda: psnr(video, other)),
        ("LPIPS", "AlexNet", lambda: lpips(video, other, lp)),
        ("FVD features", "I3D" + (" (1/16 width)" if args.tiny else ""),
         lambda: i3d_features([video], i3d, num_frames=min(16, len(video)), size=(32, 32) if args.tiny else (224, 224))),
        ("IS probabilities", "Inception-v3", lambda: class_probabilities(frames_t, inception, size=(75, 75) if args.tiny else (299, 299))),
        ("CLIP-score", "CLIP " + ("tiny" if args.tiny else "ViT-L/14"), lambda: clip_score(video, "a fox on a beach", clip)),
        ("CLIP-temp", "CLIP " + ("tiny" if args.tiny else "ViT-L/14"), lambda: clip_temp(video, clip)),
        ("Warping error", "Farnebäck", lambda: warping_error(video, FarnebackFlow())),
        ("Flow score", "Farnebäck", lambda: flow_score(video, FarnebackFlow())),
        ("Warping error", "RAFT-" + ("small" if args.tiny else "large"), lambda: warping_error(video, raft)),
        ("Flow score", "RAFT-" + ("small" if args.tiny else "large"), lambda: flow_score(video, raft)),
    ]
    table = Table(title=f"Evaluation metrics, one {n}-frame {side}×{side} clip, {device}")
    for col in ("metric", "model", "seconds", "frames/s", "peak CUDA MiB"):
        table.add_column(col, justify="left" if col in ("metric", "model") else "right")
    with torch.inference_mode():
        for name, model, fn in cases:
            sec, mem = timed(fn, device, args.repeats)
            table.add_row(name, model, f"{sec:.3f}", f"{n / sec:.1f}", "–" if mem != mem else f"{mem:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()

"""Shared inputs and seeded weights for the metric tests (the recipes the parity fixtures' READMEs describe)."""

import numpy as np
import torch

from storyagent.eval.clip_metrics import CLIPEncoder


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


def as_tensor(frames):
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255


def seeded_i3d_state(state, seed):
    """The weight recipe of tests/support/fixtures/parity/i3d_fvd/README.md (Kaiming-normal convs, identity BN)."""
    g = torch.Generator().manual_seed(seed)
    new = {}
    for k, v in sorted(state.items()):
        if k.endswith("num_batches_tracked"):
            new[k] = v
        elif k.endswith(("running_var", "bn.weight")):
            new[k] = torch.ones_like(v)
        elif k.endswith(("running_mean", "bn.bias")):
            new[k] = torch.zeros_like(v)
        elif v.ndim == 5:
            new[k] = torch.randn(v.shape, generator=g) * np.sqrt(2.0 / v[0].numel())
        else:
            new[k] = torch.randn(v.shape, generator=g) * 0.1
    return new


class FixedLogits(torch.nn.Module):
    """A 'classifier' whose logits are a function of each frame's mean colour: known class probabilities."""

    def __init__(self, k=5, sharpness=40.0):
        super().__init__()
        self.k, self.sharpness = k, sharpness
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x):
        level = x.mean(dim=(1, 2, 3))  # ImageNet-normalised mean, monotone in the frame's grey level
        centres = torch.linspace(float(level.min()), float(level.max()) + 1e-6, self.k)
        return -self.sharpness * (level[:, None] - centres[None]).abs() + self.anchor


def grey_frames(levels, size=8):
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in levels])


def save_tiny_dinov2(folder):
    """A tiny seeded DINOv2 (16-d) with its image processor, as the subject-consistency features load it."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             patch_size=8, image_size=32)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_tiny_clip(folder, projection_dim=8):
    """A tiny seeded CLIP (model, image processor and a letters-only tokenizer) saved to `folder`; returns the model."""
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
        projection_dim=projection_dim)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return model


def tiny_clip_encoder(tmp_path):
    """A tiny random CLIP saved to tmp_path/clip (model, image processor, tokenizer), and its encoder."""
    save_tiny_clip(tmp_path / "clip")
    return CLIPEncoder.from_pretrained(tmp_path / "clip")


def seeded_raft_small(seed=0):
    """The weight recipe of tests/support/fixtures/parity/evalcrafter_flow/README.md."""
    from torchvision.models.optical_flow import raft_small

    net = raft_small(weights=None, progress=False)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in sorted(net.state_dict().items()):
        if k.endswith("num_batches_tracked"):
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = torch.ones_like(v)
        elif v.ndim >= 2:
            state[k] = torch.randn(v.shape, generator=g) / np.sqrt(v[0].numel())
        elif k.endswith("bias"):
            state[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("running_mean"):
            state[k] = torch.zeros_like(v)
        else:
            state[k] = torch.ones_like(v)
    state["update_block.flow_head.conv2.weight"] *= 0.003
    state["update_block.flow_head.conv2.bias"] *= 0
    net.load_state_dict(state)
    return net.eval()

"""Background-agnostic augmentation: the subject, cut out by its masks, pasted onto other backgrounds.

One transform per clip (flip, scale, shift; the same for every frame so motion is kept) and one
background per clip: another reference frame, a flat colour, noise, or a procedural scene.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from storyagent.models.animatic.backgrounds import draw_background
from storyagent.models.lora_be.data import Clip

SCENES = ("a sunny meadow", "a forest at dusk", "a snowy mountain", "a town street", "a beach at noon",
          "a cosy room", "a desert at dawn", "outer space")


def fit_clip(clip: Clip, frames: int, height: int, width: int, start: int = 0) -> Clip:
    """`frames` consecutive frames from `start`, resized to cover and centre-cropped.

    A clip that runs out holds its last frame (a photo becomes a still video): wrapping around
    would put a cut between the last and the first frame.
    """
    t = clip.frames.shape[0]
    idx = [min(start + i, t - 1) for i in range(frames)]
    h, w = clip.frames.shape[1:3]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2

    def fit_masks(masks: np.ndarray) -> np.ndarray:
        out = [cv2.resize(masks[i].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for i in idx]
        return np.stack([m[top : top + height, left : left + width].astype(bool) for m in out])

    out_f = []
    for i in idx:
        f = cv2.resize(clip.frames[i], size, interpolation=cv2.INTER_AREA)
        out_f.append(f[top : top + height, left : left + width])
    return replace(clip, frames=np.stack(out_f), masks=fit_masks(clip.masks),
                   others={token: fit_masks(m) for token, m in clip.others.items()},
                   source_indices=[clip.source_indices[i] for i in idx],
                   mask_methods=[clip.mask_methods[i] for i in idx] if clip.mask_methods else [])


def random_background(rng: np.random.Generator, height: int, width: int, others: list[np.ndarray]) -> np.ndarray:
    kind = rng.choice(["reference", "colour", "noise", "scene"] if others else ["colour", "noise", "scene"])
    if kind == "reference":
        frame = others[int(rng.integers(len(others)))]
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if kind == "colour":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (height, width, 3)).copy()
    if kind == "noise":
        small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return draw_background(str(rng.choice(SCENES)), width, height, seed=int(rng.integers(1 << 30)))


def augment_clip(clip: Clip, rng: np.random.Generator, others: list[np.ndarray] | None = None,
                 max_scale: float = 0.15, max_shift: float = 0.1) -> Clip:
    """The subject of `clip` on a new background, flipped / scaled / shifted the same way in every frame."""
    t, h, w = clip.masks.shape
    flip = rng.random() < 0.5
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    dx, dy = rng.uniform(-max_shift, max_shift) * w, rng.uniform(-max_shift, max_shift) * h
    # Scale about the centre, then shift; a flip mirrors x first.
    affine = np.array([[scale * (-1 if flip else 1), 0, 0], [0, scale, 0]], dtype=np.float64)
    affine[0, 2] = w / 2 - affine[0, 0] * w / 2 + dx
    affine[1, 2] = h / 2 - scale * h / 2 + dy
    background = random_background(rng, h, w, others or []).astype(np.float32)
    frames, masks = [], []
    for f, m in zip(clip.frames, clip.masks):
        wf = cv2.warpAffine(f, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        wm = cv2.warpAffine(m.astype(np.float32), affine, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        alpha = wm[..., None]
        frames.append((wf * alpha + background * (1 - alpha)).round().clip(0, 255).astype(np.uint8))
        masks.append(wm > 0.5)
    others = {token: np.stack([cv2.warpAffine(m.astype(np.float32), affine, (w, h), flags=cv2.INTER_LINEAR,
                                              borderValue=0) > 0.5 for m in ms]) for token, ms in clip.others.items()}
    return replace(clip, frames=np.stack(frames), masks=np.stack(masks), others=others)


def composite_clip(clip: Clip, other: Clip, other_token: str, rng: np.random.Generator,
                   backgrounds: list[np.ndarray] | None = None, scale: tuple[float, float] = (0.55, 0.75)) -> Clip:
    """A two-character sample: `clip`'s subject and `other`'s (both already fitted to the same
    frames and size), each shrunk and moved into its own half of the frame (which half at random,
    maybe flipped), over a new background. One of them (at random) is nearer and hides the other
    where they overlap; each mask keeps only its character's visible pixels. `clip.masks` stay the
    first character's; `others[other_token]` are the second's. A still in the pair makes the
    sample a still (it shows no motion to learn)."""
    t, h, w = clip.masks.shape
    if other.masks.shape != (t, h, w):
        raise ValueError(f"composite of clips of shapes {clip.masks.shape} and {other.masks.shape}")
    sides = (0.25, 0.75) if rng.random() < 0.5 else (0.75, 0.25)
    layers = []
    for c, side in zip((clip, other), sides):
        s = rng.uniform(*scale)
        ys, xs = np.nonzero(c.masks.any(axis=0))
        cx, cy = (xs.mean(), ys.mean()) if len(xs) else (w / 2, h / 2)
        sx = -s if rng.random() < 0.5 else s
        # The subject's centre goes to the middle of its half, at its own height.
        affine = np.array([[sx, 0, side * w - sx * cx], [0, s, cy - s * cy]], dtype=np.float64)
        layers.append(([cv2.warpAffine(f, affine, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) for f in c.frames],
                       [cv2.warpAffine(m.astype(np.float32), affine, (w, h), flags=cv2.INTER_LINEAR) for m in c.masks]))
    front = int(rng.random() < 0.5)
    order = (1 - front, front)  # back first
    background = random_background(rng, h, w, backgrounds or []).astype(np.float32)
    frames, masks = [], ([], [])
    for i in range(t):
        out = background
        for k in order:
            alpha = layers[k][1][i][..., None]
            out = layers[k][0][i] * alpha + out * (1 - alpha)
        frames.append(out.round().clip(0, 255).astype(np.uint8))
        shown = [layers[k][1][i] > 0.5 for k in range(2)]
        masks[front].append(shown[front])
        masks[1 - front].append(shown[1 - front] & ~shown[front])
    return replace(clip, frames=np.stack(frames), masks=np.stack(masks[0]), others={other_token: np.stack(masks[1])},
                   still=clip.still or other.still)

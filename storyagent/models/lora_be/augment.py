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


SUBJECT_MARGIN = 0.05
"""Room kept around the subject's box inside a training crop, as a share of the box's longer side."""


def subject_window(shown: np.ndarray, height: int, width: int) -> tuple[tuple[int, int], int, int]:
    """Where a height x width training frame lies on a picture whose subject is `shown` (H, W bool, every
    frame's masks together): ((scaled width, scaled height), top, left) of the frame on the picture
    resized to that size (negative, or reaching past it: letterbox bars).

    The picture is resized to cover the frame, as upstream's `resize_center_crop`, and the frame
    sits in the middle, moved only as far as it takes to hold the whole subject (with a margin of
    `SUBJECT_MARGIN` where there is room). A subject taller or wider than the frame at that scale
    (a person in a portrait phone video cropped to 320x512) is shrunk until it fits with its
    margin, the rest of the frame filled with bars: the subject is never cut. Without a subject:
    the centre crop.
    """
    h, w = shown.shape
    cover = max(height / h, width / w)
    rows, cols = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if not len(rows):
        size = (max(width, round(w * cover)), max(height, round(h * cover)))
        return size, (size[1] - height) // 2, (size[0] - width) // 2
    box = (float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1))  # y0, y1, x0, x1
    margin = SUBJECT_MARGIN * max(box[1] - box[0], box[3] - box[2])
    bh, bw = box[1] - box[0], box[3] - box[2]
    scale = cover
    if height / bh < cover or width / bw < cover:
        # Too big to hold at the covering scale: shrunk until the subject and its margin fit.
        scale = min(height / (bh + 2 * margin), width / (bw + 2 * margin))
    if scale == cover:
        size = (max(width, round(w * cover)), max(height, round(h * cover)))  # the covering size, as ever
    else:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    offsets = []
    for full, target, source, lo, hi in ((size[1], height, h, *box[:2]), (size[0], width, w, *box[2:])):
        offset = (full - target) // 2  # centred (negative: bars on both sides)
        if full > target:
            k = full / source
            wide_lo, wide_hi = max(0.0, lo - margin) * k, min(float(source), hi + margin) * k
            a, b = (wide_lo, wide_hi) if wide_hi - wide_lo <= target else (lo * k, hi * k)
            # The least move from the centre that holds [a, b], kept on the picture.
            offset = min(max(offset, int(np.ceil(b - 1e-6)) - target), int(a))
            offset = min(max(offset, 0), full - target)
        offsets.append(offset)
    return size, offsets[0], offsets[1]


def take_window(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The height x width window of `image` at (top, left); where it reaches past the picture, black
    (False for a mask): letterbox bars, which the sampler's `image_fit="pad"` draws too."""
    h, w = image.shape[:2]
    pads = (max(0, -top), max(0, top + height - h), max(0, -left), max(0, left + width - w))
    if any(pads):
        image = cv2.copyMakeBorder(image, *pads, cv2.BORDER_CONSTANT, value=0)
        top, left = top + pads[0], left + pads[2]
    return image[top : top + height, left : left + width]


def fit_clip(clip: Clip, frames: int, height: int, width: int, start: int = 0) -> Clip:
    """`frames` consecutive frames from `start`, resized to cover and cropped around the subject.

    The crop is the centre one unless that would cut the subject (its masks, and any other cast
    character's, over these frames): then it moves to hold the subject, or, when even that cannot,
    the picture is shrunk until the subject fits and letterboxed (`subject_window`). One window for
    every frame, so the motion is kept.

    A clip that runs out holds its last frame (a photo becomes a still video): wrapping around
    would put a cut between the last and the first frame.
    """
    t = clip.frames.shape[0]
    idx = [min(start + i, t - 1) for i in range(frames)]
    shown = clip.masks[idx].any(axis=0)
    for masks in clip.others.values():
        shown = shown | masks[idx].any(axis=0)
    size, top, left = subject_window(shown, height, width)

    def fit_masks(masks: np.ndarray) -> np.ndarray:
        out = [cv2.resize(masks[i].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for i in idx]
        return np.stack([take_window(m, top, left, height, width).astype(bool) for m in out])

    out_f = [take_window(cv2.resize(clip.frames[i], size, interpolation=cv2.INTER_AREA), top, left, height, width)
             for i in idx]
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

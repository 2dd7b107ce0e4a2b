"""StoryAnyDoor's training pairs, drawn as upstream AnyDoor draws them (`datasets/base.py`,
`process_pairs`): which frames pair up, the crop ratios, the reference augmentation, the perturbed
target mask and the timestep bias of each pair."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Literal

import numpy as np
import torch

from storyagent.errors import InputError
from storyagent.models.anydoor.config import StoryAnyDoorTrainingConfig
from storyagent.models.anydoor.preprocessing import augment_reference, perturb_mask, prepare_reference, prepare_target

PairKind = Literal["video", "still", "multiview"]
"""How the two frames of a pair relate, after upstream's `dynamic` flag of each dataset:
two frames of one clip ("video", upstream 1: coarse videos), one photo with itself ("still",
upstream 0: static images), two different files of the subject ("multiview", upstream 2: fine
multi-view images)."""

TIMESTEP_RANGES: dict[str, tuple[float, float]] = {"video": (0.5, 1.0), "still": (0.0, 0.5),
                                                   "multiview": (0.0, 1.0)}
"""Share of the schedule each pair kind's biased timesteps come from (upstream `sample_timestep`)."""


def sample_timestep(rng: np.random.Generator, kind: PairKind, num_timesteps: int = 1000,
                    uniform_probability: float = 0.3) -> int:
    """One training timestep for a pair of `kind`: uniform over the schedule with
    `uniform_probability`, otherwise uniform over the kind's range (`TIMESTEP_RANGES`).

    Upstream states no reason; in effect video pairs, whose reference and target differ in pose,
    train mostly at the noisy steps that settle the layout, and still pairs (reference = target)
    at the clean steps that settle detail.
    """
    if rng.random() < uniform_probability:
        return int(rng.integers(num_timesteps))
    low, high = TIMESTEP_RANGES[kind]
    return int(rng.integers(int(num_timesteps * low), int(num_timesteps * high)))


def draw_ratio(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A crop ratio from `bounds` as upstream draws them (`randint(low * 10, high * 10) / 10`): a
    multiple of 0.1 in [low, high), or `low` when the range holds no other."""
    low, high = round(bounds[0] * 10), round(bounds[1] * 10)
    return (int(rng.integers(low, high)) if high > low else low) / 10


class PairSampler:
    """Reference/target pairs from one subject's frames and masks, as model-ready tensors.

    `sources` names each frame's file. A frame from a file with several frames (a video) is paired
    with another frame of that file; a frame that is its file's only one (a photo) is paired with
    any frame, itself included: with itself it is a still pair, with another file's frame a
    multi-view pair (see `PairKind`). Without `sources` all frames count as one clip and every
    pair is two different frames of it (one frame: itself). Upstream's video datasets also pair a
    frame with a later one at least a tenth of the clip away; with the few frames sampled from
    each of the user's clips, any other frame is that far, and the order makes no difference to
    the model. Upstream's dataset filters (mask area, connectivity, box size) are not applied: the
    user's frames are all there is to learn from.
    """

    def __init__(self, frames: list[np.ndarray], masks: list[np.ndarray], config: StoryAnyDoorTrainingConfig,
                 target_size: int, reference_size: int, sources: Sequence[str | os.PathLike[str]] | None = None,
                 num_timesteps: int = 1000) -> None:
        if len(frames) == 0 or len(frames) != len(masks):
            raise InputError("Fine-tuning needs at least one reference frame with a subject mask per frame.")
        if sources is not None and len(sources) != len(frames):
            raise InputError(f"Fine-tuning got {len(sources)} frame sources for {len(frames)} frames; "
                             "give one source file per frame.")
        self.frames, self.masks, self.config, self.num_timesteps = frames, masks, config, num_timesteps
        self.settings = replace(config.preprocess, target_size=target_size, reference_size=reference_size)
        keys = [os.fspath(s) for s in sources] if sources is not None else [""] * len(frames)
        files: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            files.setdefault(key, []).append(i)
        self.clip = [np.array(files[key]) for key in keys]  # the frames of frame i's file
        self.by_source = sources is not None

    def pair(self, rng: np.random.Generator) -> tuple[int, int, PairKind]:
        """(reference frame, target frame, kind) of one training pair."""
        i = int(rng.integers(len(self.frames)))
        clip = self.clip[i]
        if len(clip) > 1:
            others = clip[clip != i]
            return i, int(others[rng.integers(len(others))]), "video"
        if not self.by_source:
            return i, i, "still"
        j = int(rng.integers(len(self.frames)))
        return i, j, "still" if j == i else "multiview"

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        i, j, kind = self.pair(rng)
        settings = replace(self.settings, reference_margin=draw_ratio(rng, c.reference_margin))
        reference = prepare_reference(self.frames[i], self.masks[i], settings)
        flip = rng.random() < c.flip_probability
        alpha, beta = 1.0, 0.0
        if rng.random() < c.brightness_contrast_probability:
            alpha = 1.0 + rng.uniform(-c.contrast_limit, c.contrast_limit)
            beta = rng.uniform(-c.brightness_limit, c.brightness_limit)
        reference = augment_reference(reference, settings, flip=flip, alpha=alpha, beta=beta)
        region = None
        if rng.random() < c.perturbed_mask_probability:
            region = partial(perturb_mask, rng=rng, iou_range=c.perturbed_mask_iou)
        target = prepare_target(self.frames[j], self.masks[j], reference, settings,
                                box_expand=draw_ratio(rng, c.target_box_expand),
                                crop_expand=draw_ratio(rng, c.target_crop_expand), region_from_mask=region)
        t = sample_timestep(rng, kind, self.num_timesteps, c.uniform_timestep_probability)
        return {
            "reference": torch.from_numpy(reference.image).permute(2, 0, 1).float() / 255.0,  # (3, 224, 224)
            "hint": torch.from_numpy(target.hint).permute(2, 0, 1),  # (4, S, S)
            "target": torch.from_numpy(target.image).permute(2, 0, 1),  # (3, S, S) in [-1, 1]
            "timestep": torch.tensor(t, dtype=torch.long),
        }

    def batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, step])  # per-step stream: resume-exact
        items = [self.sample(rng) for _ in range(batch_size)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

"""What the storyboard needs for a shot with several characters (paper, Fig. 3, extended to a cast):
where the story puts each character (`Placement`), which of LangSAM's boxes is which character
(`assign_boxes`), and one AnyDoor wearing each character's own StoryAnyDoor fine-tune in turn
(`FinetuneSwitch`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PathLike = str | os.PathLike[str]
Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 (pixels, or fractions of the frame for a `Placement`)."""

DUPLICATE_IOU = 0.7
"""Two boxes overlapping this much are one thing seen twice (a "fox" box and a "dog" box on the same
animal): once a character has taken one, no other character takes the other."""


@dataclass(frozen=True)
class Placement:
    """One character in one shot: which member of the cast, and where the story puts it."""

    character: int
    """The character's position in the cast passed to the pipeline."""
    region: Box
    """Where the story puts it: x0, y0, x1, y1 as fractions (0..1) of the frame's width and height."""

    def pixels(self, size: tuple[int, int]) -> Box:
        """`region` in pixels of a (height, width) picture."""
        height, width = size
        x0, y0, x1, y1 = self.region
        return x0 * width, y0 * height, x1 * width, y1 * height


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance between the centres of two x0, y0, x1, y1 boxes."""
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))


def assign_boxes(regions: Sequence[Box], candidates: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[int | None]:
    """Which detected box is which character: for character k (story region `regions[k]`, in pixels)
    the index of its box among `candidates[k]` = (boxes N×4, scores N) found for its class word, or
    None when every box left is taken.

    Greedy over all (character, box) pairs, best match first: the pair whose box overlaps the
    character's region most (IoU), then whose centre is nearest the region's, then the detector's
    more confident box. A character takes one box; a box (or one overlapping it by `DUPLICATE_IOU`,
    the same thing found under another class word) goes to one character. So two foxes are told
    apart by where the story puts them, not by which one the detector likes better.
    """
    pairs = []
    for k, (region, (boxes, scores)) in enumerate(zip(regions, candidates)):
        for j, (box, score) in enumerate(zip(boxes, scores)):
            pairs.append((-box_iou(region, box), centre_distance(region, box), -float(score), k, j))
    pairs.sort()
    chosen: list[int | None] = [None] * len(regions)
    taken: list[np.ndarray] = []
    for *_, k, j in pairs:
        box = candidates[k][0][j]
        if chosen[k] is not None or any(box_iou(box, t) > DUPLICATE_IOU for t in taken):
            continue
        chosen[k] = j
        taken.append(box)
    return chosen


def finetune_parameters(path: PathLike) -> list[str]:
    """The AnyDoor parameters (named as `apply_finetune` names them: `controlnet.…`, `unet.…`) that the
    StoryAnyDoor fine-tune at `path` changes: its full tensors, and the base weights its LoRA pairs merge into."""
    from safetensors import safe_open

    from storyagent.models.anydoor.finetune import LORA_KEY

    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("storyagent", "{}"))
        keys = list(f.keys())
    if not info.get("use_lora"):
        return keys
    names = set()
    for key in keys:
        lora = LORA_KEY.match(key)
        names.add(lora.group(1) + ".weight" if lora else key)
    return sorted(names)


class FinetuneSwitch:
    """One AnyDoor, each character's StoryAnyDoor fine-tune put on in turn (`use`).

    A fine-tune is merged into the weights it is applied to (`apply_finetune`), so before the first
    one goes on, the loaded weights of exactly the parameters it changes are copied to the CPU, once;
    the next character's fine-tune goes onto those weights put back. The memory this costs is one
    copy of the parameters the fine-tunes train (LoRA: the attention projections; the paper's full
    fine-tune: the ControlNet and the UNet's decoder), not one AnyDoor per character; a switch costs
    reading one fine-tune file. The redraws are grouped by character, so a call switches at most
    once per character.
    """

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.current: Path | None = None
        """The fine-tune AnyDoor wears now; None: the weights it was loaded with."""
        self._loaded: dict[str, torch.Tensor] = {}

    def _parameters(self) -> dict[str, torch.nn.Parameter]:
        from storyagent.models.anydoor.finetune import MODULES

        return {f"{name}.{key}": param for name in MODULES for key, param in getattr(self.pipe, name).named_parameters()}

    def use(self, path: PathLike | None) -> None:
        """AnyDoor with the fine-tune at `path` on (None: as it was loaded)."""
        from storyagent.models.anydoor.finetune import apply_finetune

        wanted = Path(path) if path is not None else None
        if wanted == self.current:
            return
        self.restore()
        if wanted is None:
            return
        params = self._parameters()
        for name in finetune_parameters(wanted):
            if name not in self._loaded and name in params:  # an unknown name: apply_finetune refuses the file
                self._loaded[name] = params[name].detach().to("cpu", copy=True)
        apply_finetune(self.pipe, wanted)
        self.current = wanted

    def restore(self) -> None:
        """The loaded weights put back (the fine-tune taken off)."""
        if self.current is None:
            return
        params = self._parameters()
        with torch.no_grad():
            for name, value in self._loaded.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))
        # A merged LoRA leaves its config registered on the diffusers module, which would refuse the
        # next character's LoRA under the same adapter name; the layers themselves are gone.
        for module in (self.pipe.controlnet, self.pipe.unet):
            if getattr(module, "_hf_peft_config_loaded", False):
                module.__dict__.pop("peft_config", None)
                module._hf_peft_config_loaded = False
        self.current = None

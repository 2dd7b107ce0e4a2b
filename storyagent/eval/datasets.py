"""The paper's ground-truth protocol on story-visualisation datasets (PororoSV, FlintstonesSV).

For every ground-truth clip: (1) the subject is removed from the clip's first frame, which becomes
the initial storyboard; (2) the reference subject is redrawn into the freed region; (3) the
storyboard is animated; (4) the result is compared with the ground-truth clip: SSIM, PSNR,
LPIPS per clip and FVD over the set (the StoryAgent paper's Table 2 columns).

Steps 1–3 are one `ClipGenerator`. The built-in `StillCompositeBaseline` does them on a CPU with
no weights (OpenCV Telea inpainting, the reference cut-out pasted into the subject's box, held
still): a floor to compare methods against, not the paper's method. The paper's pipeline
(inpainting, StoryAnyDoor, DynamiCrafter with LoRA-BE) plugs in as another generator.

Layouts read:
- FlintstonesSV: `DIR/flintstones_annotations_v1-0.json` (a list of {globalID, description,
  characters: [{entityLabel, labelNPC, rectangles: [[x1, y1, x2, y2], ...]}]}) and
  `DIR/video_frames_sampled/<globalID>.npy` (T×H×W×3 uint8, 5×128×128 in the release). The
  subject is the character named by `--character`; its first rectangle (rescaled from the
  640×480 source video when it lies outside the frame), refined by GrabCut, is the subject mask.
- PororoSV: `DIR/pororo_png/<episode>/<n>.png`, each a clip stored as square frames stacked
  vertically; captions from `DIR/descriptions.csv` (`id,text` with id `<episode>/<n>`) when
  present; subject masks from `DIR/masks/<episode>/<n>.png` when present, else GrabCut.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from storyagent.errors import InputError
from storyagent.eval.frames import crop_to_box
from storyagent.eval.pixel import psnr, ssim
from storyagent.media import segment_subject
from storyagent.progress import make_progress


@dataclass
class GroundTruthClip:
    clip_id: str
    frames: list[np.ndarray]
    subject_mask: np.ndarray
    """Where the subject is in the first frame (bool H×W)."""
    text: str = ""


@dataclass
class SubjectReference:
    frames: list[np.ndarray]
    masks: list[np.ndarray]


ClipGenerator = Callable[[np.ndarray, np.ndarray, SubjectReference, str, int], list[np.ndarray]]
"""(first ground-truth frame, its subject mask, reference subject, caption, number of frames) -> frames."""


# ---- readers ----------------------------------------------------------------------------------

def _box_mask(shape: tuple[int, int], box: list[float], frame: np.ndarray | None = None) -> np.ndarray:
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    mask = np.zeros(shape, bool)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return mask
    mask[y0:y1, x0:x1] = True
    if frame is not None and (x1 - x0) * (y1 - y0) < 0.9 * h * w:
        # GrabCut inside the annotated box: the character's outline, not its rectangle.
        gc = np.zeros(shape, np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(frame, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 3, cv2.GC_INIT_WITH_RECT)
            refined = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))
            if refined.sum() > 0.1 * mask.sum():
                return refined
        except cv2.error:
            pass
    return mask


def read_flintstones(root: Path, character: str, limit: int | None = None) -> Iterator[GroundTruthClip]:
    ann_path = root / "flintstones_annotations_v1-0.json"
    if not ann_path.exists():
        raise InputError(f"{root} is not a FlintstonesSV folder: {ann_path.name} is missing.")
    annotations = json.loads(ann_path.read_text(encoding="utf-8"))
    wanted = character.strip().lower()
    count = 0
    for item in annotations:
        match = next((c for c in item.get("characters", [])
                      if wanted in (str(c.get("entityLabel", "")).lower(), str(c.get("labelNPC", "")).lower())
                      and c.get("rectangles")), None)
        frames_path = root / "video_frames_sampled" / f"{item['globalID']}.npy"
        if match is None or not frames_path.exists():
            continue
        frames = np.load(frames_path, allow_pickle=False)
        frames = [np.ascontiguousarray(f[..., :3]).astype(np.uint8) for f in frames]
        h, w = frames[0].shape[:2]
        box = [float(v) for v in match["rectangles"][0]]
        if max(box[0], box[2]) > w or max(box[1], box[3]) > h:
            # Boxes annotated on the source video (640×480) while the sampled frames are smaller.
            box = [box[0] * w / 640, box[1] * h / 480, box[2] * w / 640, box[3] * h / 480]
        mask = _box_mask((h, w), box, frames[0])
        if not mask.any():
            continue
        yield GroundTruthClip(item["globalID"], frames, mask, item.get("description", ""))
        count += 1
        if limit and count >= limit:
            return


def read_pororo(root: Path, limit: int | None = None) -> Iterator[GroundTruthClip]:
    png_root = root / "pororo_png"
    if not png_root.is_dir():
        raise InputError(f"{root} is not a PororoSV folder: pororo_png/ is missing.")
    captions: dict[str, str] = {}
    if (root / "descriptions.csv").exists():
        with (root / "descriptions.csv").open(encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) >= 2:
                    captions[row[0].removesuffix(".png")] = row[-1]
    count = 0
    for path in sorted(png_root.glob("*/*.png"), key=lambda p: (p.parent.name, _num(p.stem))):
        clip_id = f"{path.parent.name}/{path.stem}"
        strip = np.asarray(Image.open(path).convert("RGB"))
        side = strip.shape[1]
        frames = [strip[i * side:(i + 1) * side] for i in range(strip.shape[0] // side)]
        if not frames:
            continue
        mask_path = root / "masks" / path.parent.name / f"{path.stem}.png"
        if mask_path.exists():
            mask = np.asarray(Image.open(mask_path).convert("L").resize((side, side), Image.NEAREST)) > 127
        else:
            mask, _ = segment_subject(frames[0])
        if not mask.any() or mask.all():
            continue
        yield GroundTruthClip(clip_id, frames, mask, captions.get(clip_id, ""))
        count += 1
        if limit and count >= limit:
            return


def _num(stem: str) -> int | str:
    return int(stem) if stem.isdigit() else stem


# ---- the CPU baseline generator ----------------------------------------------------------------

@dataclass
class StillCompositeBaseline:
    """Remove (Telea inpainting), redraw (paste the reference cut-out into the subject's box), hold still."""

    name: str = "still-composite (CPU baseline)"
    dilate: int = field(default=3, metadata={"help": "Pixels the removal mask grows by, to take the outline too."})

    def __call__(self, first: np.ndarray, mask: np.ndarray, reference: SubjectReference, text: str,
                 num_frames: int) -> list[np.ndarray]:
        # 1. Remove the subject: the initial storyboard.
        hole = cv2.dilate(mask.astype(np.uint8), np.ones((2 * self.dilate + 1,) * 2, np.uint8))
        board = cv2.inpaint(first, hole, 5, cv2.INPAINT_TELEA)
        # 2. Redraw the reference subject into the subject's box, keeping its aspect ratio.
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sprite = crop_to_box(reference.frames[0], reference.masks[0], 0.0)
        alpha = crop_to_box(reference.masks[0].astype(np.float32), reference.masks[0], 0.0)
        scale = min((x1 - x0) / sprite.shape[1], (y1 - y0) / sprite.shape[0])
        size = (max(1, round(sprite.shape[1] * scale)), max(1, round(sprite.shape[0] * scale)))
        sprite, alpha = cv2.resize(sprite, size, interpolation=cv2.INTER_AREA), cv2.resize(alpha, size)[..., None]
        px, py = x0 + ((x1 - x0) - size[0]) // 2, y1 - size[1]
        region = board[py:py + size[1], px:px + size[0]].astype(np.float32)
        board[py:py + size[1], px:px + size[0]] = (region * (1 - alpha) + sprite * alpha).astype(np.uint8)
        # 3. "Animate": hold the storyboard for the clip's length.
        return [board.copy() for _ in range(num_frames)]


@dataclass
class DiffusionGenerator:
    """The paper's pipeline on a ground-truth clip: remove the subject (OpenCV inpainting), redraw
    the reference subject into the hole (AnyDoor), animate the storyboard with the caption
    (DynamiCrafter). Weights come from `storyagent.weights` (the `anydoor` and `dynamicrafter-512` entries)."""

    name: str = "StoryAgent (AnyDoor + DynamiCrafter)"
    steps: int | None = field(default=None, metadata={"help": "Denoising steps of both models (default: their own)."})
    seed: int = field(default=0, metadata={"help": "Seed of the redraw and the animation."})
    device: str = field(default="cpu", metadata={"help": "torch device for both models."})

    def __post_init__(self) -> None:
        from storyagent.models.anydoor import AnyDoorPipeline
        from storyagent.models.dynamicrafter import DynamiCrafterPipeline
        from storyagent.models.removal import SubjectRemover

        self.remover = SubjectRemover()
        self.anydoor = AnyDoorPipeline.from_pretrained(device=self.device)
        self.animator = DynamiCrafterPipeline.from_pretrained().to(self.device)

    def __call__(self, first: np.ndarray, mask: np.ndarray, reference: SubjectReference, text: str,
                 num_frames: int) -> list[np.ndarray]:
        import torch

        # 1. Remove the subject: the initial storyboard.
        removed = self.remover(first, mask, seed=self.seed)
        # 2. Redraw the reference subject into the hole.
        board = self.anydoor.redraw(reference.frames[0], reference.masks[0], removed.image, removed.mask,
                                    seed=self.seed, num_inference_steps=self.steps, show_progress=False)
        # 3. Animate, then match the ground truth's size and length.
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        video = self.animator(image=board, prompt=text or "a cartoon scene", num_inference_steps=self.steps or 50,
                              generator=generator, output_type="np", show_progress=False).frames[0]
        h, w = first.shape[:2]
        picks = np.linspace(0, len(video) - 1, num_frames).round().astype(int)
        return [cv2.resize(np.asarray(video[i], dtype=np.uint8), (w, h), interpolation=cv2.INTER_AREA) for i in picks]


# ---- the protocol -----------------------------------------------------------------------------

@dataclass
class DatasetEval:
    method: str
    clips: list[dict[str, object]]
    summary: dict[str, object]
    notes: list[str]


def evaluate_dataset(clips: Iterator[GroundTruthClip], generator: ClipGenerator, method: str,
                     subject: SubjectReference | None = None, lpips_model=None, i3d_model=None,
                     show_progress: bool = True, total: int | None = None) -> DatasetEval:
    """Generate every clip from its first frame and compare it with the ground truth.

    Without `subject`, each clip's own first-frame subject is the reference (the redraw's upper
    bound); the paper takes the reference from other videos of the same character.
    """
    from storyagent.eval.fvd import fvd
    from storyagent.eval.lpips import lpips

    rows: list[dict[str, object]] = []
    generated, truths = [], []
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"Dataset protocol: {method}", total=total, status="")
        for clip in clips:
            ref = subject or SubjectReference([clip.frames[0]], [clip.subject_mask])
            fake = generator(clip.frames[0], clip.subject_mask, ref, clip.text, len(clip.frames))
            row: dict[str, object] = {"Clip": clip.clip_id, "SSIM": ssim(fake, clip.frames), "PSNR": psnr(fake, clip.frames)}
            if lpips_model is not None:
                row["LPIPS"] = lpips(fake, clip.frames, lpips_model)
            rows.append(row)
            generated.append(np.stack(fake))
            truths.append(np.stack(clip.frames))
            progress.update(task, advance=1, status=clip.clip_id)
    if not rows:
        raise InputError("No clip with the subject was found; check the folder and --character.")
    summary: dict[str, object] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in ("SSIM", "PSNR", "LPIPS")
                                  if any(k in r for r in rows)}
    notes = [f"{len(rows)} clips; generator: {method}."]
    if i3d_model is not None and len(rows) >= 2:
        summary["FVD"] = fvd(generated, truths, i3d_model)
    else:
        notes.append("FVD skipped: " + ("needs at least two clips." if i3d_model is not None else
                                        "no I3D weights (--i3d PATH)."))
    if lpips_model is None:
        notes.append("LPIPS skipped: no LPIPS weights (--lpips-heads PATH --lpips-backbone PATH).")
    return DatasetEval(method, rows, summary, notes)


def write_dataset_report(result: DatasetEval, out_dir: str | os.PathLike[str]) -> list[Path]:
    from storyagent.eval.report import bar_plot, write_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in ("FVD", "SSIM", "PSNR", "LPIPS") if c in result.summary]
    written = list(write_tables([{"Method": result.method, **result.summary}], cols, "Method", out / "dataset_metrics",
                                "Comparison with the ground truth", result.notes))
    written += list(write_tables(result.clips, [c for c in ("SSIM", "PSNR", "LPIPS") if c in result.clips[0]], "Clip",
                                 out / "dataset_clips", "Per-clip metrics", bold_best=False))
    written.append(bar_plot([str(r["Clip"])[-10:] for r in result.clips[:24]],
                            {result.method: [float(r["SSIM"]) for r in result.clips[:24]]},
                            "SSIM per clip", "SSIM", out / "ssim_per_clip.png"))
    return written

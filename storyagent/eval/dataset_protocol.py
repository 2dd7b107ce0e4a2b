"""The paper's ground-truth protocol (Sec. 4) on PororoSV / FlintstonesSV.

Per character of the split: (1) its reference is read from the training episode's clips and
written as media (each clip as an mp4, its first frame as a photo with its subject mask beside
it), which the fine-tuned methods train on; (2) every shot of its test samples is generated from
the shot's aligned first ground-truth frame with the subject removed and the reference redrawn,
then animated; (3) each generated shot is compared with its aligned ground-truth clip (SSIM, PSNR,
LPIPS per shot; FVD over every shot of the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storyagent.errors import InputError
from storyagent.eval.dataset_split import ResolvedCharacter
from storyagent.eval.datasets import DatasetIndex, GroundTruthClip, SubjectReference
from storyagent.eval.geometry import FrameGeometry
from storyagent.eval.pixel import psnr, ssim
from storyagent.media import write_png, write_video
from storyagent.progress import make_progress

METRICS = ("FVD", "SSIM", "PSNR", "LPIPS")
REFERENCE_FPS = 8.0
"""Frame rate the reference clips are written at (DynamiCrafter-512's training rate is near it)."""


@dataclass
class DatasetEval:
    method: str
    dataset: str
    rows: list[dict[str, object]]
    """One row per generated shot: Character, Sample, Clip, SSIM, PSNR (and LPIPS)."""
    summary: dict[str, object]
    """Mean over every shot (FVD over them all), or "n/a (why)"."""
    per_character: list[dict[str, object]]
    geometry: str
    notes: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)


def build_reference(index: DatasetIndex, character: ResolvedCharacter, media_dir: Path) -> SubjectReference:
    """The character's reference from its training clips, largest subject first; also written to `media_dir`."""
    tested = {c for sample in character.test for c in sample}
    clips = [index.load(c, character.name) for c in character.train_clips if c not in tested]
    clips = [c for c in clips if c.subject_mask.any() and not c.subject_mask.all()]
    if not clips:
        raise InputError(f"No training clip of {character.name} in episode {character.train_episode} shows the "
                         "character where a mask finds it; pick another training episode in the split.")
    clips.sort(key=lambda c: -int(c.subject_mask.sum()))
    media_dir.mkdir(parents=True, exist_ok=True)
    for n, clip in enumerate(clips):
        stem = media_dir / f"clip_{n:03d}"
        write_video(stem.with_suffix(".mp4"), clip.frames, REFERENCE_FPS)
        write_png(stem.with_suffix(".png"), clip.frames[0])
        write_png(stem.parent / f"{stem.name}_mask.png", (clip.subject_mask * 255).astype(np.uint8))
    return SubjectReference([c.frames[0] for c in clips], [c.subject_mask for c in clips], [c.clip_id for c in clips])


def check_reference(reference: SubjectReference, character: ResolvedCharacter, clip: GroundTruthClip) -> None:
    """The reference never comes from a test clip: checked before every generated shot."""
    tested = {c for sample in character.test for c in sample}
    leaked = tested.intersection(reference.clip_ids)
    if leaked or clip.clip_id in reference.clip_ids or not reference.clip_ids:
        raise InputError(f"The reference of {character.name} would come from test clip "
                         f"{sorted(leaked or {clip.clip_id})[0] if reference.clip_ids else '(unnamed)'}; "
                         "the protocol takes it from the training episode only.")


def _shot(generator, clip: GroundTruthClip, geometry: FrameGeometry, reference: SubjectReference):
    aligned = [geometry.align(f) for f in clip.frames]
    mask = geometry.align_mask(clip.subject_mask)
    if not mask.any():
        return None
    fake = generator(aligned[0], mask, reference, clip.text, len(aligned), character=clip.character)
    shape = clip.frames[0].shape
    return geometry.compared(fake, shape), geometry.compared(aligned, shape)


def evaluate_dataset(index: DatasetIndex, characters: list[ResolvedCharacter], generator, geometry: FrameGeometry,
                     work_dir: Path, lpips_model=None, i3d_model=None, show_progress: bool = True,
                     fvd_min_clips: int | None = None) -> DatasetEval:
    """Generate every test shot of every character and compare it with its ground truth.

    `fvd_min_clips`: the fewest clips FVD accepts (default: the metric's own, the I3D feature
    dimension + 1 = 401, more than the protocol's 160-200 shots; see the README).
    """
    from storyagent.eval.lpips import lpips

    rows: list[dict[str, object]] = []
    generated, truths, notes = [], [], []
    total = sum(len(s) for c in characters for s in c.test)
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"Dataset protocol: {generator.name}", total=total, status="")
        for character in characters:
            reference = build_reference(index, character, work_dir / "references" / character.name)
            generator.prepare(character, reference, work_dir / "references" / character.name)
            for s, sample in enumerate(character.test):
                for clip_id in sample:
                    clip = index.load(clip_id, character.name)
                    check_reference(reference, character, clip)
                    pair = _shot(generator, clip, geometry, reference)
                    progress.update(task, advance=1, status=f"{character.name} {clip_id}")
                    if pair is None:
                        notes.append(f"{clip_id}: no {character.name} found in its first frame; shot skipped.")
                        continue
                    fake, real = pair
                    row: dict[str, object] = {"Character": character.name, "Sample": s + 1, "Clip": clip_id,
                                              "SSIM": ssim(fake, real), "PSNR": psnr(fake, real)}
                    if lpips_model is not None:
                        row["LPIPS"] = lpips(fake, real, lpips_model)
                    rows.append(row)
                    generated.append(np.stack(fake))
                    truths.append(np.stack(real))
    if not rows:
        raise InputError("No test shot could be generated; check the dataset folder and the split's characters.")
    summary = _means(rows)
    summary["FVD"] = _fvd(generated, truths, i3d_model, fvd_min_clips)
    per_character = [{"Character": c.name, "Training episode": c.train_episode, "Samples": len(c.test),
                      "Shots": sum(r["Character"] == c.name for r in rows),
                      **_means([r for r in rows if r["Character"] == c.name])}
                     for c in characters if any(r["Character"] == c.name for r in rows)]
    if lpips_model is None:
        summary["LPIPS"] = "n/a (no LPIPS weights: --lpips-heads PATH --lpips-backbone PATH)"
    notes.insert(0, f"{len(rows)} shots of {len(characters)} characters; method: {generator.name}.")
    return DatasetEval(generator.name, index.format, rows, summary, per_character, geometry.describe(), notes,
                       list(getattr(generator, "weights", ())))


def _means(rows: list[dict[str, object]]) -> dict[str, object]:
    return {k: float(np.mean([r[k] for r in rows])) for k in ("SSIM", "PSNR", "LPIPS") if all(k in r for r in rows)}


def _fvd(generated: list[np.ndarray], truths: list[np.ndarray], i3d_model, min_clips: int | None) -> float | str:
    from storyagent.eval.fvd import FVD_FRAMES, fvd

    if i3d_model is None:
        return "n/a (no I3D weights: --i3d PATH)"
    shortest = min(len(v) for v in truths)
    if shortest < FVD_FRAMES:
        return f"n/a (ground-truth clips have {shortest} frames; FVD's I3D takes {FVD_FRAMES})"
    try:
        return fvd(generated, truths, i3d_model, min_clips=min_clips)
    except (ValueError, InputError) as exc:  # the metric's own refusal (too few clips, ...), as it says it
        return f"n/a ({exc})"

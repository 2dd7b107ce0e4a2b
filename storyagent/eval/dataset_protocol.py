"""The paper's ground-truth protocol (Sec. 4) on PororoSV / FlintstonesSV.

Per character of the split: (1) its reference is read from the training episode's clips and
written as media (each clip as an mp4, its first frame as a photo with its subject mask beside
it), which the fine-tuned methods train on; (2) every shot of its test samples is generated from
the shot's aligned first ground-truth frame with the subject removed and the reference redrawn,
then animated; (3) each generated shot is compared with its aligned ground-truth clip (SSIM, PSNR,
LPIPS per shot; FVD over every shot of the run).

The work comes in pieces that do not share memory, so that `dataset_ray.py` can run them as Ray
tasks on other machines and this module's `evaluate_dataset` in this process, with the same
numbers: per character, `prepare_character` (its reference media, its fine-tunes); per test
sample, `evaluate_sample` (its shots generated, written and scored, the sample's I3D features for
FVD); then `assemble` alone makes the tables, from the samples in the split's order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
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
    finetunes: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)
    """Character -> model -> the fine-tune it used (`FineTune` as JSON); empty for methods that train nothing."""

    @property
    def trainings(self) -> list[tuple[str, str]]:
        """(character, model) of every fine-tune trained by this evaluation (not found in the cache)."""
        return [(c, m) for c, tunes in self.finetunes.items() for m, t in tunes.items() if t.get("trained_now")]


@dataclass(frozen=True)
class MetricWeights:
    """The metric networks' weight files. Loaded where the shots are scored: in this process, or
    by each Ray worker from the same paths (on storage every node sees)."""

    lpips_heads: Path | None = None
    """LPIPS linear heads (lpips weights/v0.1/alex.pth); None: no LPIPS."""
    lpips_backbone: Path | None = None
    """torchvision AlexNet checkpoint for LPIPS."""
    i3d: Path | None = None
    """Kinetics-400 I3D checkpoint for FVD; None: no FVD."""
    device: str = "cpu"
    """torch device the networks run on."""

    def load(self):
        """(LPIPS or None, I3D or None)."""
        lpips_model = i3d_model = None
        if self.lpips_heads is not None:
            from storyagent.eval.lpips import LPIPS

            lpips_model = LPIPS("alex").load_weights(self.lpips_heads, self.lpips_backbone).to(self.device)
        if self.i3d is not None:
            from storyagent.eval.i3d import load_i3d

            i3d_model = load_i3d(self.i3d).to(self.device)
        return lpips_model, i3d_model


@dataclass
class PreparedCharacter:
    """What a character's samples need from its preparation: its reference and its fine-tunes."""

    reference: SubjectReference
    finetunes: dict[str, dict[str, object]]
    """Model -> `FineTune` as JSON (files on a path every node sees); empty for methods that train nothing."""


@dataclass
class SampleResult:
    """One test sample of one character, generated and scored."""

    character: str
    sample: int
    """1-based, as the shot rows count it."""
    rows: list[dict[str, object]]
    notes: list[str]
    shortest: int | None
    """Fewest frames of a compared ground-truth clip (FVD needs `FVD_FRAMES`); None: no shot generated."""
    features: tuple[np.ndarray, np.ndarray] | None = None
    """(generated, ground truth) I3D features, (shots, D) each, when an I3D was given and the clips are long enough."""


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


TASK_THREADS = 1
"""torch's intra-op threads while a character is prepared or a sample generated and scored, in this
process or in a Ray worker.
oneDNN splits a CPU convolution's sums by the thread count, so the same clip gives other numbers
with other counts: the tiny I3D's logits differed by 2e-7 between 1 and 2 threads (from its
1×1×1 Mixed_3b conv on), and FVD by 1e-5 of itself. A Ray task holding one CPU runs one thread
(Ray sets OMP_NUM_THREADS to its num_cpus); the in-process run is held to the same, so the two
give the same tables. GPU work is not affected."""


@contextlib.contextmanager
def _fixed_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(TASK_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_character(index: DatasetIndex, character: ResolvedCharacter, generator, work_dir: Path) -> PreparedCharacter:
    """The character's reference (written to `work_dir/references/<name>`) and its fine-tunes, found or
    trained on `TASK_THREADS` torch threads."""
    media = work_dir / "references" / character.name
    with _fixed_threads():
        reference = build_reference(index, character, media)
        return PreparedCharacter(reference, generator.finetune(character, media))


def _shot(generator, clip: GroundTruthClip, geometry: FrameGeometry, reference: SubjectReference):
    """(generated frames in the model's frame, their compared region, the ground truth's), or None: no subject."""
    aligned = [geometry.align(f) for f in clip.frames]
    mask = geometry.align_mask(clip.subject_mask)
    if not mask.any():
        return None
    fake = generator(aligned[0], mask, reference, clip.text, len(aligned), character=clip.character)
    shape = clip.frames[0].shape
    return fake, geometry.compared(fake, shape), geometry.compared(aligned, shape)


def generated_path(work_dir: Path, character: str, sample: int, clip_id: str) -> Path:
    """Where a generated shot is kept: `work_dir/generated/<character>/sample_NN/<clip>.mp4`."""
    return work_dir / "generated" / character / f"sample_{sample:02d}" / (re.sub(r"[^\w.-]+", "_", clip_id) + ".mp4")


def evaluate_sample(index: DatasetIndex, character: ResolvedCharacter, sample: int, reference: SubjectReference,
                    generator, geometry: FrameGeometry, work_dir: Path, lpips_model=None, i3d_model=None,
                    on_shot: Callable[[str], None] | None = None) -> SampleResult:
    """Generate the shots of test sample `sample` (1-based) with a generator `use`d for `character`,
    write each (atomically) and score it against its ground truth, on `TASK_THREADS` torch threads."""
    with _fixed_threads():
        return _evaluate_sample(index, character, sample, reference, generator, geometry, work_dir, lpips_model,
                                i3d_model, on_shot)


def _evaluate_sample(index, character, sample, reference, generator, geometry, work_dir, lpips_model, i3d_model,
                     on_shot) -> SampleResult:
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    fakes: list[np.ndarray] = []
    reals: list[np.ndarray] = []
    for clip_id in character.test[sample - 1]:
        clip = index.load(clip_id, character.name)
        check_reference(reference, character, clip)
        shot = _shot(generator, clip, geometry, reference)
        if on_shot is not None:
            on_shot(f"{character.name} {clip_id}")
        if shot is None:
            notes.append(f"{clip_id}: no {character.name} found in its first frame; shot skipped.")
            continue
        generated, fake, real = shot
        # H.264 takes even sides only; the kept copy is for looking at, the scores use every pixel.
        h, w = (generated[0].shape[0] // 2) * 2, (generated[0].shape[1] // 2) * 2
        write_video(generated_path(work_dir, character.name, sample, clip_id), [f[:h, :w] for f in generated],
                    REFERENCE_FPS)
        row: dict[str, object] = {"Character": character.name, "Sample": sample, "Clip": clip_id,
                                  "SSIM": ssim(fake, real), "PSNR": psnr(fake, real)}
        if lpips_model is not None:
            from storyagent.eval.lpips import lpips

            row["LPIPS"] = lpips(fake, real, lpips_model)
        rows.append(row)
        fakes.append(np.stack(fake))
        reals.append(np.stack(real))
    shortest = min((len(v) for v in reals), default=None)
    features = None
    if i3d_model is not None and shortest is not None:
        from storyagent.eval.fvd import FVD_FRAMES, i3d_features

        if shortest >= FVD_FRAMES:
            features = (i3d_features(fakes, i3d_model), i3d_features(reals, i3d_model))
    return SampleResult(character.name, sample, rows, notes, shortest, features)


def evaluate_dataset(index: DatasetIndex, characters: list[ResolvedCharacter], generator, geometry: FrameGeometry,
                     work_dir: Path, lpips_model=None, i3d_model=None, show_progress: bool = True,
                     fvd_min_clips: int | None = None) -> DatasetEval:
    """Generate every test shot of every character and compare it with its ground truth, in this process.

    `fvd_min_clips`: the fewest clips FVD accepts (default: the metric's own, the I3D feature
    dimension + 1 = 401, more than the protocol's 160-200 shots; see the README).
    """
    prepared: list[PreparedCharacter] = []
    samples: list[SampleResult] = []
    total = sum(len(s) for c in characters for s in c.test)
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"Dataset protocol: {generator.name}", total=total, status="")

        def advance(status: str) -> None:
            progress.update(task, advance=1, status=status)

        for character in characters:
            prepared.append(prepare_character(index, character, generator, work_dir))
            generator.use(character, prepared[-1].finetunes)
            for s in range(1, len(character.test) + 1):
                samples.append(evaluate_sample(index, character, s, prepared[-1].reference, generator, geometry,
                                               work_dir, lpips_model, i3d_model, on_shot=advance))
    return assemble(index.format, characters, generator, geometry, prepared, samples, i3d_model is not None,
                    fvd_min_clips)


def assemble(dataset: str, characters: list[ResolvedCharacter], generator, geometry: FrameGeometry,
             prepared: list[PreparedCharacter], samples: list[SampleResult], fvd_given: bool,
             fvd_min_clips: int | None = None) -> DatasetEval:
    """The evaluation's tables from its samples, taken in the split's order (character, then sample),
    wherever they were computed: the same samples give the same numbers."""
    rows = [r for s in samples for r in s.rows]
    notes = [n for s in samples for n in s.notes]
    if not rows:
        raise InputError("No test shot could be generated; check the dataset folder and the split's characters.")
    summary = _means(rows)
    summary["FVD"] = _fvd(samples, fvd_given, fvd_min_clips)
    per_character = [{"Character": c.name, "Training episode": c.train_episode, "Samples": len(c.test),
                      "Shots": sum(r["Character"] == c.name for r in rows),
                      **_means([r for r in rows if r["Character"] == c.name])}
                     for c in characters if any(r["Character"] == c.name for r in rows)]
    if "LPIPS" not in summary:
        summary["LPIPS"] = "n/a (no LPIPS weights: --lpips-heads PATH --lpips-backbone PATH)"
    notes.insert(0, f"{len(rows)} shots of {len(characters)} characters; method: {generator.name}.")
    finetunes = {c.name: p.finetunes for c, p in zip(characters, prepared) if p.finetunes}
    return DatasetEval(generator.name, dataset, rows, summary, per_character, geometry.describe(), notes,
                       list(getattr(generator, "weights", ())), finetunes)


def _means(rows: list[dict[str, object]]) -> dict[str, object]:
    return {k: float(np.mean([r[k] for r in rows])) for k in ("SSIM", "PSNR", "LPIPS") if all(k in r for r in rows)}


def _fvd(samples: list[SampleResult], given: bool, min_clips: int | None) -> float | str:
    if not given:
        return "n/a (no I3D weights: --i3d PATH)"
    from storyagent.eval.fvd import FVD_FRAMES, fvd_from_features

    shortest = min(s.shortest for s in samples if s.shortest is not None)
    if shortest < FVD_FRAMES:
        return f"n/a (ground-truth clips have {shortest} frames; FVD's I3D takes {FVD_FRAMES})"
    features = [s.features for s in samples if s.features is not None]
    try:
        return fvd_from_features(np.concatenate([f[0] for f in features]), np.concatenate([f[1] for f in features]),
                                 min_clips)
    except (ValueError, InputError) as exc:  # the metric's own refusal (too few clips, ...), as it says it
        return f"n/a ({exc})"

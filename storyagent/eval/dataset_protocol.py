"""The paper's ground-truth protocol (Sec. 4) on PororoSV / FlintstonesSV.

Per character of the split: (1) its reference is read from the training episode's clips and
written as media (each clip as an mp4, its first frame as a photo with its subject mask beside
it), which the fine-tuned methods train on; (2) every shot of its test samples is generated from
the shot's aligned first ground-truth frame with the subject removed and the reference redrawn,
then animated; (3) each generated shot is compared with its aligned ground-truth clip (SSIM, PSNR,
LPIPS per shot; FVD over every shot of the run).

Reference masks: a method that trains on the reference (the diffusion methods) masks it itself,
with LangSAM and the character's class word on every frame (`generator.masks_for`), so the media
are written without masks; the dataset's first-frame mask is written beside them only for a method
that trains nothing (the CPU floor), and kept in memory where LangSAM misses.

FVD, as the field reports it: over the protocol's own clips (N = the shots that have a 16-frame
ground truth, 40 per character), each generated clip's first 16 frames against the ground truth's
first 16 (a clip's own frames, or its source video's where the release samples fewer); N is
stated in the report. With N at most the I3D's 400 dimensions the covariance is rank-deficient,
as in every FVD on a few hundred clips: the number compares with FVDs computed on the same N.
"n/a" only where no such clip can be made.

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
FVD_MIN_CLIPS = 2
"""Fewest clips the protocol's FVD is computed on (the metric's own floor); the report states N."""


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
    fvd_missing: list[str] = field(default_factory=list)
    """Generated shots with no 16-frame ground-truth clip (FVD leaves them out)."""
    features: tuple[np.ndarray, np.ndarray] | None = None
    """(generated, ground truth) I3D features, (shots, D) each, of the shots with an FVD clip, when an I3D was given."""


def build_reference(index: DatasetIndex, character: ResolvedCharacter, media_dir: Path,
                    masks=None) -> SubjectReference:
    """The character's reference from its training clips, largest subject first; also written to `media_dir`.

    `masks` (the method's own, `generators.ProtocolMasks`): the media are written without masks, for
    the method's trainings to mask every frame themselves; the dataset's first-frame masks go to
    `media_dir/dataset_masks/` for it to fall back on (`ProtocolMasks.write_hints`), and each clip's
    first-frame mask in memory is LangSAM's, the dataset's where LangSAM misses. None: the
    dataset's first-frame mask, written beside each clip (a mask for all of its frames).
    """
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
        mask_file = stem.parent / f"{stem.name}_mask.png"
        if masks is None:
            write_png(mask_file, (clip.subject_mask * 255).astype(np.uint8))
        else:
            # A mask beside the media would be taken as the user's for every frame of the clip.
            mask_file.unlink(missing_ok=True)
    firsts = [(c.subject_mask, "dataset mask") for c in clips]
    if masks is not None:
        masks.write_hints(media_dir, {f"clip_{n:03d}": c.subject_mask for n, c in enumerate(clips)})
        masks.hints = [(c.frames[0], c.subject_mask) for c in clips]
        try:
            firsts = masks([c.frames[0] for c in clips], fallback=firsts)
        finally:
            masks.release()
    return SubjectReference([c.frames[0] for c in clips], [m for m, _ in firsts], [c.clip_id for c in clips],
                            [how for _, how in firsts])


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
    masks_for = getattr(generator, "masks_for", None)
    with _fixed_threads():
        reference = build_reference(index, character, media, masks_for(character, media) if masks_for else None)
        return PreparedCharacter(reference, generator.finetune(character, media))


@dataclass
class _Shot:
    generated: list[np.ndarray]
    """The frames compared with the ground truth, in the model's frame (as many as the ground truth has)."""
    fake: list[np.ndarray]
    """Their compared region."""
    real: list[np.ndarray]
    """The ground truth's."""
    fvd: tuple[list[np.ndarray], list[np.ndarray]] | None
    """(generated, ground truth) 16-frame FVD clips (compared regions), or None: no such ground truth."""


def _shot(generator, clip: GroundTruthClip, geometry: FrameGeometry, reference: SubjectReference,
          fvd: bool = False) -> _Shot | None:
    """The shot generated from its first frame and its compared regions; None: no subject in that frame.

    With `fvd` and a 16-frame ground-truth clip (`GroundTruthClip.fvd_frames`), the generator is asked
    for at least 16 frames: their first 16 are the FVD clip, and as many as the ground truth has,
    evenly spaced, are compared frame by frame."""
    from storyagent.eval.fvd import FVD_FRAMES

    aligned = [geometry.align(f) for f in clip.frames]
    mask = geometry.align_mask(clip.subject_mask)
    if not mask.any():
        return None
    real_fvd = clip.fvd_frames(FVD_FRAMES) if fvd else None
    count = max(len(aligned), FVD_FRAMES) if real_fvd is not None else len(aligned)
    video = generator(aligned[0], mask, reference, clip.text, count, character=clip.character)
    picks = np.linspace(0, len(video) - 1, len(aligned)).round().astype(int)
    generated = list(video) if len(video) == len(aligned) else [video[i] for i in picks]
    shape = clip.frames[0].shape
    pair = None
    if real_fvd is not None and len(video) >= FVD_FRAMES:
        pair = (geometry.compared(list(video[:FVD_FRAMES]), shape),
                geometry.compared([geometry.align(f) for f in real_fvd], shape))
    return _Shot(generated, geometry.compared(generated, shape), geometry.compared(aligned, shape), pair)


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
    fakes: list[list[np.ndarray]] = []
    reals: list[list[np.ndarray]] = []
    missing: list[str] = []
    for clip_id in character.test[sample - 1]:
        clip = index.load(clip_id, character.name)
        check_reference(reference, character, clip)
        shot = _shot(generator, clip, geometry, reference, fvd=i3d_model is not None)
        if on_shot is not None:
            on_shot(f"{character.name} {clip_id}")
        if shot is None:
            notes.append(f"{clip_id}: no {character.name} found in its first frame; shot skipped.")
            continue
        generated, fake, real = shot.generated, shot.fake, shot.real
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
        if shot.fvd is not None:
            fakes.append(shot.fvd[0])
            reals.append(shot.fvd[1])
        else:
            missing.append(clip_id)
    features = None
    if i3d_model is not None and fakes:
        from storyagent.eval.fvd import i3d_features

        features = (i3d_features([np.stack(f) for f in fakes], i3d_model),
                    i3d_features([np.stack(r) for r in reals], i3d_model))
    return SampleResult(character.name, sample, rows, notes, missing, features)


def evaluate_dataset(index: DatasetIndex, characters: list[ResolvedCharacter], generator, geometry: FrameGeometry,
                     work_dir: Path, lpips_model=None, i3d_model=None, show_progress: bool = True,
                     fvd_min_clips: int | None = None) -> DatasetEval:
    """Generate every test shot of every character and compare it with its ground truth, in this process.

    `fvd_min_clips`: the fewest clips FVD is computed on (default `FVD_MIN_CLIPS`: the protocol's
    160-200 shots are its N, stated in the report).
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
    summary["FVD"], fvd_notes = _fvd(samples, fvd_given, fvd_min_clips, dataset)
    notes += fvd_notes
    if fvd_given:
        summary["FVD clips"] = sum(len(s.features[0]) for s in samples if s.features is not None)
    per_character = [{"Character": c.name, "Training episode": c.train_episode, "Samples": len(c.test),
                      "Shots": sum(r["Character"] == c.name for r in rows),
                      **_means([r for r in rows if r["Character"] == c.name])}
                     for c in characters if any(r["Character"] == c.name for r in rows)]
    if "LPIPS" not in summary:
        summary["LPIPS"] = "n/a (no LPIPS weights: --lpips-heads PATH --lpips-backbone PATH)"
    notes.insert(0, f"{len(rows)} shots of {len(characters)} characters; method: {generator.name}.")
    for c, p in zip(characters, prepared):
        methods = p.reference.mask_methods
        if methods and any(m != "langsam" for m in methods):
            stood_in = sum(m.startswith("dataset mask") for m in methods)
            notes.append(f"{c.name}'s reference: LangSAM's mask on {methods.count('langsam')} of its {len(methods)} clips' "
                         f"first frames, the dataset's on {stood_in} (LangSAM missed there).")
    finetunes = {c.name: p.finetunes for c, p in zip(characters, prepared) if p.finetunes}
    return DatasetEval(generator.name, dataset, rows, summary, per_character, geometry.describe(), notes,
                       list(getattr(generator, "weights", ())), finetunes)


def _means(rows: list[dict[str, object]]) -> dict[str, object]:
    return {k: float(np.mean([r[k] for r in rows])) for k in ("SSIM", "PSNR", "LPIPS") if all(k in r for r in rows)}


SOURCE_HINT = {"flintstones": "FlintstonesSV's released clips have 5 frames: give each clip's source video as "
                               "DIR/video_frames/<globalID>.npy"}


def _fvd(samples: list[SampleResult], given: bool, min_clips: int | None, dataset: str = "") -> tuple[float | str, list[str]]:
    """(FVD or "n/a (why)", notes saying on how many clips and which were left out)."""
    if not given:
        return "n/a (no I3D weights: --i3d PATH)", []
    from storyagent.eval.fvd import FVD_FRAMES, fvd_from_features

    features = [s.features for s in samples if s.features is not None]
    count = sum(len(f[0]) for f in features)
    missing = [c for s in samples for c in s.fvd_missing]
    hint = SOURCE_HINT.get(dataset, f"the dataset's clips are shorter than {FVD_FRAMES} frames")
    notes = []
    if missing:
        notes.append(f"FVD leaves out {len(missing)} shot{'s' if len(missing) != 1 else ''} with no {FVD_FRAMES}-frame "
                     f"ground-truth clip ({hint}).")
    if not count:
        return f"n/a (no ground-truth clip of {FVD_FRAMES} frames: {hint})", notes
    dim = features[0][0].shape[1]
    try:
        value = fvd_from_features(np.concatenate([f[0] for f in features]), np.concatenate([f[1] for f in features]),
                                  FVD_MIN_CLIPS if min_clips is None else min_clips)
    except (ValueError, InputError) as exc:  # the metric's own refusal (too few clips, ...), as it says it
        return f"n/a ({exc})", notes
    rank = ("rank-deficient, as in every FVD on fewer clips than the I3D's dimensions, so it compares with FVDs "
            "computed on the same N") if count <= dim else "of full rank"
    notes.insert(0, f"FVD on N = {count} generated and {count} ground-truth clips of {FVD_FRAMES} frames (I3D "
                    f"logits, {dim}-dim; StyleGAN-V's statistics): the covariance is {rank}.")
    return value, notes

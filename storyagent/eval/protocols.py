"""The evaluation protocols behind `storyagent eval`: one run (`film`), several runs (`compare`)
and the paper's ground-truth protocol on story-visualisation datasets (`dataset`, in datasets.py).

Every metric that needs weights is computed only when its model was given (a local path, or the
Hugging Face cache); the others are listed as skipped in the report's notes.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.errors import InputError
from storyagent.eval.clip_metrics import CLIPEncoder, clip_score, clip_temp
from storyagent.eval.consistency import (
    CLIPImageFeatures, DINOFeatures, LightingRobustFeatures, SubjectFeatures, inter_shot_consistency,
    subject_crops)
from storyagent.eval.flow import FarnebackFlow, FlowEstimator, RAFTFlow, flow_score, propagate_mask, warping_error
from storyagent.eval.inception import inception_score, load_inception
from storyagent.eval.observer import AestheticObserver
from storyagent.eval.report import bar_plot, curve_plot, write_tables
from storyagent.media import load_reference, read_frames
from storyagent.progress import make_progress
from storyagent.schemas import StoryScript
from storyagent.tools.per_shot import clip_path, frame_path


@dataclass
class EvalModels:
    """The encoders and estimators an evaluation uses; a missing one skips its metrics."""

    features: list[SubjectFeatures] = field(default_factory=lambda: [LightingRobustFeatures()])
    """Subject-consistency embeddings: DINO (and CLIP-I) when their weights are there, else the labelled fallback."""
    clip: CLIPEncoder | None = None
    flow: FlowEstimator = field(default_factory=FarnebackFlow)
    aesthetic: AestheticObserver | None = None
    inception: torch.nn.Module | None = None
    lpips: torch.nn.Module | None = None
    i3d: torch.nn.Module | None = None
    max_frames: int = 64
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, clip: str | None = None, dino: str | None = None, raft: str | None = None,
             raft_small: bool = False, inception: str | None = None, aesthetic_head: str | None = None,
             lpips_heads: str | None = None, lpips_backbone: str | None = None, i3d: str | None = None,
             use_cache: bool = True, device: str = "cpu", max_frames: int = 64,
             clip_large: str | None = None) -> EvalModels:
        """Load what was asked for (failing clearly when a given path is wrong); from the cache, what is there.

        `clip` is the CLIP of the CLIP-score / CLIP-temp metrics (default the cached ViT-B/32, as
        EvalCrafter and the paper's Table 2); `clip_large` the ViT-L/14 that CLIP-I subject
        consistency and the aesthetic predictor use (default the cached clip-vit-l-14, else `clip`).
        """
        from storyagent.weights import weights_available

        m = cls(max_frames=max_frames)
        if clip or (use_cache and weights_available("clip-vit-b-32")):
            m.clip = CLIPEncoder.from_pretrained(clip, device=device, name="clip-vit-b-32")
        else:
            m.notes.append("CLIP-score and CLIP-temp skipped: no CLIP ViT-B/32 weights "
                           "(`storyagent weights fetch clip-vit-b-32` or --clip PATH).")
        large = None
        if clip_large or (use_cache and weights_available("clip-vit-l-14")):
            large = CLIPEncoder.from_pretrained(clip_large, device=device, name="clip-vit-l-14")
        elif clip:
            # Only the user's --clip is at hand: it serves CLIP-I and the aesthetic head too, as one CLIP.
            large = m.clip
        if large is not None:
            m.features.append(CLIPImageFeatures(large))
            if aesthetic_head or (use_cache and weights_available("laion-aesthetic-v2")):
                m.aesthetic = AestheticObserver(scorer=_aesthetic_scorer(large, aesthetic_head))
        else:
            m.notes.append("Subject (CLIP) and aesthetic skipped: no CLIP ViT-L/14 weights "
                           "(`storyagent weights fetch clip-vit-l-14`).")
        if dino or (use_cache and weights_available("dinov2-vitg14")):
            # DINO is the subject-consistency measure; the weights-free fallback is then not needed.
            m.features = [DINOFeatures.from_pretrained(dino, device=device)] + [
                f for f in m.features if not isinstance(f, LightingRobustFeatures)]
        else:
            m.notes.append("Subject (DINO) skipped: no DINO weights (--dino PATH or `storyagent weights fetch dinov2-vitg14`).")
            m.notes.append(f"Subject ({LightingRobustFeatures.name}) is a weights-free stand-in for DINO: colour "
                           "histograms after grey-world light normalisation plus gradient-orientation shape; it "
                           "ignores the shot's lighting and ranks runs, but is not DINO/CLIP-I.")
        cached_raft = RAFTFlow.find_cached() if use_cache and not raft else None
        if raft or cached_raft:
            m.flow = RAFTFlow.from_file(raft or cached_raft, small=raft_small and bool(raft), device=device)
        else:
            m.notes.append("Optical flow by the fallback, OpenCV Farnebäck (no RAFT weights: --raft PATH or "
                           "torchvision's raft_large_C_T_V1 in the torch hub cache): warping error and flow "
                           "score are not comparable with EvalCrafter's RAFT-based numbers.")
        if inception:
            m.inception = load_inception(inception).to(device)
        else:
            m.notes.append("IS skipped: no Inception-v3 weights (--inception PATH).")
        if lpips_heads or lpips_backbone:
            from storyagent.eval.lpips import LPIPS

            # Heads default to the LPIPS v0.1 copy torchmetrics installs; the backbone must be given.
            m.lpips = LPIPS("alex").load_weights(lpips_heads, lpips_backbone).to(device)
        if i3d:
            from storyagent.eval.i3d import load_i3d

            m.i3d = load_i3d(i3d).to(device)
        return m


def _aesthetic_scorer(encoder: CLIPEncoder, head_path: str | None):
    """The aesthetic predictor on the CLIP already loaded for the CLIP metrics (one ViT-L, not two).

    `CLIPModel.get_image_features` is the same projected embedding the predictor's vision tower
    gives, and `embed_images` already L2-normalises it.
    """
    from storyagent.models.aesthetic import AestheticHead

    head = AestheticHead.from_pretrained(head_path, device=encoder.device)

    @torch.no_grad()
    def score(images: list[np.ndarray]) -> list[float]:
        return head(encoder.embed_images(images).to(encoder.device)).float().cpu().tolist()

    return score


@dataclass
class ReferenceSubject:
    frames: list[np.ndarray]
    masks: list[np.ndarray | None]
    source: str


def run_reference(run_dir: Path, subject: str | os.PathLike[str] | None = None) -> ReferenceSubject:
    """The reference subject: `subject` media if given, else the run's own cut-out frames, else its recorded input."""
    if subject is not None:
        ref = load_reference(subject)
        return ReferenceSubject(ref.frames, list(ref.masks), str(subject))
    frames = sorted(p for p in (run_dir / "subject").glob("frame_*.png") if not p.stem.endswith("_mask"))
    if frames:
        imgs = [np.asarray(Image.open(p).convert("RGB")) for p in frames]
        masks = [_read_mask(p.with_name(p.stem + "_mask.png")) for p in frames]
        return ReferenceSubject(imgs, masks, str(run_dir / "subject"))
    manifest = _manifest(run_dir)
    recorded = manifest.get("inputs", {}).get("subject")
    if not recorded or not Path(recorded).exists():
        raise InputError(f"{run_dir} records no usable subject reference; pass --subject PATH.")
    ref = load_reference(recorded, mask=manifest["inputs"].get("mask"))
    return ReferenceSubject(ref.frames, list(ref.masks), recorded)


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    if not path.exists():
        raise InputError(f"{run_dir} is not a StoryAgent run (no manifest.json); give a folder made by `storyagent run`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is damaged ({exc.msg}).") from exc


def _read_mask(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    return np.asarray(Image.open(path).convert("L")) > 127


@dataclass
class FilmEval:
    """Metrics of one run: a row per shot, a summary row, and per-frame subject-consistency curves."""

    name: str
    shots: list[dict[str, object]]
    summary: dict[str, object]
    curves: dict[str, list[np.ndarray]]
    """feature name -> one per-frame consistency array per shot."""
    notes: list[str]


def evaluate_film(run_dir: str | os.PathLike[str], models: EvalModels, subject: str | os.PathLike[str] | None = None,
                  name: str | None = None, show_progress: bool = True) -> FilmEval:
    """No-reference metrics of a finished run, plus subject consistency to the reference subject.

    Per shot: CLIP-score (shot description vs frames), CLIP-temp, warping error, flow score,
    subject consistency per feature (the storyboard's subject mask carried through the clip by
    optical flow locates the subject in each frame), the storyboard's aesthetic score. Per film:
    inter-shot consistency per feature and the Inception Score over all frames.
    """
    run_dir = Path(run_dir)
    _manifest(run_dir)
    story_path = run_dir / "story.json"
    if not story_path.exists():
        raise InputError(f"{run_dir} has no story.json; finish the run first (`storyagent run ... --resume`).")
    script = StoryScript.model_validate_json(story_path.read_text(encoding="utf-8"))
    ref = run_reference(run_dir, subject)
    ref_crops, ref_masks = subject_crops(ref.frames, ref.masks)
    ref_emb = {f.name: f(ref_crops, ref_masks) for f in models.features}

    rows: list[dict[str, object]] = []
    curves: dict[str, list[np.ndarray]] = {f.name: [] for f in models.features}
    shot_emb: dict[str, list[torch.Tensor]] = {f.name: [] for f in models.features}
    all_frames: list[np.ndarray] = []
    boards: dict[int, np.ndarray] = {}
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"Evaluating {name or run_dir.name}", total=len(script.shots), status="")
        for shot in script.shots:
            clip_file = run_dir / clip_path(shot.index)
            if not clip_file.exists():
                raise InputError(f"{clip_file} is missing; finish the run first (`storyagent run ... --resume`).")
            frames = read_frames(clip_file, models.max_frames)
            all_frames.extend(frames)
            row: dict[str, object] = {"Shot": shot.index}
            # 1. Motion and temporal consistency from optical flow.
            row["Warping error"] = warping_error(frames, models.flow)
            row["Flow score"] = flow_score(frames, models.flow)
            # 2. CLIP text alignment and frame-to-frame similarity.
            if models.clip is not None:
                row["CLIP-score"] = clip_score(frames, shot.description, models.clip)
                row["CLIP-temp"] = clip_temp(frames, models.clip)
            # 3. Subject consistency: find the subject in every frame, compare with the reference.
            board_file = run_dir / frame_path(shot.index)
            board_mask = _read_mask(board_file.with_name(board_file.stem + "_mask.png"))
            if board_file.exists():
                boards[shot.index] = np.asarray(Image.open(board_file).convert("RGB"))
            masks: list[np.ndarray | None] = (propagate_mask(frames, board_mask, models.flow)
                                              if board_mask is not None and board_mask.any() else [None] * len(frames))
            crops, crop_masks = subject_crops(frames, masks)
            for feat in models.features:
                emb = feat(crops, crop_masks)
                per_frame = (emb @ ref_emb[feat.name].T).mean(dim=1).numpy()
                curves[feat.name].append(per_frame)
                shot_emb[feat.name].append(emb)
                row[f"Subject ({feat.name})"] = float(per_frame.mean())
            rows.append(row)
            progress.update(task, advance=1, status=f"shot {shot.index}")

    # 4. The Observer's aesthetic score of each storyboard picture.
    if models.aesthetic is not None and boards:
        for review in models.aesthetic.review(boards, min_score=0.0):
            rows[review.shot - 1]["Aesthetic"] = review.score
    summary: dict[str, object] = {}
    for key in {k for r in rows for k in r if k != "Shot"}:
        vals = [float(r[key]) for r in rows if key in r]
        summary[key] = float(np.mean(vals))
    for feat in models.features:
        summary[f"Inter-shot ({feat.name})"] = inter_shot_consistency(shot_emb[feat.name])[0]
    if models.inception is not None:
        summary["IS"] = inception_score([np.stack(all_frames)], models.inception)
    notes = list(models.notes) + [f"Reference subject: {ref.source} ({len(ref.frames)} frames)."]
    return FilmEval(name or run_dir.name, rows, summary, curves, notes)


# ---- reports ----------------------------------------------------------------------------------

NO_REFERENCE_COLUMNS = ["IS", "CLIP-score", "CLIP-temp", "Warping error", "Flow score", "Aesthetic"]


def _columns(rows: list[dict[str, object]], preferred: list[str]) -> list[str]:
    present = {k for r in rows for k in r}
    extra = sorted(k for k in present if k.startswith(("Subject", "Inter-shot")))
    return [c for c in preferred if c in present] + extra


def write_film_report(result: FilmEval, out_dir: str | os.PathLike[str]) -> list[Path]:
    """`film_metrics.md/.csv` (per shot + mean), `subject_per_shot.png`, `subject_per_frame.png`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in result.shots] + [{"Shot": "mean", **result.summary}]
    cols = _columns(rows, NO_REFERENCE_COLUMNS)
    written = list(write_tables(rows, cols, "Shot", out / "film_metrics", f"{result.name}: no-reference metrics",
                                result.notes, bold_best=False))
    written += _plots({result.name: result}, out)
    return written


def feature_slug(name: str) -> str:
    """A file-name part for a feature: "dino", "clip", "fallback" (the text before any colon)."""
    return re.sub(r"[^a-z0-9]+", "-", name.split(":")[0].lower()).strip("-") or "features"


def _plots(results: dict[str, FilmEval], out: Path) -> list[Path]:
    """Per feature: subject consistency per shot (bars) and per frame (curves, shot cuts marked and labelled)."""
    written: list[Path] = []
    any_result = next(iter(results.values()))
    for feat in any_result.curves:
        n_shots = max(len(r.shots) for r in results.values())
        bars = {label: [float(s.get(f"Subject ({feat})", math.nan)) for s in r.shots] for label, r in results.items()}
        features = f"features: {feat}"
        written.append(bar_plot([f"shot {i + 1}" for i in range(n_shots)], bars,
                                "Subject consistency to the reference, per shot (cosine similarity)",
                                "cosine similarity (1 = same)", out / f"subject_per_shot_{feature_slug(feat)}.png",
                                y_range=(0.0, 1.0), xlabel="shot", subtitle=features))
        lines = {label: np.concatenate(r.curves[feat]).tolist() for label, r in results.items() if r.curves[feat]}
        cuts = np.cumsum([len(c) for c in any_result.curves[feat]])[:-1].tolist()
        written.append(curve_plot(lines, "Subject consistency to the reference, per frame (cosine similarity)",
                                  "cosine similarity (1 = same)", "frames, grouped by shot",
                                  out / f"subject_per_frame_{feature_slug(feat)}.png", breaks=cuts,
                                  y_range=(0.0, 1.0), segment_labels=[f"shot {i + 1}" for i in range(len(cuts) + 1)],
                                  subtitle=features))
    return written


def compare_runs(results: list[FilmEval], out_dir: str | os.PathLike[str]) -> list[Path]:
    """One row per run (the films' means), the paper's no-reference columns, and the comparison plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"Method": r.name, **r.summary} for r in results]
    cols = _columns(rows, NO_REFERENCE_COLUMNS)
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    written = list(write_tables(rows, cols, "Method", out / "compare", "Comparison of runs", notes))
    written += _plots({r.name: r for r in results}, out)
    return written

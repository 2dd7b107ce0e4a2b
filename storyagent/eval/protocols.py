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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from storyagent.cast import LEAD_FOLDER, reference_folder
from storyagent.errors import InputError
from storyagent.eval.clip_metrics import CLIPEncoder, clip_score, clip_temp
from storyagent.eval.consistency import (
    CLIPImageFeatures,
    DINOFeatures,
    LightingRobustFeatures,
    SubjectFeatures,
    inter_shot_consistency,
    subject_crops,
)
from storyagent.eval.flow import (
    FarnebackFlow,
    FlowEstimator,
    RAFTFlow,
    flow_score,
    propagate_mask,
    warping_error,
)
from storyagent.eval.inception import inception_score, load_inception
from storyagent.eval.observer import AestheticObserver
from storyagent.eval.report import bar_plot, curve_plot, write_tables
from storyagent.fileio import slugify
from storyagent.media import load_reference, read_frames
from storyagent.progress import make_progress
from storyagent.schemas import Shot, StoryScript
from storyagent.tools.per_shot import STORYBOARD_DIR, clip_path, frame_path, shot_key


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
    own = _folder_reference(run_dir / LEAD_FOLDER)
    if own is not None:
        return own
    manifest = _manifest(run_dir)
    return _recorded_reference(run_dir, manifest.get("inputs", {}).get("subject"), manifest.get("inputs", {}).get("mask"))


def _folder_reference(folder: Path) -> ReferenceSubject | None:
    """The cut-out frames a run kept of one character (`frame_01.png` with `frame_01_mask.png`), if any."""
    frames = sorted(p for p in folder.glob("frame_*.png") if not p.stem.endswith("_mask"))
    if not frames:
        return None
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in frames]
    masks = [_read_mask(p.with_name(p.stem + "_mask.png")) for p in frames]
    return ReferenceSubject(imgs, masks, str(folder))


def _recorded_reference(run_dir: Path, media: str | None, mask: str | None, who: str = "subject") -> ReferenceSubject:
    if not media or not Path(media).exists():
        raise InputError(f"{run_dir} records no usable {who} reference; pass --subject PATH.")
    ref = load_reference(media, mask=mask)
    return ReferenceSubject(ref.frames, list(ref.masks), media)


def cast_references(run_dir: Path, subject: str | os.PathLike[str] | None = None) -> dict[str, ReferenceSubject]:
    """Every character's reference frames, the lead first, by name: the run's own cut-outs (the lead's in
    `subject/`, the others' in `cast/<name>/`), else the media its manifest records. `subject` replaces
    the lead's. A run of one character gives one entry."""
    inputs = _manifest(run_dir).get("inputs", {})
    lead = str(inputs.get("name") or "the subject")
    refs = {lead: run_reference(run_dir, subject)}
    for i, member in enumerate(inputs.get("supporting") or [], 1):
        name = str(member["name"])
        refs[name] = (_folder_reference(run_dir / reference_folder(i, name))
                      or _recorded_reference(run_dir, member.get("media"), member.get("mask"), f"{name}'s"))
    return refs


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
class CharacterInShot:
    """One character of a cast in one shot: where its own mask finds it in each clip frame, and how its
    pixels there compare with every character's references (its own and the others')."""

    shot: int
    name: str
    named: bool
    """Whether the story names this character in this shot (else only the storyboard's masks hold it)."""
    mask_pixels: list[int]
    """Per clip frame read, the pixels of the character's storyboard mask carried through the clip (0: not
    found in that frame); empty when the storyboard has no mask of the character."""
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """feature name -> reference character -> per-frame cosine similarity of this character's crops to that
    character's references (NaN in frames where its mask is empty)."""

    @property
    def lost(self) -> bool:
        """The story names the character here, but the storyboard or a clip frame does not show it."""
        return self.named and (not self.mask_pixels or min(self.mask_pixels) == 0)

    def against(self, feature: str, reference: str) -> float:
        """Mean over the frames that show the character of its similarity to `reference`'s references."""
        values = self.scores.get(feature, {}).get(reference)
        if values is None or not np.isfinite(values).any():
            return math.nan
        return float(np.nanmean(values))

    def own(self, feature: str) -> float:
        """Its pixels inside its own mask against its own references."""
        return self.against(feature, self.name)

    def others(self, feature: str) -> dict[str, float]:
        """Its pixels against each other character's references (the cross scores)."""
        return {who: self.against(feature, who) for who in self.scores.get(feature, {}) if who != self.name}

    def margin(self, feature: str) -> float:
        """Own score minus the highest cross score: above 0, the character looks more like itself than
        like anyone else of the cast."""
        others = [v for v in self.others(feature).values() if math.isfinite(v)]
        return self.own(feature) - max(others) if others else math.nan


@dataclass
class FilmEval:
    """Metrics of one run: a row per shot, a summary row, and per-frame subject-consistency curves."""

    name: str
    shots: list[dict[str, object]]
    summary: dict[str, object]
    curves: dict[str, list[np.ndarray]]
    """feature name -> one per-frame consistency array per shot (a one-character film; a cast's are in
    `characters`)."""
    notes: list[str]
    cast: list[str] = field(default_factory=list)
    """A cast's characters, the lead first; empty for a film of one character."""
    characters: list[CharacterInShot] = field(default_factory=list)
    """A cast: every character in every shot that names it or whose storyboard holds its mask."""
    features: list[str] = field(default_factory=list)
    """The subject features' names (the columns' and plots' labels)."""
    shot_frames: list[int] = field(default_factory=list)
    """How many frames of each shot's clip were read."""


def evaluate_film(run_dir: str | os.PathLike[str], models: EvalModels, subject: str | os.PathLike[str] | None = None,
                  name: str | None = None, show_progress: bool = True) -> FilmEval:
    """No-reference metrics of a finished run, plus subject consistency to the reference subject.

    Per shot: CLIP-score (shot description vs frames), CLIP-temp, warping error, flow score,
    subject consistency per feature (the storyboard's subject mask carried through the clip by
    optical flow locates the subject in each frame), the storyboard's aesthetic score. Per film:
    inter-shot consistency per feature and the Inception Score over all frames.

    A film whose cast has several characters is scored per character: each character's own storyboard
    mask is carried through the clip, its crops there are compared with its own references (`Subject
    NAME (feature)`) and with every other character's (`FilmEval.characters`), and its inter-shot
    consistency is over the shots that show it. `subject` replaces the lead's references.
    """
    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    story_path = run_dir / "story.json"
    if not story_path.exists():
        raise InputError(f"{run_dir} has no story.json; finish the run first (`storyagent run ... --resume`).")
    script = StoryScript.model_validate_json(story_path.read_text(encoding="utf-8"))
    refs = cast_references(run_dir, subject)
    cast = list(refs) if len(refs) > 1 else []
    ref_emb: dict[str, dict[str, torch.Tensor]] = {}
    for who, ref in refs.items():
        ref_crops, ref_masks = subject_crops(ref.frames, ref.masks)
        ref_emb[who] = {f.name: f(ref_crops, ref_masks) for f in models.features}

    rows: list[dict[str, object]] = []
    curves: dict[str, list[np.ndarray]] = {f.name: [] for f in models.features} if not cast else {}
    # Per character (one key, "", for a film of one character): feature -> one embedding batch per shot.
    shot_emb: dict[str, dict[str, list[torch.Tensor]]] = {}
    characters: list[CharacterInShot] = []
    all_frames: list[np.ndarray] = []
    frame_counts: list[int] = []
    boards: dict[int, np.ndarray] = {}
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"Evaluating {name or run_dir.name}", total=len(script.shots), status="")
        for shot in script.shots:
            clip_file = run_dir / clip_path(shot.index)
            if not clip_file.exists():
                raise InputError(f"{clip_file} is missing; finish the run first (`storyagent run ... --resume`).")
            frames = read_frames(clip_file, models.max_frames)
            all_frames.extend(frames)
            frame_counts.append(len(frames))
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
            if board_file.exists():
                boards[shot.index] = np.asarray(Image.open(board_file).convert("RGB"))
            if cast:
                for seen in _characters_in_shot(run_dir, manifest, shot, cast, frames, models, ref_emb, shot_emb):
                    characters.append(seen)
                    for feat in models.features:
                        own = seen.own(feat.name)
                        if math.isfinite(own):
                            row[f"Subject {seen.name} ({feat.name})"] = own
            else:
                board_mask = _read_mask(board_file.with_name(board_file.stem + "_mask.png"))
                masks: list[np.ndarray | None] = (propagate_mask(frames, board_mask, models.flow)
                                                  if board_mask is not None and board_mask.any()
                                                  else [None] * len(frames))
                crops, crop_masks = subject_crops(frames, masks)
                for feat in models.features:
                    emb = feat(crops, crop_masks)
                    per_frame = (emb @ ref_emb[next(iter(refs))][feat.name].T).mean(dim=1).numpy()
                    curves[feat.name].append(per_frame)
                    shot_emb.setdefault("", {}).setdefault(feat.name, []).append(emb)
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
        if not cast:
            summary[f"Inter-shot ({feat.name})"] = inter_shot_consistency(shot_emb[""][feat.name])[0]
            continue
        for who in cast:
            shown = shot_emb.get(who, {}).get(feat.name)
            if shown:
                summary[f"Inter-shot {who} ({feat.name})"] = inter_shot_consistency(shown)[0]
    if models.inception is not None:
        summary["IS"] = inception_score([np.stack(all_frames)], models.inception)
    notes = list(models.notes)
    if not cast:
        ref = next(iter(refs.values()))
        notes.append(f"Reference subject: {ref.source} ({len(ref.frames)} frames).")
    else:
        notes += _cast_notes(refs, characters)
    return FilmEval(name or run_dir.name, rows, summary, curves, notes, cast, characters,
                    [f.name for f in models.features], frame_counts)


def _characters_in_shot(run_dir: Path, manifest: dict, shot: Shot, cast: list[str], frames: list[np.ndarray],
                        models: EvalModels, ref_emb: dict[str, dict[str, torch.Tensor]],
                        shot_emb: dict[str, dict[str, list[torch.Tensor]]]) -> list[CharacterInShot]:
    """Each character the shot names (and any other its storyboard has a mask of), found in every clip
    frame by its own storyboard mask carried by optical flow, and scored against every character's references."""
    known = {n.casefold(): n for n in cast}
    named = [known[c.name.casefold()] for c in shot.cast(cast[0]) if c.name.casefold() in known]
    board_masks = storyboard_character_masks(run_dir, manifest, shot.index, cast, len(named) == 1 and named[0])
    out = []
    for who in [*named, *(n for n in cast if n in board_masks and n not in named)]:
        mask = board_masks.get(who)
        if mask is None or not mask.any():
            out.append(CharacterInShot(shot.index, who, who in named, []))
            continue
        masks = propagate_mask(frames, mask, models.flow)
        pixels = [int(m.sum()) for m in masks]
        found = [i for i, n in enumerate(pixels) if n]
        seen = CharacterInShot(shot.index, who, who in named, pixels)
        if found:
            crops, crop_masks = subject_crops([frames[i] for i in found], [masks[i] for i in found])
            for feat in models.features:
                emb = feat(crops, crop_masks)
                shot_emb.setdefault(who, {}).setdefault(feat.name, []).append(emb)
                seen.scores[feat.name] = {}
                for reference in cast:
                    per_frame = np.full(len(frames), np.nan, np.float32)
                    per_frame[found] = (emb @ ref_emb[reference][feat.name].T).mean(dim=1).numpy()
                    seen.scores[feat.name][reference] = per_frame
        out.append(seen)
    return out


def storyboard_character_masks(run_dir: Path, manifest: dict, index: int, cast: list[str],
                               alone: str | bool = False) -> dict[str, np.ndarray]:
    """Shot `index`'s storyboard mask of each character it holds, by cast name: those its storyboard frame
    records (`meta["character_masks"]`), else the files `shot_NN_mask_<name>.png`. A storyboard with no
    per-character mask whose shot shows one character (`alone`: its name) gives that character its mask."""
    known = {n.casefold(): n for n in cast}
    entry = (manifest.get("artifacts") or {}).get(shot_key(STORYBOARD_DIR, index)) or {}
    recorded = (entry.get("meta") or {}).get("character_masks") or {}
    board = run_dir / frame_path(index)
    if not recorded:
        recorded = {who: str(path.relative_to(run_dir)) for who in cast
                    if (path := board.with_name(f"{board.stem}_mask_{slugify(who, 30)}.png")).exists()}
    masks = {}
    for who, rel in recorded.items():
        mask = _read_mask(run_dir / rel)
        if who.casefold() in known and mask is not None:
            masks[known[who.casefold()]] = mask
    if not recorded and alone:
        union = _read_mask(board.with_name(board.stem + "_mask.png"))
        if union is not None:
            masks[str(alone)] = union
    return masks


def _cast_notes(refs: dict[str, ReferenceSubject], characters: list[CharacterInShot]) -> list[str]:
    cast = "; ".join(f"{who} ({ref.source}, {len(ref.frames)} frames)" for who, ref in refs.items())
    notes = [f"Cast: {cast}.",
             ("Subject NAME: that character's pixels inside its own mask (its storyboard mask carried through "
              "the clip by optical flow) against its own references; Inter-shot NAME: over the shots that show "
              "it. cast_consistency.md compares each character with every character's references.")]
    for seen in characters:
        if not seen.lost:
            continue
        if not seen.mask_pixels:
            notes.append(f"Shot {seen.shot} names {seen.name}, but its storyboard has no mask of {seen.name}.")
        else:
            empty = sum(1 for n in seen.mask_pixels if n == 0)
            notes.append(f"Shot {seen.shot}: {seen.name}'s mask, carried through the clip, is empty in {empty} "
                         f"of {len(seen.mask_pixels)} frames.")
    return notes


# ---- reports ----------------------------------------------------------------------------------

NO_REFERENCE_COLUMNS = ["IS", "CLIP-score", "CLIP-temp", "Warping error", "Flow score", "Aesthetic"]


def _columns(rows: list[dict[str, object]], preferred: list[str], cast: Sequence[str] = ()) -> list[str]:
    """The preferred columns present, then the subject columns: by kind, a cast's in its order (lead first)."""
    present = {k for r in rows for k in r}

    def order(key: str) -> tuple[str, int, str]:
        kind, _, rest = key.partition(" ")
        return kind, next((i for i, who in enumerate(cast) if rest.startswith(f"{who} (")), -1), key

    extra = sorted((k for k in present if k.startswith(("Subject", "Inter-shot"))), key=order)
    return [c for c in preferred if c in present] + extra


def write_film_report(result: FilmEval, out_dir: str | os.PathLike[str]) -> list[Path]:
    """`film_metrics.md/.csv` (per shot + mean), `subject_per_shot.png`, `subject_per_frame.png`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in result.shots] + [{"Shot": "mean", **result.summary}]
    cols = _columns(rows, NO_REFERENCE_COLUMNS, result.cast)
    written = list(write_tables(rows, cols, "Shot", out / "film_metrics", f"{result.name}: no-reference metrics",
                                result.notes, bold_best=False))
    if result.cast:
        written += write_cast_report(result, out)
    else:
        written += _plots({result.name: result}, out)
    return written


def cast_rows(result: FilmEval) -> list[dict[str, object]]:
    """A row per character per shot (and a mean row per character): its crops against every character's
    references, per feature, and the margin of its own score over the highest other."""
    rows: list[dict[str, object]] = []
    for seen in result.characters:
        found = sum(1 for n in seen.mask_pixels if n)
        row: dict[str, object] = {"Shot": seen.shot, "Character": seen.name + ("" if seen.named else " (not named)"),
                                  "In frames": found / len(seen.mask_pixels) if seen.mask_pixels else 0.0}
        for feat in result.features:
            for who in result.cast:
                row[f"vs {who} ({feat})"] = seen.against(feat, who)
            row[f"Margin ({feat})"] = seen.margin(feat)
        rows.append(row)
    for who in result.cast:
        mine = [r for r, seen in zip(rows, result.characters) if seen.name == who]
        if mine:
            mean: dict[str, object] = {"Shot": "mean", "Character": who}
            for key in [k for k in mine[0] if k not in ("Shot", "Character")]:
                vals = [float(r[key]) for r in mine if math.isfinite(float(r[key]))]
                mean[key] = float(np.mean(vals)) if vals else math.nan
            rows.append(mean)
    return rows


def write_cast_report(result: FilmEval, out: Path) -> list[Path]:
    """A cast's `cast_consistency.md/.csv` (`cast_rows`) and, per feature, each character's subject
    consistency per shot (bars) and per frame (curves)."""
    rows = cast_rows(result)
    cols = [c for c in rows[0] if c != "Shot"] if rows else []
    notes = [("vs NAME: the character's pixels inside its own mask against NAME's references (cosine similarity, "
              "1 = same); its own column should be the highest. Margin: its own score minus the highest other; "
              "above 0 the film keeps the characters apart. In frames: the share of the clip's frames in which its "
              "carried mask holds pixels.")]
    notes += [n for n in result.notes if n.startswith("Shot ")]
    written = list(write_tables(rows, cols, "Shot", out / "cast_consistency",
                                f"{result.name}: each character against every character's references", notes,
                                bold_best=False))
    counts = result.shot_frames
    for feat in result.features:
        by_shot = {who: [next((s.own(feat) for s in result.characters if s.name == who and s.shot == r["Shot"]),
                              math.nan) for r in result.shots] for who in result.cast}
        features = f"features: {feat}"
        written.append(bar_plot([f"shot {r['Shot']}" for r in result.shots], by_shot,
                                "Each character's consistency to its own references, per shot",
                                "cosine similarity (1 = same)", out / f"subject_per_shot_{feature_slug(feat)}.png",
                                y_range=(0.0, 1.0), xlabel="shot", subtitle=features))
        lines = {}
        for who in result.cast:
            parts = []
            for r, n in zip(result.shots, counts):
                seen = next((s for s in result.characters if s.name == who and s.shot == r["Shot"]), None)
                values = seen.scores.get(feat, {}).get(who) if seen is not None else None
                parts.append(values if values is not None else np.full(n, np.nan))
            lines[who] = np.concatenate(parts).tolist() if parts else []
        written.append(curve_plot(lines, "Each character's consistency to its own references, per frame",
                                  "cosine similarity (1 = same)", "frames, grouped by shot",
                                  out / f"subject_per_frame_{feature_slug(feat)}.png",
                                  breaks=np.cumsum(counts)[:-1].tolist(), y_range=(0.0, 1.0),
                                  segment_labels=[f"shot {r['Shot']}" for r in result.shots], subtitle=features))
    return written


def feature_slug(name: str) -> str:
    """A file-name part for a feature: "dino", "clip", "fallback" (the text before any colon)."""
    return re.sub(r"[^a-z0-9]+", "-", name.split(":")[0].lower()).strip("-") or "features"


def _plots(results: dict[str, FilmEval], out: Path) -> list[Path]:
    """Per feature: subject consistency per shot (bars) and per frame (curves, shot cuts marked and labelled)."""
    written: list[Path] = []
    with_curves = [r for r in results.values() if r.curves]  # a cast's plots are its own (`write_cast_report`)
    if not with_curves:
        return []
    any_result = with_curves[0]
    for feat in any_result.curves:
        n_shots = max(len(r.shots) for r in results.values())
        bars = {label: [float(s.get(f"Subject ({feat})", math.nan)) for s in r.shots] for label, r in results.items()}
        features = f"features: {feat}"
        written.append(bar_plot([f"shot {i + 1}" for i in range(n_shots)], bars,
                                "Subject consistency to the reference, per shot (cosine similarity)",
                                "cosine similarity (1 = same)", out / f"subject_per_shot_{feature_slug(feat)}.png",
                                y_range=(0.0, 1.0), xlabel="shot", subtitle=features))
        lines = {label: np.concatenate(r.curves[feat]).tolist() for label, r in results.items() if r.curves.get(feat)}
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
    cols = _columns(rows, NO_REFERENCE_COLUMNS, list(dict.fromkeys(who for r in results for who in r.cast)))
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    notes.append("The paper's Table 2 (open domain) beside these runs: table2.md.")
    written = list(write_tables(rows, cols, "Method", out / "compare", "Comparison of runs", notes))
    written += write_table2(results, out)
    written += _plots({r.name: r for r in results}, out)
    return written


def write_table2(results: list[FilmEval], out: Path) -> tuple[Path, Path]:
    """`table2.md/.csv`: each run's means beside the paper's Table 2 rows, in its columns (IS,
    CLIP-score, CLIP-temp, warping error, flow score as EvalCrafter computes them)."""
    from storyagent.eval.paper_tables import CITE, TABLE2_COLUMN, paper_table2_rows

    columns = ["Source", *TABLE2_COLUMN.values()]
    ours = [{"Method": r.name, "Source": "this run", **{c: r.summary.get(c) for c in TABLE2_COLUMN.values()}}
            for r in results]
    notes = [(f"Paper values: {CITE}, Table 2: 8 open-domain subjects, stories written by ChatGPT, no ground truth; "
              "ours are the runs given, so the rows compare methods, not the same films."),
             "A cell of ours reads – where its metric's weights were not given (see compare.md's notes)."]
    return write_tables(ours + paper_table2_rows(), columns, "Method", out / "table2",
                        "Our runs beside the paper's Table 2 (open domain)", notes, bold_best=False)

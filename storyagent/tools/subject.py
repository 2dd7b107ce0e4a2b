"""Tool: read the user's reference media into the run folder (frames + subject masks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storyagent.cast import LEAD_FOLDER, CastMember, reference_folder
from storyagent.config import RunConfig
from storyagent.hashing import hash_file, hash_json
from storyagent.media import (
    VIDEO_SUFFIXES,
    MaskPropagator,
    ReferenceMedia,
    load_reference,
    media_files,
    segment_subject,
    write_png,
)
from storyagent.media.reference import sibling_mask
from storyagent.models.device import default_device
from storyagent.schemas import Artifact, Subject
from storyagent.workspace import Workspace


@dataclass
class PreparedSubject:
    subject: Subject
    reference: ReferenceMedia
    input_hash: str
    """Hash of the source media's contents and the cut-out settings; every later stage depends on it."""


@dataclass
class LangSAMMasks:
    """The subject's masks as the paper makes them (Figs. 2-3): LangSAM finds the class word; where
    it finds nothing, the media cut-out (GrabCut) stands in, labelled so in the manifest."""

    class_word: str
    device: str = field(default_factory=default_device)
    name = "langsam"
    _pipe: Any = field(default=None, init=False, repr=False)

    def __call__(self, frames: Sequence[np.ndarray],
                 fallback: Sequence[tuple[np.ndarray, str]] | None = None) -> list[tuple[np.ndarray, str]]:
        """(mask, how it was found) per frame; `fallback` is each frame's cut-out when already made.

        LangSAM is loaded on the first call that has frames and kept (one load for all of a subject's
        files) until `release`.
        """
        if not frames:
            return []
        if self._pipe is None:
            from storyagent.models.langsam import LangSAMPipeline

            self._pipe = LangSAMPipeline.from_pretrained(device=self.device)
        found = self._pipe(list(frames), self.class_word)
        out = []
        for i, (frame, result) in enumerate(zip(frames, found)):
            if result.found:
                out.append((result.mask, "langsam"))
                continue
            mask, how = fallback[i] if fallback is not None else segment_subject(frame)
            out.append((mask, f"{how} (LangSAM found no {self.class_word})"))
        return out

    def release(self) -> None:
        """Drop LangSAM, so the next model has the GPU memory."""
        self._pipe = None


def clip_propagator(device: str | None = None) -> MaskPropagator | None:
    """SAM 2 where its weights are in the local cache (loaded on the first clip); None leaves clips to the
    flow-tracked cut-out. Asking costs no torch import, so the animatic path without the weights stays
    torch-free."""
    from storyagent.models import sam2

    return sam2.Sam2VideoMasks(device) if sam2.sam2_available() else None


def frame_key(number: int, folder: str = LEAD_FOLDER) -> str:
    """The manifest key of a character's reference frame `number` (from 1): `subject/frame_03` (the lead's),
    `cast/crong/frame_03`; its files are `frame_03.png` and `frame_03_mask.png` there."""
    return f"{folder}/frame_{number:02d}"


def dropped_key(number: int, folder: str = LEAD_FOLDER) -> str:
    """The manifest key of a sampled clip frame left out (`number` counts every sampled frame, from 1):
    `subject/dropped_08`, with `dropped_08.png` and `dropped_08_mask.png`."""
    return f"{folder}/dropped_{number:02d}"


def prepare_subject(ws: Workspace, cfg: RunConfig, masks: LangSAMMasks | None = None) -> PreparedSubject:
    """The lead character's reference frames (`prepare_character`)."""
    return prepare_character(ws, cfg.cast[0], cfg.max_reference_frames, masks)


def prepare_cast(ws: Workspace, cfg: RunConfig,
                 masks_for: Callable[[CastMember], LangSAMMasks | None]) -> list[PreparedSubject]:
    """Every character's reference frames, the lead first, each masked by `masks_for(character)`."""
    return [prepare_character(ws, member, cfg.max_reference_frames, masks_for(member), reference_folder(i, member.name))
            for i, member in enumerate(cfg.cast)]


def prepare_character(ws: Workspace, member: CastMember, max_frames: int, masks: LangSAMMasks | None = None,
                      folder: str = LEAD_FOLDER) -> PreparedSubject:
    """Read a character's reference media into `folder` (reused while the media are unchanged).

    Masks come from the media (a user's mask, the alpha channel), else a cut-out of each photo and of
    each clip's first frame (GrabCut; with `masks`, the diffusion backend's LangSAM where it finds the
    subject), carried through the clip by SAM 2 where its weights are cached, else by optical flow.
    Clip frames whose mask jumped are left out, each recorded as `dropped_key(n)` with its reason.
    """
    files = media_files(member.media)
    # Only clips are propagated: photos alone never ask after SAM 2 (nor import the Hugging Face hub).
    clips = any(f.suffix.lower() in VIDEO_SUFFIXES for f in files)
    propagator = clip_propagator(masks.device if masks is not None else None) if clips else None
    # Contents only, in reading order (it decides which frame is frame_01): the same media under
    # another spelling of their path (relative, absolute, through a symlink) reuse the frames.
    sources = [[hash_file(f), *([hash_file(m)] if (m := sibling_mask(f)) else [])] for f in files]
    h = hash_json({"sources": sources, "mask": hash_file(member.mask) if member.mask is not None else None,
                   "max_frames": max_frames, "masks": masks.name if masks else "cut-out",
                   "clips": propagator.name if propagator else "flow-tracked", "cut-out": 2})
    count = ws.manifest.reference_frames(folder)
    keys = [frame_key(i + 1, folder) for i in range(count)]
    if count and all(ws.fresh(k, h) for k in keys):
        ref = ReferenceMedia(frames=[], masks=[])
        for k in keys:
            entry = ws.manifest.artifact(k)
            ref.frames.append(np.asarray(Image.open(ws.path(entry["path"])).convert("RGB")))
            ref.masks.append(np.asarray(Image.open(ws.path(entry["mask_path"])).convert("L")) > 127)
            ref.mask_methods.append(entry["meta"]["mask_method"])
            ref.sources.append(Path(entry["meta"]["source"]))
    else:
        ws.manifest.set_stage("subject", "running", None if folder == LEAD_FOLDER else member.name)
        segment = (lambda frame: masks([frame])[0]) if masks is not None else None
        try:
            ref = load_reference(member.media, max_frames, member.mask, segment, propagator)
        finally:
            for model in (masks, propagator):
                if model is not None:
                    model.release()
        for i, (frame, mask) in enumerate(zip(ref.frames, ref.masks)):
            meta = {"mask_method": ref.mask_methods[i], "source": str(ref.sources[i])}
            _write_frame(ws, frame_key(i + 1, folder), frame, mask, h, meta)
        for d in ref.dropped:
            meta = {"mask_method": d.mask_method, "source": str(d.source), "dropped": d.reason}
            _write_frame(ws, dropped_key(d.number, folder), d.frame, d.mask, h, meta, kind="dropped_subject_frame")
        ws.manifest.set_reference_frames(len(ref.frames), folder)
        note = "; ".join(f"frame {d.number} of {d.source.name} left out: {d.reason}" for d in ref.dropped)
        if note and folder != LEAD_FOLDER:
            note = f"{member.name}: {note}"
        ws.manifest.set_stage("subject", "done", note or None)
    n = len(ref.frames)
    subject = Subject(
        name=member.name, class_word=member.class_word, reference_media=files,
        frames=[ws.path(frame_key(i + 1, folder) + ".png") for i in range(n)],
        masks=[ws.path(frame_key(i + 1, folder) + "_mask.png") for i in range(n)],
    )
    return PreparedSubject(subject=subject, reference=ref, input_hash=h)


def _write_frame(ws: Workspace, key: str, frame: np.ndarray, mask: np.ndarray, input_hash: str,
                 meta: dict[str, Any], kind: str = "subject_frame") -> None:
    rel, mrel = key + ".png", key + "_mask.png"
    write_png(ws.path(rel), frame)
    write_png(ws.path(mrel), (mask * 255).astype(np.uint8))
    ws.record(key, Artifact(kind=kind, path=rel, mask_path=mrel, input_hash=input_hash, meta=meta))

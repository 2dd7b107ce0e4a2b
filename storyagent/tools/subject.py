"""Tool: read the user's reference media into the run folder (frames + subject masks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from storyagent.config import RunConfig
from storyagent.media import ReferenceMedia, load_reference, media_files, write_png
from storyagent.schemas import Artifact, Subject
from storyagent.workspace import Workspace, hash_file, hash_json


@dataclass
class PreparedSubject:
    subject: Subject
    reference: ReferenceMedia
    input_hash: str
    """Hash of the source media's contents and the cut-out settings; every later stage depends on it."""


def frame_key(number: int) -> str:
    """The manifest key of the subject's reference frame `number` (from 1): `subject/frame_03`; its
    files are `frame_03.png` and `frame_03_mask.png`."""
    return f"subject/frame_{number:02d}"


def prepare_subject(ws: Workspace, cfg: RunConfig) -> PreparedSubject:
    """Read the subject's reference media into `subject/` (reused while the media are unchanged)."""
    files = media_files(cfg.subject)
    sources = {str(f): hash_file(f) for f in files}
    if cfg.mask is not None:
        sources[f"mask:{cfg.mask}"] = hash_file(cfg.mask)
    h = hash_json({"sources": sources, "max_frames": cfg.max_reference_frames})
    count = ws.manifest.get("subject_frames", 0)
    keys = [frame_key(i + 1) for i in range(count)]
    if count and all(ws.fresh(k, h) for k in keys):
        ref = ReferenceMedia(frames=[], masks=[], sources=files)
        for k in keys:
            entry = ws.artifact(k)
            ref.frames.append(np.asarray(Image.open(ws.path(entry["path"])).convert("RGB")))
            ref.masks.append(np.asarray(Image.open(ws.path(entry["mask_path"])).convert("L")) > 127)
    else:
        ws.set_stage("subject", "running")
        ref = load_reference(cfg.subject, cfg.max_reference_frames, cfg.mask)
        for i, (frame, mask) in enumerate(zip(ref.frames, ref.masks)):
            rel, mrel = frame_key(i + 1) + ".png", frame_key(i + 1) + "_mask.png"
            write_png(ws.path(rel), frame)
            write_png(ws.path(mrel), (mask * 255).astype(np.uint8))
            ws.record(frame_key(i + 1), Artifact(
                kind="subject_frame", path=rel, mask_path=mrel, input_hash=h,
                meta={"mask_method": ref.mask_methods[i], "source": str(ref.sources[i])}))
        ws.manifest["subject_frames"] = len(ref.frames)
        ws.set_stage("subject", "done")
    n = len(ref.frames)
    subject = Subject(
        name=cfg.name, class_word=cfg.class_word, reference_media=files,
        frames=[ws.path(frame_key(i + 1) + ".png") for i in range(n)],
        masks=[ws.path(frame_key(i + 1) + "_mask.png") for i in range(n)],
    )
    return PreparedSubject(subject=subject, reference=ref, input_hash=h)

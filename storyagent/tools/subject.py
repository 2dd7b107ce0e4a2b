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


def prepare_subject(ws: Workspace, cfg: RunConfig) -> PreparedSubject:
    files = media_files(cfg.subject)
    sources = {str(f): hash_file(f) for f in files}
    if cfg.mask is not None:
        sources[f"mask:{cfg.mask}"] = hash_file(cfg.mask)
    h = hash_json({"sources": sources, "max_frames": cfg.max_reference_frames})
    count = ws.manifest.get("subject_frames", 0)
    keys = [f"subject/frame_{i + 1:02d}" for i in range(count)]
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
            rel, mrel = f"subject/frame_{i + 1:02d}.png", f"subject/frame_{i + 1:02d}_mask.png"
            write_png(ws.path(rel), frame)
            write_png(ws.path(mrel), (mask * 255).astype(np.uint8))
            ws.record(f"subject/frame_{i + 1:02d}", Artifact(
                kind="subject_frame", path=rel, mask_path=mrel, input_hash=h,
                meta={"mask_method": ref.mask_methods[i], "source": str(ref.sources[i])}))
        ws.manifest["subject_frames"] = len(ref.frames)
        ws.set_stage("subject", "done")
    n = len(ref.frames)
    subject = Subject(
        name=cfg.name, class_word=cfg.class_word, reference_media=files,
        frames=[ws.path(f"subject/frame_{i + 1:02d}.png") for i in range(n)],
        masks=[ws.path(f"subject/frame_{i + 1:02d}_mask.png") for i in range(n)],
    )
    return PreparedSubject(subject=subject, reference=ref, input_hash=h)

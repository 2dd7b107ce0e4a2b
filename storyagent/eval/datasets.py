"""Story-visualisation datasets (PororoSV, FlintstonesSV) read for the paper's protocol (Sec. 4).

A `DatasetIndex` lists every clip with its episode and the characters in it, in the dataset's
order, and loads one clip with one character's subject mask on demand. The protocol
(`dataset_protocol.py`) picks, per character, a training episode (the reference videos) and test
samples of four shots from other episodes (`dataset_split.py`).

Layouts read:
- FlintstonesSV: `DIR/flintstones_annotations_v1-0.json` (a list of {globalID, description,
  characters: [{entityLabel, labelNPC, rectangles: [[x1, y1, x2, y2], ...]}]}) and
  `DIR/video_frames_sampled/<globalID>.npy` (T×H×W×3 uint8, 5×128×128 in the release). The
  episode is the globalID's `s_SS_e_EE` part. A character's subject mask is its first rectangle
  (rescaled from the 640×480 source video when it lies outside the frame), refined by GrabCut.
  The released clips have 5 frames, too few for FVD's 16-frame clips: a clip's source video, when
  given as `DIR/video_frames/<globalID>.npy` (T×H×W×3 uint8, T >= 16: the Flintstones dataset's
  own clip), gives its FVD clip, resized to the sampled frames' size.
- PororoSV: `DIR/pororo_png/<episode>/<n>.png`, each a clip stored as square frames stacked
  vertically; captions from `DIR/descriptions.csv` (`id,text` with id `<episode>/<n>`). The
  characters of a clip are those its caption names (PororoSV ships no per-clip boxes);
  `DIR/characters.json` ({"<episode>/<n>": ["pororo", ...]}) overrides that when present.
  Subject masks from `DIR/masks/<episode>/<n>_<character>.png` or `DIR/masks/<episode>/<n>.png`
  when present, else the media module's GrabCut cut-out. A clip of 16 frames or more is its own
  FVD clip.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from storyagent.errors import InputError
from storyagent.media import segment_subject

# The PororoSV cast (the nine characters of the dataset's label vectors).
PORORO_CAST = ("pororo", "crong", "eddy", "loopy", "poby", "petty", "harry", "rody", "tongtong")


@dataclass
class GroundTruthClip:
    clip_id: str
    frames: list[np.ndarray]
    subject_mask: np.ndarray
    """Where the subject is in the first frame (bool H×W)."""
    text: str = ""
    episode: str = ""
    character: str = ""
    source_frames: list[np.ndarray] | None = None
    """The clip's source video at `frames`' size when the dataset ships more frames than `frames`
    (FlintstonesSV's `video_frames/`); None: `frames` are all there is."""

    def fvd_frames(self, count: int = 16) -> list[np.ndarray] | None:
        """`count` consecutive frames for FVD (StyleGAN-V's `load_n_consecutive`): the first of the
        source video, else of the clip; None when neither has that many (FVD's clip cannot be made)."""
        for frames in (self.source_frames, self.frames):
            if frames is not None and len(frames) >= count:
                return list(frames[:count])
        return None


@dataclass
class SubjectReference:
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    clip_ids: list[str] = field(default_factory=list)
    """The clips the frames come from (the protocol checks none of them is a test clip)."""
    mask_methods: list[str] = field(default_factory=list)
    """How each mask was made ("langsam", "dataset mask", ...); empty: the dataset's masks."""


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    episode: str
    characters: frozenset[str]
    text: str = ""


class DatasetIndex:
    """Every clip of a dataset with its episode and characters; `load` reads one clip."""

    format: str = ""

    def __init__(self, root: Path, clips: list[ClipInfo]) -> None:
        self.root = root
        self.clips = {c.clip_id: c for c in clips}

    def of(self, character: str) -> list[ClipInfo]:
        """The clips `character` is in, in the dataset's order."""
        name = character.lower()
        return [c for c in self.clips.values() if name in c.characters]

    def info(self, clip_id: str) -> ClipInfo:
        if clip_id not in self.clips:
            raise InputError(f"Clip {clip_id!r} is not in {self.root}; check the split file against the dataset.")
        return self.clips[clip_id]

    def load(self, clip_id: str, character: str) -> GroundTruthClip:
        raise NotImplementedError


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


# ---- FlintstonesSV ----------------------------------------------------------------------------

def flintstones_episode(global_id: str) -> str:
    found = re.match(r"(s_\d+_e_\d+)", global_id)
    return found.group(1) if found else global_id.split("_shot")[0]


def flintstones_names(character: dict) -> set[str]:
    """The lower-case names an annotated FlintstonesSV character answers to (entity label, NPC label)."""
    return {n for n in (str(character.get("entityLabel", "")).lower(), str(character.get("labelNPC", "")).lower()) if n}


class FlintstonesIndex(DatasetIndex):
    format = "flintstones"

    def __init__(self, root: Path) -> None:
        ann_path = root / "flintstones_annotations_v1-0.json"
        if not ann_path.exists():
            raise InputError(f"{root} is not a FlintstonesSV folder: {ann_path.name} is missing.")
        self.items = {}
        clips = []
        for item in json.loads(ann_path.read_text(encoding="utf-8")):
            gid = str(item["globalID"])
            if not (root / "video_frames_sampled" / f"{gid}.npy").exists():
                continue
            names = frozenset(n for c in item.get("characters", []) if c.get("rectangles") for n in flintstones_names(c))
            self.items[gid] = item
            clips.append(ClipInfo(gid, flintstones_episode(gid), names, item.get("description", "")))
        super().__init__(root, clips)

    def load(self, clip_id: str, character: str) -> GroundTruthClip:
        info, item, wanted = self.info(clip_id), self.items[clip_id], character.lower()
        frames = np.load(self.root / "video_frames_sampled" / f"{clip_id}.npy", allow_pickle=False)
        frames = [np.ascontiguousarray(f[..., :3]).astype(np.uint8) for f in frames]
        h, w = frames[0].shape[:2]
        match = next(c for c in item["characters"] if c.get("rectangles") and wanted in flintstones_names(c))
        box = [float(v) for v in match["rectangles"][0]]
        if max(box[0], box[2]) > w or max(box[1], box[3]) > h:
            # Boxes annotated on the source video (640×480) while the sampled frames are smaller.
            box = [box[0] * w / 640, box[1] * h / 480, box[2] * w / 640, box[3] * h / 480]
        return GroundTruthClip(clip_id, frames, _box_mask((h, w), box, frames[0]), info.text, info.episode, wanted,
                               self.source_frames(clip_id, (h, w)))

    def source_frames(self, clip_id: str, size: tuple[int, int]) -> list[np.ndarray] | None:
        """The clip's source video (`video_frames/<globalID>.npy`), each frame resized to `size` as the
        sampled frames were; None when the folder does not hold it."""
        path = self.root / "video_frames" / f"{clip_id}.npy"
        if not path.exists():
            return None
        video = np.load(path, allow_pickle=False)
        h, w = size
        return [cv2.resize(np.ascontiguousarray(f[..., :3]).astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA)
                for f in video]


# ---- PororoSV ---------------------------------------------------------------------------------

class PororoIndex(DatasetIndex):
    format = "pororo"

    def __init__(self, root: Path) -> None:
        png_root = root / "pororo_png"
        if not png_root.is_dir():
            raise InputError(f"{root} is not a PororoSV folder: pororo_png/ is missing.")
        captions: dict[str, str] = {}
        if (root / "descriptions.csv").exists():
            with (root / "descriptions.csv").open(encoding="utf-8") as fh:
                for row in csv.reader(fh):
                    if len(row) >= 2:
                        captions[row[0].removesuffix(".png")] = row[-1]
        given = {}
        if (root / "characters.json").exists():
            given = {k: frozenset(n.lower() for n in v)
                     for k, v in json.loads((root / "characters.json").read_text(encoding="utf-8")).items()}
        clips = []
        for path in sorted(png_root.glob("*/*.png"), key=lambda p: (p.parent.name, _num(p.stem))):
            clip_id = f"{path.parent.name}/{path.stem}"
            text = captions.get(clip_id, "")
            words = set(re.findall(r"[a-z]+", text.lower()))
            clips.append(ClipInfo(clip_id, path.parent.name, given.get(clip_id, frozenset(words & set(PORORO_CAST))), text))
        super().__init__(root, clips)

    def load(self, clip_id: str, character: str) -> GroundTruthClip:
        info = self.info(clip_id)
        episode, n = clip_id.split("/", 1)
        strip = np.asarray(Image.open(self.root / "pororo_png" / episode / f"{n}.png").convert("RGB"))
        side = strip.shape[1]
        frames = [np.ascontiguousarray(strip[i * side:(i + 1) * side]) for i in range(strip.shape[0] // side)]
        if not frames:
            raise InputError(f"{clip_id} holds no square frame; PororoSV clips are frames stacked vertically.")
        masks = self.root / "masks" / episode
        for mask_path in (masks / f"{n}_{character.lower()}.png", masks / f"{n}.png"):
            if mask_path.exists():
                mask = np.asarray(Image.open(mask_path).convert("L").resize((side, side), Image.NEAREST)) > 127
                break
        else:
            mask, _ = segment_subject(frames[0])
        return GroundTruthClip(clip_id, frames, mask, info.text, info.episode, character.lower())


def _num(stem: str) -> int | str:
    return int(stem) if stem.isdigit() else stem


def open_dataset(root: Path, format: str) -> DatasetIndex:
    if format not in ("pororo", "flintstones"):
        raise InputError(f"--format must be pororo or flintstones, got {format!r}.")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the dataset's root folder.")
    return PororoIndex(root) if format == "pororo" else FlintstonesIndex(root)


def read_flintstones(root: Path, character: str, limit: int | None = None) -> Iterator[GroundTruthClip]:
    """Every FlintstonesSV clip with `character`, its subject mask found (no split)."""
    index = FlintstonesIndex(root)
    count = 0
    for info in index.of(character):
        clip = index.load(info.clip_id, character)
        if clip.subject_mask.any():
            yield clip
            count += 1
            if limit and count >= limit:
                return


def read_pororo(root: Path, limit: int | None = None) -> Iterator[GroundTruthClip]:
    """Every PororoSV clip whose subject (the clip's first cast member, else its cut-out) is found."""
    index = PororoIndex(root)
    count = 0
    for info in index.clips.values():
        clip = index.load(info.clip_id, min(info.characters, default=""))
        if clip.subject_mask.any() and not clip.subject_mask.all():
            yield clip
            count += 1
            if limit and count >= limit:
                return

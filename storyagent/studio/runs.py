"""The studio's run folders: run ids, uploads, earlier runs, cut-out previews and story edits.

Every path the page can name goes through `run_folder`, which only answers folders directly inside
`--runs`; uploads are copied in under names chosen here, never under the name the browser sent.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from storyagent.errors import InputError
from storyagent.fileio import atomic_write_json
from storyagent.manifest import MANIFEST, read_run
from storyagent.media.reading import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from storyagent.schemas import StoryScript, format_validation_error

RUN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UPLOADS = 32
MAX_TOTAL_UPLOAD_BYTES = 1024 * 1024 * 1024
"""All of one film's uploads together: a reference needs a few short clips, not a film archive."""
AUDIO_SUFFIXES = {".wav", ".mp3", ".ogg", ".flac", ".m4a", ".aac", ".opus"}
"""Music files the studio takes as the user's own score."""
UPLOADS = "uploads"
"""Where a run's uploaded photos and clips of its (first) character are kept, inside its run folder; the
rest of the cast's are in uploads_02/, uploads_03/ ... (`uploads_folder`)."""
STORY_COLUMNS = ["shot", "shot type", "camera", "background", "action", "narration"]
EDITABLE = {"background": "background", "action": "subject_action", "narration": "narration",
            "shot type": "shot_type", "camera": "camera_motion"}
"""Table column -> story.json field, for the columns a person may edit."""
CACHE = ".studio-cache"
"""The studio's own files inside --runs (Gradio's upload cache, the clips' posters); never a run id."""
PREVIEW_HEIGHT = 256
"""Height in pixels of each cut-out in the upload preview strip."""


LLM_FORMS = ("none", "offline", "openai:", "ollama:", "openai-compatible:")


def check_llm(spec: str) -> str:
    """The LLM setting when the studio takes it. A config-list file is refused here: the page must not
    make the server open a file outside --runs (`storyagent run --llm FILE` takes one)."""
    from storyagent.agents.llm import parse_llm

    if not spec.strip().lower().startswith(LLM_FORMS):
        raise InputError(f"LLM {spec!r} is not one the studio takes; use none, openai:MODEL, ollama:MODEL or "
                         "openai-compatible:MODEL@http://host:port/v1.")
    parse_llm(spec)
    return spec.strip()


def run_folder(runs: Path, run_id: str) -> Path:
    """The folder of run `run_id` inside `runs`; anything else (a path, `..`, a link out) is refused."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InputError("That run id is not valid; pick a run from the list of earlier runs.")
    base = runs.resolve()
    folder = (base / run_id).resolve()
    if folder.parent != base:
        raise InputError("That run id is not valid; pick a run from the list of earlier runs.")
    return folder


def new_run_id(runs: Path, prompt: str) -> str:
    """A fresh run id from the prompt's words and the time: 'a-day-at-the-seaside-0512-3'."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48].rstrip("-") or "story"
    stem = f"{slug}-{time.strftime('%H%M%S')}"
    for n in range(1000):
        run_id = stem if n == 0 else f"{stem}-{n}"
        if not (runs / run_id).exists():
            return run_id
    raise InputError(f"Too many runs named {stem!r} in {runs}; wait a second and try again.")


def earlier_runs(runs: Path) -> list[str]:
    """Run ids of the finished or started runs in `runs`, newest first."""
    found: list[tuple[int, str]] = []
    for folder in runs.iterdir() if runs.is_dir() else []:
        manifest = folder / MANIFEST
        if RUN_ID.fullmatch(folder.name) and not folder.is_symlink() and manifest.is_file():
            found.append((manifest.stat().st_mtime_ns, folder.name))
    return [name for _, name in sorted(found, reverse=True)]


def check_uploads(files: list[str | Path] | None) -> list[Path]:
    """The uploaded files when each is a photo or clip of a size the studio takes; else one sentence."""
    paths = [Path(f) for f in files or []]
    if not paths:
        raise InputError("Upload at least one photo or short clip of your character.")
    if len(paths) > MAX_UPLOADS:
        raise InputError(f"{len(paths)} files were uploaded; the studio takes at most {MAX_UPLOADS}.")
    allowed = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    total = 0
    for p in paths:
        if p.suffix.lower() not in allowed:
            raise InputError(f"{p.name} is not a photo or clip; upload png/jpg/webp pictures or mp4/mov/webm/gif clips.")
        size = p.stat().st_size
        if size == 0:
            raise InputError(f"{p.name} is empty; upload the photo or clip again.")
        if size > MAX_UPLOAD_BYTES:
            raise InputError(f"{p.name} is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.")
        total += size
    if total > MAX_TOTAL_UPLOAD_BYTES:
        raise InputError(f"The uploads come to {total / 2**20:.0f} MB; the limit is {MAX_TOTAL_UPLOAD_BYTES // 2**20} MB "
                         "for one film: a few short clips are enough.")
    return paths


def check_track(track: str | Path | None) -> Path | None:
    """The user's own music upload when it is an audio file of a size the studio takes; None when none."""
    if track is None or not str(track).strip():
        return None
    path = Path(track)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise InputError(f"{path.name} is not a music file; upload {'/'.join(s[1:] for s in sorted(AUDIO_SUFFIXES))} "
                         "audio, or leave the music to the studio.")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty; upload the music again.")
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.")
    return path


def store_track(track: Path, folder: Path) -> Path:
    """Copy the checked music upload into the run folder as music_upload.EXT (never under the browser's
    name; beside uploads/, which is the subject's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"music_upload{track.suffix.lower()}"
    shutil.copyfile(track, target)
    return target


def uploads_folder(character: int) -> str:
    """The folder in a run folder holding the uploads of character number `character` (1: the lead)."""
    return UPLOADS if character == 1 else f"{UPLOADS}_{character:02d}"


def store_uploads(files: list[Path], folder: Path, into: str = UPLOADS) -> Path:
    """Copy the checked uploads into `folder/<into>/` (default uploads/) as upload_01.png ...; a photo's
    mask ('pip_mask.png' beside 'pip.png') keeps its pairing as upload_NN_mask.png."""
    dest = folder / into
    dest.mkdir(parents=True, exist_ok=True)
    masks = _masks_of(files)
    number = 0
    for p in files:
        if p in masks.values() and p.stem.lower()[: -len("_mask")] in {q.stem.lower() for q in files}:
            continue
        number += 1
        name = f"upload_{number:02d}{p.suffix.lower()}"
        shutil.copyfile(p, dest / name)
        if (mask := masks.get(p.stem.lower())) is not None:
            shutil.copyfile(mask, dest / f"upload_{number:02d}_mask.png")
    return dest


def _masks_of(files: list[Path]) -> dict[str, Path]:
    """The uploaded masks by the stem of the photo each belongs to ('pip_mask.png' -> 'pip'). Gradio keeps
    each upload in a folder of its own, so a mask is paired by its name, never found beside its photo."""
    return {p.stem.lower()[: -len("_mask")]: p for p in files if p.stem.lower().endswith("_mask")}


def cutout_preview(files: list[Path], height: int = PREVIEW_HEIGHT) -> tuple[np.ndarray | None, str]:
    """Each upload's first frame cut out as the animatic backend cuts it, side by side in one RGBA
    strip (each scaled to `height`, aspect kept), and a caption naming each file's mask method; no
    picture while only masks are uploaded.

    One picture, not a gallery: a gallery cell is a square as wide as its column, which crops a tall
    cut-out in a short box; one image in an image box is scaled to fit the box whole."""
    import cv2

    from storyagent.media import load_reference, subject_cutout

    cutouts, captions = [], []
    masks = _masks_of(files)
    for p in files:
        if p.stem.lower().endswith("_mask"):
            continue
        mask = masks.get(p.stem.lower()) if p.suffix.lower() in IMAGE_SUFFIXES else None
        ref = load_reference(p, max_frames=1, mask=mask)
        cutout = subject_cutout(ref.frames[0], ref.masks[0])
        width = max(1, round(cutout.shape[1] * height / cutout.shape[0]))
        cutouts.append(cv2.resize(cutout, (width, height), interpolation=cv2.INTER_AREA))
        captions.append(f"{p.name}: {ref.mask_methods[0]}")
    if not cutouts:
        return None, ""
    gap = np.zeros((height, max(1, height // 8), 4), np.uint8)
    strip = np.concatenate([part for c in cutouts for part in (gap, c)][1:], axis=1)
    return strip, "; ".join(captions)


def clip_poster(clip: Path, folder: Path) -> Path:
    """The first frame of `clip` as a png in `folder` (the page's poster for the clip's player).

    The name carries the clip's modification time, so a redone clip gets a new poster address and a
    browser never shows the old picture from its cache; older posters of the clip are removed."""
    from storyagent.media import read_video, write_png

    stamp = clip.stat().st_mtime_ns
    poster = folder / f"{clip.stem}-{stamp}.png"
    if not poster.is_file():
        frames, _ = read_video(clip, max_frames=1)
        folder.mkdir(parents=True, exist_ok=True)
        write_png(poster, frames[0])
        for old in folder.glob(f"{clip.stem}-*.png"):
            if old != poster:
                old.unlink(missing_ok=True)
    return poster


def _actions(shot: dict[str, Any]) -> str:
    """A shot's action cell: its action, or for a shot of several characters each one's ("Pip: waves; Mo: hops")."""
    if not shot.get("characters"):
        return shot["subject_action"]
    return "; ".join(f"{c['name']}: {c['action']}" for c in shot["characters"])


def _edit_actions(shot: dict[str, Any], text: str, lead: str | None) -> bool:
    """Put an edited action cell back into `shot`; True when it changed anything. In a shot of several
    characters the cell names each of them once ("Pip: waves; Mo: hops"); the lead's action is also the
    shot's `subject_action`."""
    if not shot.get("characters"):
        if text == shot["subject_action"]:
            return False
        shot["subject_action"] = text
        return True
    if text == _actions(shot):
        return False
    names = [c["name"] for c in shot["characters"]]
    said: dict[str, str] = {}
    for part in filter(str.strip, text.split(";")):
        who, sep, action = part.partition(":")
        match = next((n for n in names if n.casefold() == who.strip().casefold()), None)
        if not sep or match is None or match in said or not action.strip():
            break
        said[match] = action.strip()
    if sorted(said) != sorted(names):
        raise InputError(f"Shot {shot['index']}'s action names each of its characters once, as "
                         f"{'; '.join(f'{n}: what {n} does' for n in names)}.")
    for character in shot["characters"]:
        character["action"] = said[character["name"]]
        if lead is not None and character["name"].casefold() == lead.casefold():
            shot["subject_action"] = character["action"]
    return True


def story_rows(folder: Path) -> list[list[Any]]:
    """The story as table rows (see STORY_COLUMNS), read from the run's story.json."""
    story = json.loads((folder / "story.json").read_text(encoding="utf-8"))
    return [[s["index"], s["shot_type"], s["camera_motion"], s["background"], _actions(s), s["narration"]]
            for s in story["shots"]]


def save_story_edits(folder: Path, rows: list[list[Any]]) -> bool:
    """Write the table's edits into story.json (atomically, validated); True when anything changed."""
    path = folder / "story.json"
    story = json.loads(path.read_text(encoding="utf-8"))
    if len(rows) != len(story["shots"]):
        raise InputError(f"The table has {len(rows)} rows and the story {len(story['shots'])} shots; "
                         "edit the cells, do not add or remove rows.")
    run = read_run(folder) if any(s.get("characters") for s in story["shots"]) else None
    lead = str(run.inputs.get("name")) if run is not None else None
    changed = False
    for shot, row in zip(story["shots"], rows):
        for column, field in EDITABLE.items():
            value = str(row[STORY_COLUMNS.index(column)]).strip()
            if field == "subject_action":
                changed |= _edit_actions(shot, value, lead)
            elif value != str(shot[field]):
                shot[field], changed = value, True
    if not changed:
        return False
    try:
        StoryScript.model_validate(story)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, "story edit")) from exc
    atomic_write_json(path, story)
    return True


def run_inputs(folder: Path) -> dict[str, Any]:
    """The inputs a run was started with (as `chat --resume` restores them); one sentence when none."""
    manifest = read_run(folder) if folder.is_dir() else None
    if manifest is None:
        raise InputError(f"There is no run named {folder.name!r} to reopen; start a new film instead.")
    return manifest.inputs

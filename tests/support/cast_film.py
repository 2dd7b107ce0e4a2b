"""What a two-character film of the example cast (Pip the fox, Mo the owl) holds, checked the same way for
every front end that makes one (run, chat, studio)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from storyagent.fileio import slugify
from tests.support.paths import ROOT

EXAMPLES = ROOT / "examples"
MO = EXAMPLES / "mo" / "mo.jpg"
MO_MASK = EXAMPLES / "mo" / "mo_mask.png"
CAST_TOML = EXAMPLES / "cast.toml"


def mean_colour(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean RGB inside `mask`."""
    return picture[mask].astype(float).mean(axis=0)


def reference_colours(root: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each character's mean colour in its first reference frame of the run (the lead's in subject/)."""
    colours = {}
    for i, name in enumerate(names):
        folder = root / ("subject" if i == 0 else f"cast/{slugify(name, 30)}")
        frame = np.asarray(Image.open(folder / "frame_01.png").convert("RGB"))
        colours[name] = mean_colour(frame, np.asarray(Image.open(folder / "frame_01_mask.png").convert("L")) > 127)
    return colours


def assert_two_character_film(root: Path, lead: str = "Pip", other: str = "Mo") -> dict:
    """`root` is a finished film of `lead` and `other` in which every shot that names both shows both, each
    in its own mask, whose colours are nearer its own reference's than the other's; returns the story."""
    inputs = json.loads((root / "manifest.json").read_text())["inputs"]
    assert inputs["name"] == lead and [m["name"] for m in inputs["supporting"]] == [other], inputs
    slug = slugify(other, 30)
    assert (root / "cast" / slug / "frame_01.png").is_file() and (root / "cast" / slug / "frame_01_mask.png").is_file()
    assert (root / "film.mp4").is_file()
    story = json.loads((root / "story.json").read_text())
    both = [s for s in story["shots"] if {c["name"] for c in s.get("characters", [])} >= {lead, other}]
    assert both, f"no shot of {root / 'story.json'} shows both {lead} and {other}"
    references = reference_colours(root, (lead, other))
    for shot in both:
        picture = np.asarray(Image.open(root / f"storyboard/shot_{shot['index']:02d}.png").convert("RGB"))
        for who in (lead, other):
            mask = np.asarray(Image.open(root / f"storyboard/shot_{shot['index']:02d}_mask_{slugify(who, 30)}.png")
                              .convert("L")) > 127
            assert mask.sum() > 0.005 * mask.size, f"shot {shot['index']} has no pixels of {who}"
            seen = mean_colour(picture, mask)
            nearest = min(references, key=lambda name: np.linalg.norm(seen - references[name]))
            assert nearest == who, f"shot {shot['index']}: {who}'s mask holds colours nearer {nearest}'s"
    return story

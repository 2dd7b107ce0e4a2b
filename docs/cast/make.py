"""Render the two-character storyboard shown in docs/cast/README.md and the README (issue 25).

    python docs/cast/make.py

The example cast (`examples/cast.toml`: Pip the fox, Mo the owl) is made into a 4-shot animatic film,
silent; the run's storyboard contact sheet is stored here as `storyboard.png`, and each shot's
per-character masks as `masks.png` (Pip's tinted orange, Mo's violet, where they overlap the nearer
character's), both in 256 colours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CAST = ROOT / "examples" / "cast.toml"
PROMPT = "two friends build a raft"
TINTS = {"Pip": (236, 120, 40), "Mo": (118, 72, 168)}


def mask_sheet(run: Path) -> Image.Image:
    """One small picture per shot (half the storyboard's size): black, with each character's storyboard mask
    in its tint, captioned with who the shot shows."""
    from storyagent.fileio import slugify
    from storyagent.schemas import ShotCharacter, front_to_back

    story = json.loads((run / "story.json").read_text(encoding="utf-8"))
    tiles = []
    for shot in story["shots"]:
        index = shot["index"]
        base = np.asarray(Image.open(run / f"storyboard/shot_{index:02d}.png").convert("RGB"))
        tile = np.zeros_like(base)
        # Drawn back to front, as the renderer draws them: where masks overlap, the nearer character's tint shows.
        for character in reversed(front_to_back([ShotCharacter(**c) for c in shot.get("characters", [])])):
            path = run / f"storyboard/shot_{index:02d}_mask_{slugify(character.name, 30)}.png"
            if path.is_file():
                tile[np.asarray(Image.open(path).convert("L")) > 127] = TINTS.get(character.name, (200, 200, 200))
        picture = Image.fromarray(tile)
        picture = picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.NEAREST)
        who = ", ".join(c["name"] for c in shot.get("characters", [])) or "(the lead alone)"
        ImageDraw.Draw(picture).text((6, 4), f"shot {index}: {who}", fill=(255, 255, 255))
        tiles.append(picture)
    gap = 8
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), tiles[0].height), (255, 255, 255))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + gap
    return sheet


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        env = os.environ | {"STORYAGENT_VOICE": "none", "STORYAGENT_MUSIC": "none"}
        subprocess.run([sys.executable, "-m", "storyagent", "run", PROMPT, "--cast", str(CAST), "--shots", "4",
                        "--out", str(run), "--quiet"], check=True, env=env)
        # 256 colours keep a contact sheet readable at about half the bytes.
        Image.open(run / "storyboard.png").convert("RGB").quantize(256).save(HERE / "storyboard.png", optimize=True)
        mask_sheet(run).quantize(256).save(HERE / "masks.png", optimize=True)
        (HERE / "story.json").write_bytes((run / "story.json").read_bytes())
    print(f"wrote {HERE / 'storyboard.png'}, {HERE / 'masks.png'} and {HERE / 'story.json'} ({PROMPT!r})")


if __name__ == "__main__":
    main()

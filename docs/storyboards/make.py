"""Render the storyboards shown in docs/storyboards/README.md (issue 23: before and after).

    python docs/storyboards/make.py after                          # this checkout
    PYTHONPATH=/path/to/old/checkout python docs/storyboards/make.py before

Each prompt is made into a 4-shot animatic film from examples/pip/pip.png; the run's storyboard
contact sheet is stored here (256 colours) as `<slug>_<label>.png`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SUBJECT = HERE.parents[1] / "examples" / "pip" / "pip.png"
PROMPTS = {
    "fox_swim": ("a fox learns to swim", "fox"),
    "astronaut_jungle": ("an astronaut lost in a jungle", "character"),
    "cup_moon": ("a coffee cup travels to the moon", "character"),
}


def main(label: str) -> None:
    for slug, (prompt, class_word) in PROMPTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            subprocess.run([sys.executable, "-m", "storyagent", "run", prompt, "-s", str(SUBJECT), "--name", "Pip",
                            "--class-word", class_word, "--shots", "4", "--out", str(out), "--quiet"],
                           check=True, env=os.environ.copy())
            # 256 colours keep a contact sheet readable at about half the bytes.
            Image.open(out / "storyboard.png").convert("RGB").quantize(256).save(HERE / f"{slug}_{label}.png", optimize=True)
            print(f"{slug}_{label}.png  {prompt!r}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "after")

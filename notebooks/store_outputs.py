"""Run the quickstart notebook on the offline animatic path and keep its outputs in the repository copy.

    python notebooks/store_outputs.py

The quickstart is the one notebook stored with its outputs (the storyboard and the film show on GitHub
without running anything); the others are stored without. It runs in a temporary copy of examples/, so
no run folder is left in the checkout, and the execution's timestamps are dropped so that storing it
again changes only what the notebook shows.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
ROOT = NOTEBOOKS.parent
STORED_WITH_OUTPUTS = "01_quickstart.ipynb"
MAX_BYTES = 500_000
"""A stored notebook above this is refused: its pictures should be small ones."""


def execute(name: str, work: Path, timeout: int = 240) -> nbformat.NotebookNode:
    """Notebook `name` run top to bottom by a real kernel in `work` (a copy of examples/ and the notebook)."""
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / name, work / "notebooks" / name)
    nb = nbformat.read(work / "notebooks" / name, as_version=4)
    # Kernel "python3": jupyter_client starts it with this interpreter (sys.executable), i.e. the venv's.
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(work / "notebooks")}}).execute()
    return nb


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        nb = execute(STORED_WITH_OUTPUTS, Path(tmp))
    text = nbformat.writes(nb) + "\n"
    if tmp in text:
        print(f"refused: an output names the temporary folder {tmp}; print paths relative to the run folder")
        return 1
    if len(text.encode()) > MAX_BYTES:
        print(f"refused: {len(text.encode()) / 1e3:.0f} KB is more than {MAX_BYTES / 1e3:.0f} KB; make its pictures smaller")
        return 1
    (NOTEBOOKS / STORED_WITH_OUTPUTS).write_text(text, encoding="utf-8")
    print(f"stored {STORED_WITH_OUTPUTS} with its outputs ({len(text.encode()) / 1e3:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

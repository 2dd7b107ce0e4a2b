"""The walkthroughs in notebooks/: linked from the README, each one executed top to bottom by a real Jupyter kernel
(nbclient) in a copy of the repository's examples. The quickstart is kept with its outputs (small pictures a reader
on GitHub sees without running it; `notebooks/store_outputs.py` stores them); the others without."""

from __future__ import annotations

import base64
import io
import shutil
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.paths import ROOT
NOTEBOOKS = ROOT / "notebooks"
WALKTHROUGHS = ["01_quickstart.ipynb", "02_review.ipynb", "03_customise_subject.ipynb", "04_evaluation.ipynb"]
WITH_OUTPUTS = "01_quickstart.ipynb"
MAX_STORED_BYTES = 500_000
MAX_PICTURE_BYTES = 100_000
CELL_TIMEOUT_S = 240

# What each notebook must show once run: output MIME types, and text that must appear in its outputs.
EXPECTED: dict[str, tuple[set[str], list[str]]] = {
    "01_quickstart.ipynb": ({"image/png", "text/html"}, ["<video", "data:video/mp4;base64,", "stages:",
                                                         "audio/narration_01.wav", "'voice': 'auto'", "'music': 'auto'"]),
    "02_review.ipynb": ({"image/png"}, ["reviewer: redo 2: make it night", "storyboard/shot_02.png",
                                        '"feedback": "make it night"', "rewritten by the resumed run: none"]),
    "03_customise_subject.ipynb": ({"image/png"}, ["StoryAnyDoor fine-tune", "LoRA-BE adapter"]),
    "04_evaluation.ipynb": ({"image/png", "text/markdown"}, ["| Method |", "Subject ("]),
}


def _outputs(nb: nbformat.NotebookNode) -> tuple[set[str], str]:
    """The MIME types and all text of an executed notebook's outputs."""
    mimes: set[str] = set()
    texts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            for mime, value in out.get("data", {}).items():
                mimes.add(mime)
                if mime.startswith("text/"):
                    texts.append(value)
    return mimes, "\n".join(texts)


def _kinds(nb: nbformat.NotebookNode) -> list[list[tuple[str, tuple[str, ...]]]]:
    """Per code cell, what it shows: each output's type and MIME types (not its bytes). Printed text may
    reach the kernel in one stream message or several (timing), so a run of stream outputs counts once."""
    kinds = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            shown = [(out.output_type, tuple(sorted(out.get("data", {})))) for out in cell.outputs]
            kinds.append([k for i, k in enumerate(shown) if not (k[0] == "stream" and i and shown[i - 1] == k)])
    return kinds


def test_the_walkthroughs_exist_and_the_readme_links_them():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == WALKTHROUGHS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in WALKTHROUGHS:
        assert f"](notebooks/{name})" in readme, f"README does not link {name}"


@pytest.mark.parametrize("name", WALKTHROUGHS)
def test_notebook_opens_with_a_title_and_its_time(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "opens with a title saying what it shows"
    assert "seconds" in first.source or "minute" in first.source, "the opening cell says how long it takes"
    assert nb.metadata.kernelspec.name == "python3"


def test_the_quickstart_is_stored_with_its_outputs():
    """Every code cell's outputs, in order, from one run; the storyboard a small PNG; no machine's paths or timings."""
    from PIL import Image

    raw = (NOTEBOOKS / WITH_OUTPUTS).read_bytes()
    assert len(raw) < MAX_STORED_BYTES, f"{WITH_OUTPUTS} is {len(raw) / 1e3:.0f} KB; keep its pictures small"
    nb = nbformat.reads(raw.decode(), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run once, top to bottom"
    assert all(c.outputs for c in code[1:]), "every cell after the imports shows something"
    pictures = [out.data["image/png"] for c in code for out in c.outputs if "image/png" in out.get("data", {})]
    assert len(pictures) == 1, "the storyboard's contact sheet"
    png = base64.b64decode(pictures[0])
    assert len(png) < MAX_PICTURE_BYTES
    sheet = Image.open(io.BytesIO(png))
    assert sheet.width >= 400 and sheet.width > sheet.height, "the whole contact sheet, not a thumbnail"
    mimes, text = _outputs(nb)
    assert {"image/png", "text/html"} <= mimes and "<video" in text and "stages:" in text
    # The film is kept with its sound (issue 24): the embedded video has an AAC stream as long as its pictures.
    import re

    import av

    (embedded,) = re.findall(r"data:video/mp4;base64,([A-Za-z0-9+/=]+)", text)
    with av.open(io.BytesIO(base64.b64decode(embedded))) as film:
        lengths = {s.type: float(s.duration * s.time_base) for s in film.streams}
        assert film.streams.audio[0].codec_context.name == "aac"
    assert abs(lengths["audio"] - lengths["video"]) < 0.1, lengths
    assert "audio/narration_01.wav" in text and "sound: True" in text
    for leak in ("/tmp/", "/home/", "/root/", "/work/", "Traceback"):
        assert leak not in text, f"an output of the stored quickstart holds {leak!r}"
    assert not any("execution" in c.metadata for c in code), "no timestamps: storing again changes only outputs"


@pytest.mark.parametrize("name", [n for n in WALKTHROUGHS if n != WITH_OUTPUTS])
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} of {name} holds outputs; strip them"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", WALKTHROUGHS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, capsys):
    # A copy of what the notebooks read (examples/), so their runs/ land in tmp_path, not in the repository.
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / name, tmp_path / "notebooks" / name)
    # The kernel inherits this: one OpenMP thread, as conftest gives the tests (spin-waiting on a busy 2-core
    # machine makes tiny models many times slower). The private STORYAGENT_CACHE is inherited the same way.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
    stored = _kinds(nb)
    # Kernel "python3": jupyter_client starts it with this interpreter (sys.executable), i.e. the venv's.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "notebooks")}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    wall = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{name}: {wall:.1f} s")
    mimes, text = _outputs(nb)
    want_mimes, want_texts = EXPECTED[name]
    assert want_mimes <= mimes, f"{name} shows no {sorted(want_mimes - mimes)}"
    for want in want_texts:
        assert want in text, f"{name}'s outputs lack {want!r}"
    if name == WITH_OUTPUTS:
        assert _kinds(nb) == stored, "the stored outputs are those the notebook gives now; run notebooks/store_outputs.py"

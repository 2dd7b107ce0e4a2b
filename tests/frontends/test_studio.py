"""StoryAgent Studio: the real page in headless Chromium (Playwright), and crafted HTTP requests.

Screenshots of every step go to a folder printed at the start (copied to $STUDIO_SCREENSHOTS when set).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import time
from pathlib import Path

import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from storyagent.errors import InputError
from storyagent.studio.command import launch
from storyagent.studio.runs import MAX_UPLOAD_BYTES, check_uploads, run_folder

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip" / "pip.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The studio over a fresh runs folder, on a free port; a secret file lies just outside it."""
    pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
    base = tmp_path_factory.mktemp("studio")
    runs = base / "runs"
    (base / "secret.txt").write_text("not for the browser")
    saved = os.environ.get("GRADIO_TEMP_DIR")
    demo, studio = launch(runs, port=_free_port())  # (sets GRADIO_TEMP_DIR: the upload cache inside runs/)
    yield demo.local_url.rstrip("/"), studio, runs
    demo.close()
    if saved is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = saved


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nstudio screenshots: {folder}")
    yield folder
    if os.environ.get("STUDIO_SCREENSHOTS"):
        dest = Path(os.environ["STUDIO_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy2(png, dest / png.name)
        print(f"studio screenshots copied to {dest}")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium to drive (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def _wait(predicate, timeout: float = 60.0, what: str = "the page"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _served(page, selector: str, tag: str = "img") -> list[str]:
    """Hashes of the bytes the server sends for each picture (or video) in a gallery, in order."""
    srcs = page.eval_on_selector_all(f"{selector} .grid-wrap {tag}", "els => els.map(e => e.src)")
    return [sha(page.request.get(src).body()) for src in srcs]


def _question(page) -> str:
    return page.locator("#question").inner_text()


def _picture(page, url: str, mode: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(url).body())).convert(mode))


def _drawn_box(element: dict, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """Where the browser draws the picture rows/cols `box` (top, bottom, left, right; bottom/right exclusive)
    of an <img>, on the page (left, top, right, bottom), for its object-fit, centred as by default."""
    x, y, w, h = element["rect"]
    nw, nh = element["natural"]
    fit = {"fill": (w / nw, h / nh), "none": (1.0, 1.0)}
    if element["fit"] in fit:
        sx, sy = fit[element["fit"]]
    else:
        scale = {"cover": max, "contain": min, "scale-down": lambda a, b: min(1.0, a, b)}[element["fit"]](w / nw, h / nh)
        sx = sy = scale
    ox, oy = x + (w - nw * sx) / 2, y + (h - nh * sy) / 2
    top, bottom, left, right = box
    return ox + left * sx, oy + top * sy, ox + right * sx, oy + bottom * sy


def _assert_preview_whole(page) -> None:
    """The cut-out preview draws the whole subject: its mask's box, as the page draws it, lies inside both
    the <img> and the preview box that clips it; and the served picture has the subject's proportions."""
    from storyagent.media import load_reference, mask_box

    _wait(lambda: page.eval_on_selector("#cutouts img", "i => i.complete && i.naturalWidth > 0"), what="the preview")
    element = page.eval_on_selector("#cutouts img", """i => {
        const r = i.getBoundingClientRect(), b = i.closest('#cutouts').getBoundingClientRect();
        return {rect: [r.left, r.top, r.width, r.height], clip: [b.left, b.top, b.right, b.bottom],
                natural: [i.naturalWidth, i.naturalHeight], fit: getComputedStyle(i).objectFit, src: i.src};
    }""")
    alpha = _picture(page, element["src"], "RGBA")[..., 3] > 127
    ys, xs = np.nonzero(alpha)
    drawn = _drawn_box(element, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
    x, y, w, h = element["rect"]
    for name, (left, top, right, bottom) in (("the <img>", (x, y, x + w, y + h)), ("the preview box", element["clip"])):
        assert (drawn[0] >= left - 1 and drawn[1] >= top - 1 and drawn[2] <= right + 1 and drawn[3] <= bottom + 1), \
            f"the subject is drawn at {drawn}, outside {name} {(left, top, right, bottom)}: cut off"
    subject = mask_box(load_reference(PIP, max_frames=1).masks[0])
    served = (xs.max() + 1 - xs.min()) / (ys.max() + 1 - ys.min())
    aspect = (subject.right - subject.left) / (subject.bottom - subject.top)
    assert abs(served / aspect - 1) < 0.05, f"the preview's subject is cropped or squashed: {served:.3f} vs {aspect:.3f}"


def _pick(page, elem_id: str, value: str) -> None:
    """Choose `value` in the dropdown `#elem_id`."""
    field = page.locator(f"#{elem_id} input")
    field.click()
    options = field.get_attribute("aria-controls")  # this dropdown's list; another's may still be in the page
    page.locator(f'[id="{options}"] [role=option][aria-label="{value}"]').click()
    _wait(lambda: page.locator(f"#{elem_id} input").input_value() == value, what=f"{elem_id} set to {value}")


def _lines(page) -> list[str]:
    """Hashes of the bytes the server sends for each line's <audio> player, in shot order."""
    srcs = page.eval_on_selector_all("#lines audio", "els => els.map(e => e.src)")
    return [sha(page.request.get(src).body()) for src in srcs]


def _redo_fields(page) -> dict:
    return {"shot": page.locator("#shot input").input_value(), "words": page.locator("#words textarea").input_value()}


@pytest.mark.browser
def test_make_a_film_in_the_browser(server, browser, shots_dir):
    url, studio, runs = server
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.locator("#uploads input[type=file]").set_input_files(str(PIP))
    page.wait_for_selector("#cutouts img", timeout=30_000)
    _assert_preview_whole(page)
    page.locator("#prompt textarea").fill("a day at the seaside")
    page.locator("#name textarea").fill("Pip")
    page.locator("#class_word textarea").fill("fox")
    page.locator("#shots input").fill("4")
    page.get_by_text("Frame size and seed").click()
    for field, value in (("width", "128"), ("height", "80"), ("fps", "4")):
        page.locator(f"#{field} input").fill(value)
    voiced = shutil.which("espeak-ng") is not None
    if voiced:  # the pickers: this film is narrated by espeak-ng, without a score
        _pick(page, "voice", "espeak")
        _pick(page, "music", "none")
    page.screenshot(path=shots_dir / "01_upload.png", full_page=True)
    page.locator("#start").click()

    # 1. The story as an editable table: an edit is saved to story.json before the stage is approved.
    _wait(lambda: "[story] ready" in _question(page), what="the story review")
    # The shot field opens valid: shots count from 1, and nothing is selected yet.
    field = page.locator("#shot input").evaluate(
        "e => ({value: e.value, valid: e.checkValidity(), flagged: !!e.closest('#shot').querySelector('.validation-error')})")
    assert field["value"] in ("", "1") and field["valid"] and not field["flagged"], field
    run_id = _wait(lambda: next(iter(studio.sessions), None), what="the run")
    root = run_folder(runs, run_id)
    assert sorted(p.name for p in (root / "uploads").iterdir()) == ["upload_01.png"], "the app names uploads"
    if voiced:
        # Each shot's line has a player, serving the line's file; "Redo this line" says shot 2's slower.
        assert (studio.sessions[run_id].cfg.voice, studio.sessions[run_id].cfg.music) == ("espeak", "none")
        heard = _wait(lambda: (h := _lines(page)) and len(h) == 4 and h, what="a player per line")
        assert heard == [sha((root / f"audio/narration_{i:02d}.wav").read_bytes()) for i in range(1, 5)]
        story_bytes = (root / "story.json").read_bytes()
        page.locator("#shot input").fill("2")
        page.locator("#words textarea").fill("slower")
        page.locator("#redo_line").click()
        _wait(lambda: "Line of shot 2 redone" in _question(page), what="shot 2's line said again")
        again = _wait(lambda: (h := _lines(page)) and len(h) == 4 and h[1] != heard[1] and h, what="the new line")
        assert [a == b for a, b in zip(again, heard)] == [True, False, True, True]
        assert (root / "story.json").read_bytes() == story_bytes, "a line said again changes no word of the story"
        page.screenshot(path=shots_dir / "02_lines.png", full_page=True)
    cell = page.locator('#story [data-testid="cell-0-5"]')
    cell.dblclick()
    # Select the cell's text only once its editor has the focus; earlier, the keys go to the page.
    page.wait_for_function("""() => ['INPUT', 'TEXTAREA'].includes(document.activeElement.tagName)
        && document.activeElement.closest('[data-testid="cell-0-5"]')""", timeout=10_000)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("Pip wakes up by the sea.")
    page.keyboard.press("Enter")
    page.screenshot(path=shots_dir / "02_story.png", full_page=True)
    page.locator("#approve").click()
    _wait(lambda: "[storyboard] ready" in _question(page), what="the storyboard review")
    assert json.loads((root / "story.json").read_text())["shots"][0]["narration"] == "Pip wakes up by the sea."

    # A second tab makes its own film meanwhile; neither tab sees the other's run.
    other = browser.new_page(viewport={"width": 1280, "height": 1000})
    other.goto(url)
    other.locator("#uploads input[type=file]").set_input_files(str(PIP))
    other.locator("#prompt textarea").fill("a walk in the snow")
    other.locator("#shots input").fill("1")
    other.locator("#review").get_by_label("none").check()
    other.get_by_text("Frame size and seed").click()
    for field, value in (("width", "64"), ("height", "64"), ("fps", "2")):
        other.locator(f"#{field} input").fill(value)
    other.locator("#start").click()
    _wait(lambda: "The film is ready" in other.locator("#status").inner_text(), what="the second tab's film")
    assert "a-walk-in-the-snow" in other.locator("#status").inner_text() and run_id not in other.content()
    assert run_id in page.locator("#status").inner_text() and "[storyboard] ready" in _question(page)
    other.close()

    # 2. The storyboard grid: redo shot 2 with words; only shot 2 changes, on disk and as served.
    _wait(lambda: page.locator("#board .grid-wrap img").count() == 4, what="4 storyboard pictures")
    before = _served(page, "#board")
    on_disk = {i: sha((root / f"storyboard/shot_{i:02d}.png").read_bytes()) for i in range(1, 5)}
    page.screenshot(path=shots_dir / "03_storyboard.png", full_page=True)
    page.locator('#board button[aria-label="Thumbnail 2 of 4"]').click()
    _wait(lambda: page.locator("#shot input").input_value() == "2", what="shot 2 selected")
    page.locator("#words textarea").fill("make it night")
    page.locator("#redo_shot").click()
    after = _wait(lambda: (s := _served(page, "#board")) and len(s) == 4 and s[1] != before[1] and s, 60,
                  "shot 2 redrawn")
    assert [a == b for a, b in zip(after, before)] == [True, False, True, True]
    now = {i: sha((root / f"storyboard/shot_{i:02d}.png").read_bytes()) for i in range(1, 5)}
    assert [now[i] == on_disk[i] for i in range(1, 5)] == [True, False, True, True]
    assert "night" in json.loads((root / "story.json").read_text())["shots"][1]["background"]
    _wait(lambda: "[storyboard] ready" in _question(page), what="the storyboard asked again")
    assert _redo_fields(page) == {"shot": "", "words": ""}, "a sent redo clears its fields"
    page.screenshot(path=shots_dir / "04_redo_shot_2.png", full_page=True)
    # Words typed for shot 3 and then approved instead: the clips stage opens with empty redo fields.
    page.locator('#board button[aria-label="Thumbnail 3 of 4"]').click()
    _wait(lambda: _redo_fields(page)["shot"] == "3", what="shot 3 selected")
    page.locator("#words textarea").fill("make it rain")
    page.locator("#approve").click()

    # 3. The clips as video players, each showing its first frame before it plays; then the film.
    _wait(lambda: "[video] ready" in _question(page), what="the clips review")
    assert _redo_fields(page) == {"shot": "", "words": ""}, "approving a stage clears the redo fields"
    _wait(lambda: page.locator("#clips .grid-wrap video").count() == 4, what="4 clips")
    posters = _wait(lambda: (p := page.eval_on_selector_all("#clips .grid-wrap video", "vs => vs.map(v => v.poster)"))
                    and all(p) and p, what="a poster on every clip")
    loaded = page.eval_on_selector_all("#clips .grid-wrap video", """vs => Promise.all(vs.map(v => new Promise(done => {
        const i = new Image(); i.onload = () => done(i.naturalWidth); i.onerror = () => done(0); i.src = v.poster; })))""")
    assert all(loaded), f"a poster did not load: {loaded}"
    from storyagent.media import read_video

    for i, poster in enumerate(posters, 1):
        first = read_video(root / f"shots/shot_{i:02d}.mp4", max_frames=1)[0][0]
        shown = _picture(page, poster, "RGB")
        assert shown.shape == first.shape and np.abs(shown.astype(int) - first).mean() < 2, f"shot {i}'s poster"
    if voiced:
        assert len(_lines(page)) == 4, "the clips' review plays each line too"
    page.screenshot(path=shots_dir / "05_clips.png", full_page=True)
    page.locator("#approve").click()
    page.wait_for_selector("#film video", timeout=60_000)
    film = root / "film.mp4"
    if voiced:
        # The film's player carries its subtitles as a <track> (soft subtitles): the run's film.vtt.
        track = _wait(lambda: page.eval_on_selector_all("#film video track", "ts => ts.map(t => t.src)"),
                      what="the film's subtitle track")
        assert len(track) == 1 and page.request.get(track[0]).body() == (root / "film.vtt").read_bytes()
        import av

        with av.open(str(film)) as container:
            assert [s.type for s in container.streams].count("audio") == 1, "the film has its soundtrack"
    film_mtime = film.stat().st_mtime_ns
    playing = page.eval_on_selector("#film video", """v => new Promise(done => {
        v.muted = true; v.play().catch(() => {});
        const t0 = Date.now();
        const check = () => (v.currentTime > 0.2 || v.error || Date.now() - t0 > 8000)
            ? done({time: v.currentTime, error: v.error && v.error.code, duration: v.duration}) : setTimeout(check, 100);
        check();
    })""")
    assert playing["error"] is None and playing["time"] > 0.2 and playing["duration"] > 4, playing
    page.screenshot(path=shots_dir / "06_film.png", full_page=True)
    with page.expect_download() as download:
        page.locator("#download").click()
    assert sha(Path(download.value.path()).read_bytes()) == sha(film.read_bytes())
    page.close()

    # 4. Another tab lists the run, reopens it and resumes. The redo rewrote shot 2's text after the story
    # was approved, so the crew may ask for the story again; "Approve the rest" then finishes, redoing nothing.
    # A run made outside the studio after the server started (as `storyagent run --out runs/...` makes one)
    # is listed once the page is reloaded, with neither a restart nor "Refresh the list".
    from storyagent.agents.crew import run_crew
    from storyagent.config import RunConfig

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    run_crew(RunConfig.build(prompt="made from the command line", subject=PIP, name="Pip", shots=1, width=64, height=64,
                             fps=2, shot_duration=2.0), runs / "made-from-the-command-line", show_progress=False)
    page.reload()
    page.get_by_role("tab", name="Earlier runs").click()
    page.locator("#earlier input").click()
    listed = page.get_by_role("option").all_inner_texts()
    assert "made-from-the-command-line" in listed and run_id in listed, listed
    page.get_by_role("option", name=run_id).click()
    page.locator("#reopen").click()
    ready = lambda: "The film is ready" in page.locator("#status").inner_text()  # noqa: E731
    if _wait(lambda: ready() or "[story] ready" in _question(page), what="the reopened run") and not ready():
        page.locator("#render").click()
    _wait(ready, what="the reopened run's film")
    assert film.stat().st_mtime_ns == film_mtime, "resuming a finished run redoes nothing"
    page.screenshot(path=shots_dir / "07_reopened.png", full_page=True)
    page.close()


@pytest.mark.browser
def test_wrong_upload_gets_one_sentence(server, browser, shots_dir, tmp_path):
    url, _, runs = server
    page = browser.new_page()
    page.goto(url)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.locator("#uploads input[type=file]").set_input_files(str(notes))
    _wait(lambda: "notes.txt" in page.locator("#message").inner_text(), what="the upload's error")
    text = page.locator("#message").inner_text().strip()
    assert text == "notes.txt is not a photo or clip; upload png/jpg/webp pictures or mp4/mov/webm/gif clips."
    page.locator("#prompt textarea").fill("a txt is no character")
    runs_before = sorted(runs.iterdir())
    page.locator("#start").click()
    time.sleep(1.5)  # the click's answer is the same sentence; give it time to have made a folder, if it would
    assert page.locator("#message").inner_text().strip() == text
    assert sorted(runs.iterdir()) == runs_before, "a refused upload makes no run folder"
    page.screenshot(path=shots_dir / "08_txt_upload.png", full_page=True)
    page.close()


@pytest.mark.browser
def test_a_two_character_film_in_the_browser(server, browser, shots_dir):
    """Pip uploaded first, then "Add another character" for Mo (a photo and its mask, previewed cut out by the
    mask); a third slot added and removed is no character. The film, reviewed stage by stage, shows both."""
    from tests.support.cast_film import MO, MO_MASK, assert_two_character_film

    url, studio, runs = server
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url)
    assert not page.locator("#character_2").is_visible() and not page.locator("#remove_character").is_visible()
    page.locator("#uploads input[type=file]").set_input_files(str(PIP))
    page.locator("#prompt textarea").fill("two friends build a raft")
    page.locator("#name textarea").fill("Pip")
    page.locator("#class_word textarea").fill("fox")
    page.locator("#shots input").fill("2")
    page.locator("#add_character").click()
    page.wait_for_selector("#character_2", state="visible")
    page.locator("#uploads_2 input[type=file]").set_input_files([str(MO), str(MO_MASK)])
    page.wait_for_selector("#cutouts_2 img", timeout=30_000)
    _wait(lambda: "mo.jpg: user mask" in page.locator("#cutouts_2").inner_text(), what="Mo cut out by the mask")
    page.locator("#name_2 textarea").fill("Mo")
    page.locator("#class_word_2 textarea").fill("owl")
    page.locator("#add_character").click()
    page.wait_for_selector("#character_3", state="visible")
    page.locator("#name_3 textarea").fill("Crong")
    page.locator("#remove_character").click()
    page.wait_for_selector("#character_3", state="hidden")
    page.locator("#add_character").click()  # shown again, the removed character's slot is empty
    page.wait_for_selector("#character_3", state="visible")
    _wait(lambda: page.locator("#name_3 textarea").input_value() == "", what="the removed slot emptied")
    page.locator("#remove_character").click()
    page.wait_for_selector("#character_3", state="hidden")
    page.get_by_text("Frame size and seed").click()
    for field, value in (("width", "128"), ("height", "80"), ("fps", "4")):
        page.locator(f"#{field} input").fill(value)
    page.screenshot(path=shots_dir / "09_cast_upload.png", full_page=True)
    before = set(studio.sessions)
    page.locator("#start").click()
    for stage in ("story", "storyboard", "video"):
        _wait(lambda: f"[{stage}] ready" in _question(page), what=f"the {stage} review")
        if stage == "storyboard":
            _wait(lambda: page.locator("#board .grid-wrap img").count() == 2, what="2 storyboard pictures")
            page.screenshot(path=shots_dir / "10_cast_storyboard.png", full_page=True)
        page.locator("#approve").click()
    _wait(lambda: "The film is ready" in page.locator("#status").inner_text(), what="the cast's film")
    (run_id,) = set(studio.sessions) - before
    root = run_folder(runs, run_id)
    cfg = studio.sessions[run_id].cfg
    assert (cfg.name, cfg.class_word, [(m.name, m.class_word) for m in cfg.supporting]) == ("Pip", "fox", [("Mo", "owl")])
    assert sorted(p.name for p in (root / "uploads_02").iterdir()) == ["upload_01.jpg", "upload_01_mask.png"]
    assert not (root / "uploads_03").exists()
    assert_two_character_film(root)
    page.close()


def _call(url: str, api: str, data: list) -> tuple[str, object]:
    """One call of the page's named endpoint over plain HTTP: ('complete', outputs) or ('error', ...)."""
    event = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=30).json()["event_id"]
    text = httpx.get(f"{url}/gradio_api/call/{api}/{event}", timeout=60).text
    kind = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("event:")][-1]
    payload = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("data:")][-1]
    return kind, json.loads(payload) if payload.startswith(("[", "{", "null")) else payload


def _start_data(files: list[dict], prompt: str) -> list:
    from storyagent.studio.app import OTHERS

    # ... then the rest of the cast's slots (uploads, name, class word), all empty: a film of one character.
    return [files, prompt, "Pip", "fox", 1, "animatic", "none", "none", 64, 64, 2, 0, "auto", "auto", None,
            *[None, "", ""] * OTHERS]


def test_crafted_requests_are_refused(server, tmp_path):
    from storyagent.agents.crew import run_crew
    from storyagent.config import RunConfig

    url, studio, runs = server
    base = runs.parent
    (runs / "probe.png").write_bytes(PIP.read_bytes())
    assert httpx.get(f"{url}/gradio_api/file={runs}/probe.png").content == PIP.read_bytes(), "runs/ is served"
    for route in ("/gradio_api/file=", "/file="):
        for target in (f"{base}/secret.txt", f"{runs}/../secret.txt", f"{runs}/%2e%2e/secret.txt",
                       f"{runs}/..%2fsecret.txt", "/etc/passwd", "../secret.txt", f"{ROOT}/pyproject.toml"):
            r = httpx.get(f"{url}{route}{target}")
            assert r.status_code in (403, 404) and b"not for the browser" not in r.content, (route, target)

    # Run ids: a path, `..`, a folder that holds no run, and a link from runs/ to a real run elsewhere.
    run_crew(RunConfig.build(prompt="elsewhere", subject=PIP, name="Pip", shots=1, width=64, height=64, fps=2,
                             shot_duration=2.0), base / "outside", show_progress=False)
    (runs / "escape").symlink_to(base / "outside")
    (runs / "notarun").mkdir()
    open_before = set(studio.sessions)
    for run_id in ("../outside", "..", str(base / "outside"), "escape", "notarun", "outside", "a/../../outside"):
        kind, out = _call(url, "reopen", [run_id])
        assert kind == "complete" and out[0] is None, (run_id, out)
        assert out[1].strip("*") in ("That run id is not valid; pick a run from the list of earlier runs.",
                                     f"There is no run named {run_id!r} to reopen; start a new film instead."), out
    assert set(studio.sessions) == open_before

    # Uploads: the browser's file name is never used as a path; a path outside the upload cache is refused.
    sent = httpx.post(f"{url}/gradio_api/upload", files=[("files", ("../../evil.png", PIP.read_bytes(), "image/png"))])
    (uploaded,) = sent.json()
    assert Path(uploaded).resolve().is_relative_to(runs) and not (base / "evil.png").exists()
    kind, out = _call(url, "start", _start_data([{"path": str(base / "secret.txt"), "meta": {"_type": "gradio.FileData"}}],
                                                "a stolen file"))
    assert kind == "error" and set(studio.sessions) == open_before
    kind, out = _call(url, "start", _start_data([{"path": uploaded, "orig_name": "../../evil.png",
                                                  "meta": {"_type": "gradio.FileData"}}], "an honest upload"))
    assert kind == "complete" and out[1].startswith("Started"), out  # (a gr.State output is not sent to clients)
    session = studio.sessions[out[1].split("**")[1]]
    _wait(lambda: session.finished, 60, "the run")
    assert session.view().state == "done", session.view()
    assert [p.name for p in (session.root / "uploads").iterdir()] == ["upload_01.png"]
    assert sorted(p.name for p in base.iterdir()) == ["outside", "runs", "secret.txt"]


def _studio_run(tmp_path, **settings):
    """A run started through the studio (no browser)."""
    pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
    from storyagent.studio.app import Studio

    studio = Studio(tmp_path / "runs")
    given = dict(files=[str(PIP)], prompt="a day at the seaside", name="Pip", class_word="fox", shots=2,
                 backend="animatic", llm="none", review="human", width=64, height=64, fps=2, seed=0) | settings
    run_id, message = studio.start(**given)
    return studio, run_id, message


def test_dead_llm_endpoint_is_one_sentence_and_keeps_the_work(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYAGENT_LLM_TIMEOUT", "2")
    studio, run_id, _ = _studio_run(tmp_path, llm=f"openai-compatible:qwen@http://127.0.0.1:{_free_port()}/v1")
    session = studio.sessions[run_id]
    _wait(lambda: session.finished, 90, "the run to fail")
    view = session.view()
    assert view.state == "failed" and "\n" not in view.error and "127.0.0.1" in view.error, view.error
    assert (session.root / "subject" / "frame_01.png").is_file(), "the work done before the failure is kept"
    again, message = studio.reopen(run_id)
    assert again == run_id, message


def test_missing_diffusion_weights_and_bad_settings_are_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    for key in [k for k in os.environ if k.startswith("STORYAGENT_WEIGHTS")]:
        monkeypatch.delenv(key)
    studio, run_id, message = _studio_run(tmp_path, backend="diffusion")
    assert run_id is None and "storyagent weights fetch" in message and "\n" not in message, message
    (tmp_path / "list.json").write_text("[]")
    for bad, said in ((dict(llm=str(tmp_path / "list.json")), "is not one the studio takes"),
                      (dict(llm="openai-compatible:m@ftp://x"), "needs MODEL@http://host:port/v1"),
                      (dict(shots=40), "between 1 and 32"), (dict(prompt=" "), "the prompt is empty")):
        studio, run_id, message = _studio_run(tmp_path, **bad)
        assert run_id is None and said in message and "\n" not in message, (bad, message)
    assert not [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")], "no folder for a refused film"


def test_uploads_are_checked_before_anything_is_made(tmp_path):
    empty, big, clip = tmp_path / "empty.png", tmp_path / "big.mp4", tmp_path / "cat.MOV"
    empty.touch()
    with open(big, "wb") as f:  # sparse: the size without the disk space
        f.truncate(MAX_UPLOAD_BYTES + 1)
    clip.write_bytes(b"x")
    many = []
    for i in range(6):  # 6 x 199 MB: each under the per-file limit, together over the film's
        many.append(tmp_path / f"clip{i}.mp4")
        with open(many[-1], "wb") as f:
            f.truncate(199 * 2**20)
    answers = {}
    for files in ([], [empty], [big], [tmp_path / "x.exe"], many):
        with pytest.raises(InputError) as exc:
            check_uploads(files)
        answers[len(answers)] = str(exc.value)
    assert answers == {0: "Upload at least one photo or short clip of your character.",
                       1: "empty.png is empty; upload the photo or clip again.",
                       2: "big.mp4 is 200 MB; the limit is 200 MB per file.",
                       3: "x.exe is not a photo or clip; upload png/jpg/webp pictures or mp4/mov/webm/gif clips.",
                       4: "The uploads come to 1194 MB; the limit is 1024 MB for one film: a few short clips are enough."}
    assert check_uploads([str(clip), PIP]) == [clip, PIP]


def test_studio_without_gradio_says_how_to_install_it():
    code = "import sys; sys.modules['gradio'] = None; sys.argv = ['storyagent', 'studio']; " \
           "from storyagent.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    said = done.stdout + done.stderr
    assert said.strip() == 'error: The studio needs Gradio; install the extra with `pip install -e ".[studio]"`.', said

"""`storyagent batch` in one process (issue 28): the jobs file checked before any work, a batch equal to
the same films made one by one, a batch cut short continuing where it stopped, a worker's finished file
reused rather than made again, a worker's view that cannot write the manifest, a film's diffusion
storyboard drawn as one piece of work whose records the driver makes, and one subject prepared once for
all its films."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.cli import default_name
from storyagent.errors import InputError
from storyagent.manifest import MANIFEST, Manifest, ReadOnlyManifestError
from storyagent.schemas import Film, Subject
from storyagent.tools.backends.animatic import AnimaticBackend
from storyagent.tools.batch import BatchExecutor, Job, read_jobs, run_batch
from storyagent.tools.per_shot import CLIPS_DIR, shot_key
from storyagent.tools.run import Run, make_shot
from storyagent.tools.storyboard import draw_storyboard
from storyagent.workspace import Workspace
from tests.support.fine_tunes import SlowFineTunes, at_once
from tests.support.paths import PIP

TINY = 'shots = 3\nwidth = 128\nheight = 80\nfps = 4\nshot_duration = 2.0\nclass_word = "fox"\n'
PROMPTS = ("a day at the seaside", "a rainy afternoon in the garden")


def jobs_file(folder: Path, films: str, defaults: str = TINY) -> Path:
    shutil.copy(PIP, folder / "pip.png")
    path = folder / "films.toml"
    path.write_text(f"[defaults]\n{defaults}\n{films}", encoding="utf-8")
    return path


def two_films(folder: Path) -> list[Job]:
    films = "".join(f'[[film]]\nprompt = "{p}"\nsubject = "pip.png"\n\n' for p in PROMPTS)
    return read_jobs(jobs_file(folder, films), default_name=default_name)


def crew(executor: BatchExecutor):
    """What `storyagent batch` runs for each film: its crew, its folder resumed, the batch's executor."""
    def make(job: Job) -> bool:
        return run_crew(job.config, job.out, resume=True, show_progress=False, executor=executor).film is not None

    return make


def files(root: Path) -> dict[str, bytes]:
    """Every artifact of a run folder by path (the manifest and transcript carry times, the notes pids)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, "transcript.json") and not p.name.startswith(".")}


def test_every_bad_film_is_named_by_its_number_and_nothing_is_made(tmp_path):
    films = """
[[film]]
prompt = "a day at the seaside"
subject = "pip.png"

[[film]]
prompt = "a day in the snow"
subject = "pip.png"
shots = 0

[[film]]
prompt = "a day at the fair"
subject = "pip.png"
review = "human"

[[film]]
prompt = "a day in the city"
subject = "missing.png"

[[film]]
prompt = "a day in the woods"
subject = "pip.png"
shot = 3

[[film]]
prompt = "the same seaside again"
subject = "pip.png"
out = "films/01_a-day-at-the-seaside"
"""
    path = jobs_file(tmp_path, films)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError) as caught:
        read_jobs(path, default_name=default_name)
    head, *lines = str(caught.value).splitlines()
    assert head == "films.toml: 5 of 6 films cannot be made, so none was started:"
    assert [line.split(":")[0].strip() for line in lines] == ["film 2", "film 3", "film 4", "film 5", "film 6"]
    assert "shots" in lines[0] and "between 1 and 32" in lines[0]
    assert "review 'human'" in lines[1] and "storyagent chat" in lines[1]
    assert "missing.png" in lines[2]
    assert "unknown setting 'shot'" in lines[3]
    assert "film 1's too" in lines[4]
    assert sorted(tmp_path.rglob("*")) == before, "nothing made"

    bad_line = tmp_path / "films.jsonl"
    bad_line.write_text('{"prompt": "a day at the seaside", "subject": "pip.png"}\n\n["not", "a film"]\n')
    with pytest.raises(InputError, match=r"films.jsonl, line 3: a film is a JSON object"):
        read_jobs(bad_line, default_name=default_name)


def test_films_take_the_defaults_and_their_paths_from_the_jobs_file(tmp_path):
    (tmp_path / "jobs").mkdir()
    path = jobs_file(tmp_path / "jobs", '[[film]]\nprompt = "a day at the seaside"\nsubject = "pip.png"\nseed = 4\n\n'
                                        '[[film]]\nprompt = "a rainy day"\nsubject = "pip.png"\nout = "../tom"\n'
                                        'name = "Tom"\n')
    first, second = read_jobs(path, default_name=default_name)
    assert first.out == tmp_path / "jobs" / "films" / "01_a-day-at-the-seaside" and second.out == tmp_path / "tom"
    assert first.config.subject == tmp_path / "jobs" / "pip.png" and first.config.name == "Pip"
    assert (first.config.shots, first.config.seed, second.config.seed, second.config.name) == (3, 4, 0, "Tom")
    lines = tmp_path / "jobs" / "films.jsonl"
    lines.write_text(json.dumps({"prompt": "a day at the seaside", "subject": "pip.png", "shots": 2}) + "\n")
    (only,) = read_jobs(lines, default_name=default_name, out=tmp_path / "elsewhere")
    assert only.out == tmp_path / "elsewhere" / "01_a-day-at-the-seaside" and only.config.shots == 2


def test_a_batch_of_two_films_is_two_storyagent_runs(tmp_path):
    jobs = two_films(tmp_path)
    done = run_batch(jobs, crew(BatchExecutor()), show_progress=False)
    assert [(d.error, d.made, d.reused) for d in done] == [(None, 3, 0), (None, 3, 0)]
    for job in jobs:
        alone = tmp_path / "alone" / job.out.name
        run_crew(job.config, alone, show_progress=False)  # what `storyagent run` calls with these settings
        assert files(job.out) == files(alone)
        assert {"film.mp4", "shots/shot_03.mp4", "storyboard/shot_03.png"} <= files(alone).keys()


def test_a_batch_cut_short_continues_where_it_stopped(tmp_path, monkeypatch):
    """The driver stops (Ctrl-C) while film 2 animates its second shot; the same batch again reuses
    film 1 whole and film 2's storyboard and first clip, and makes the same films as an unbroken batch."""
    jobs = two_films(tmp_path)
    calls: list[tuple[Path, str]] = []

    def stop_at_film_2_clip_2(run, order):
        calls.append((run.ws.root, order.key))
        if run.ws.root == jobs[1].out and order.key == shot_key(CLIPS_DIR, 2):
            raise KeyboardInterrupt
        return make_shot(run, order)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):  # only this patch is undone after
        patch.setattr("storyagent.tools.per_shot.make_shot", stop_at_film_2_clip_2)
        run_batch(jobs, crew(BatchExecutor()), show_progress=False)
    kept = {p: (jobs[1].out / p).stat().st_mtime_ns for p in ("storyboard/shot_02.png", "shots/shot_01.mp4")}

    done = run_batch(jobs, crew(BatchExecutor()), show_progress=False)
    assert [(d.error, d.made, d.reused) for d in done] == [(None, 0, 3), (None, 2, 1)]
    assert all((jobs[1].out / p).stat().st_mtime_ns == t for p, t in kept.items()), "finished work reused"
    unbroken = read_jobs(tmp_path / "films.toml", default_name=default_name, out=tmp_path / "unbroken")
    run_batch(unbroken, crew(BatchExecutor()), show_progress=False)
    for job, ref in zip(jobs, unbroken, strict=True):
        assert files(job.out) == files(ref.out)


def test_a_finished_file_is_reused_not_made_again(tmp_path, monkeypatch):
    """A worker makes shot 2's clip (its file, then its note); Ray's retry of that task finds it finished;
    the driver dies before recording it; the same command again records it without making it again."""
    (job, _) = two_films(tmp_path)
    made: list[int] = []
    animate = AnimaticBackend.animate

    def counted(self, run, shot, board, input_hash):
        made.append(shot.index)
        return animate(self, run, shot, board, input_hash)

    monkeypatch.setattr(AnimaticBackend, "animate", counted)
    tries: list = []

    def worker_then_driver_dies(run, order):
        if order.key != shot_key(CLIPS_DIR, 2):
            return make_shot(run, order)
        tries.append(order)
        tries.append(make_shot(Run.attach(run.ws.root, run.config), order))  # a worker (read-only view)
        tries.append(make_shot(Run.attach(run.ws.root, run.config), order))  # its retry, on another worker
        raise KeyboardInterrupt  # the driver, before recording it

    monkeypatch.setattr("storyagent.tools.per_shot.make_shot", worker_then_driver_dies)
    with pytest.raises(KeyboardInterrupt):
        run_crew(job.config, job.out, show_progress=False)
    monkeypatch.setattr("storyagent.tools.per_shot.make_shot", make_shot)
    order, first, retried = tries
    assert made == [1, 2], "the retry made nothing"
    assert retried.model_dump() == first.model_dump() and first.meta["file_hashes"]
    assert Manifest.view(job.out).artifact(order.key) is None, "a worker records nothing"
    clip = job.out / first.path
    stamp = clip.stat().st_mtime_ns

    result = run_crew(job.config, job.out, resume=True, show_progress=False)
    assert made == [1, 2, 3], "clip 2 is recorded as the worker finished it; only clip 3 is made"
    assert clip.stat().st_mtime_ns == stamp and result.clips[1].meta["file_hashes"] == first.meta["file_hashes"]
    assert result.film is not None

    clip.write_bytes(clip.read_bytes()[:-10])  # a file that is not what its note says is made again
    again = make_shot(Run.attach(job.out, job.config), order)
    assert made == [1, 2, 3, 2] and again.meta["file_hashes"] == first.meta["file_hashes"]


def test_a_worker_view_cannot_write_the_manifest(tmp_path):
    (job, _) = two_films(tmp_path)
    run_crew(job.config, job.out, show_progress=False)
    with Run.open(job.config, job.out, resume=True, show_progress=False) as driver:  # the lock is held
        view = Run.attach(job.out, job.config)
        assert view.manifest.read_only and not driver.manifest.read_only
        film = view.manifest.artifact("film")
        saved = (job.out / MANIFEST).read_bytes()
        for change in (lambda: view.manifest.record("film", {}), lambda: view.manifest.set_stage("film", "running"),
                       lambda: view.manifest.add_redo("video", [1], "", set()), view.manifest.save,
                       lambda: view.ws.record("film", Film.model_validate(film))):
            with pytest.raises(ReadOnlyManifestError, match="read-only here"):
                change()
        assert view.manifest.artifact("film") == film and view.manifest.take("video", 1) == 0
        assert (job.out / MANIFEST).read_bytes() == saved
    assert Manifest.view(job.out).artifact("film") == film


def test_two_films_of_one_subject_prepare_it_once(tmp_path, monkeypatch):
    """The cut-out is made once and copied into the other film; two films of one character opened at
    once (two threads, as the Ray driver runs them) do the backend's subject work once."""
    import storyagent.tools.subject as subject_module

    cutouts: list[Path] = []
    load = subject_module.load_reference
    monkeypatch.setattr(subject_module, "load_reference", lambda *a, **k: cutouts.append(a[0]) or load(*a, **k))
    jobs = two_films(tmp_path)
    executor = BatchExecutor()
    run_batch(jobs, crew(executor), show_progress=False)
    assert len(cutouts) == 1 and executor.shared == 1
    cutout = [{k: v for k, v in files(job.out).items() if k.startswith("subject/")} for job in jobs]
    assert cutout[0] == cutout[1] and cutout[0]

    # The fine-tunes' stand-in: trained when the cache (by content) has none, which takes a while.
    stand_in = SlowFineTunes()
    monkeypatch.setattr(AnimaticBackend, "prepare_subject", stand_in)
    executor = BatchExecutor()
    opened: list[str] = []

    def open_film(job: Job) -> None:
        with Run.open(job.config, tmp_path / "again" / job.out.name, show_progress=False, executor=executor) as run:
            opened.append(run.ws.root.name)

    at_once(open_film, jobs)
    assert len(opened) == 2 and len(stand_in.trained) == 1


def test_a_films_diffusion_storyboard_is_one_piece_of_work_whose_records_the_driver_makes(tmp_path, tiny_weights):
    """The diffusion storyboard draws a film's shots together, so a worker draws it whole through a journaling
    view of the manifest; the driver replays the changes, and records what the storyboard drawn here records."""
    from tests.tools.test_diffusion_storyboard import load, make_run, script

    pipe = load(tiny_weights, box_threshold=0.0, text_threshold=0.0)
    subject = square_subject(tmp_path)
    driver = make_run(tmp_path / "run", subject, pipe)
    assert not driver.backend.draws_by_shot and AnimaticBackend(two_films(tmp_path)[0].config).draws_by_shot
    worker = Run(driver.config, Workspace.attach(driver.ws.root), driver.backend, driver.cast, False)
    frames, journal, failed = draw_storyboard(worker, script())
    assert failed is None and Manifest.view(driver.ws.root).artifact_keys("storyboard/") == []
    assert driver.manifest.artifact_keys("storyboard/") == [], "the worker recorded nothing"
    driver.manifest.replay(journal)

    alone = make_run(tmp_path / "alone", subject, pipe)
    assert frames == alone.backend.storyboard(alone, script())
    keys = alone.manifest.artifact_keys("storyboard/")
    assert len(keys) == 3 * 3 and driver.manifest.artifact_keys("storyboard/") == keys
    assert all(driver.manifest.artifact(k) == alone.manifest.artifact(k) for k in keys)
    assert driver.manifest.storyboard_identity == alone.manifest.storyboard_identity
    assert Manifest.view(driver.ws.root).artifact_keys("storyboard/") == keys, "saved by the driver"
    with pytest.raises(InputError, match="no change of a manifest"):
        driver.manifest.replay([("save", (), {})])


def square_subject(folder: Path) -> Subject:
    """A subject of two reference frames, a brown square on grey, for the tiny diffusion models."""
    frames, masks = [], []
    for i, side in enumerate([6, 12]):
        frame, mask = np.full((24, 24, 3), 200, np.uint8), np.zeros((24, 24), np.uint8)
        frame[:side, :side], mask[:side, :side] = (90, 60, 30), 255
        frames.append(folder / f"f{i}.png")
        masks.append(folder / f"m{i}.png")
        Image.fromarray(frame).save(frames[-1])
        Image.fromarray(mask).save(masks[-1])
    return Subject(name="Pip", class_word="rabbit", reference_media=[frames[0]], frames=frames, masks=masks)

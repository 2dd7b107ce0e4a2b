"""`storyagent batch`: many films from one jobs file, made here one after another or on a Ray cluster.

A jobs file lists one film per entry: TOML (a `[defaults]` table and `[[film]]` entries) or JSON
Lines (one object per line). An entry takes `out` (its run folder) and any `RunConfig` field;
`read_jobs` checks every entry before any work and refuses the file, one line per bad entry, when
one is wrong. Paths (subject, mask, video_adapter, out) are relative to the jobs file.

`run_batch` drives the films. Each film's crew (`run_crew`, which the front end hands in) runs in
this process, the batch's driver, with its run folder opened with resume: running the same
command again continues every film where it stopped. The heavy work goes through the run's
executor: `BatchExecutor` makes it here; `ray_tasks.RayExecutor` hands each shot's picture, each
shot's clip and each film's joining to a Ray cluster as tasks. Both prepare each distinct subject
once (keyed by its media's contents, as the cache is): its cut-out is copied into the other
films of the same character, and the backend's subject work (the diffusion fine-tunes, at each
film's storyboard stage) is done once while those films wait. The driver alone writes each film's
manifest.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from storyagent.cast import LEAD_FOLDER
from storyagent.config import RunConfig
from storyagent.errors import InputError, StoryAgentError
from storyagent.fileio import atomic_path, slugify
from storyagent.hashing import hash_file, hash_json
from storyagent.manifest import Manifest, read_run
from storyagent.media import media_files
from storyagent.progress import make_progress
from storyagent.tools.per_shot import CLIPS_DIR
from storyagent.tools.run import Executor
from storyagent.workspace import Workspace, check_out

BATCH_REVIEWS = ("none", "rules", "aesthetic", "llm")
"""Who may review a batch's films: every reviewer but a person."""
PATH_SETTINGS = ("subject", "mask", "video_adapter", "out")
"""Settings that name a file or folder, read relative to the jobs file."""
FILM_SETTINGS = frozenset(RunConfig.model_fields) | {"out"}
TUNE_SETTINGS = ("name", "class_word", "seed", "finetune", "finetune_preset", "anydoor_steps", "lora_be_epochs",
                 "video_adapter")
"""The settings besides the subject's media that a backend's subject work (its fine-tunes) depends on."""


@dataclass(frozen=True)
class Job:
    """One film of a batch: its number in the jobs file (from 1), its settings and its run folder."""

    number: int
    config: RunConfig
    out: Path


# ---- the jobs file --------------------------------------------------------------------------


def read_jobs(path: str | Path, *, default_name: Callable[[Path], str], out: Path | None = None,
              settings: dict[str, Any] | None = None, check: Callable[[RunConfig], None] | None = None) -> list[Job]:
    """Every film of the jobs file `path`, each checked (`RunConfig.build`, then `check`) before any work.

    A film without `out` goes to `<out>/<NN>_<prompt slug>`, `out` defaulting to the folder beside the
    jobs file named after it; a film without `name` is named from its subject's file (`default_name`).
    `settings` is where every film starts from, under the file's `[defaults]`. Any bad entry refuses
    the whole file: one `InputError` with one line per bad entry, each with its number.
    """
    path = Path(path).expanduser().resolve()
    defaults, entries = _entries(path)
    root = (out.expanduser().resolve() if out is not None else path.parent / path.stem)
    width = max(2, len(str(len(entries))))
    jobs: list[Job] = []
    problems: list[str] = []
    taken: dict[Path, int] = {}
    for number, where, entry in entries:
        try:
            job = _job(number, {**(settings or {}), **defaults, **entry}, path.parent, root, width, default_name, check)
            if job.out in taken:
                raise InputError(f"its run folder {job.out} is film {taken[job.out]}'s too; give each film its own out")
            taken[job.out] = number
            jobs.append(job)
        except InputError as exc:
            problems.append(f"  film {number}{where}: {str(exc).removeprefix('Invalid options: ').rstrip('.')}.")
    if problems:
        raise InputError(f"{path.name}: {len(problems)} of {len(entries)} films cannot be made, so none was "
                         "started:\n" + "\n".join(problems))
    return jobs


def _entries(path: Path) -> tuple[dict[str, Any], list[tuple[int, str, dict[str, Any]]]]:
    """The file's defaults and its entries: (number, where in the file, settings)."""
    if path.suffix.lower() not in (".toml", ".jsonl"):
        raise InputError(f"{path} is not a jobs file; give a .toml file ([[film]] entries) or a .jsonl file "
                         "(one film per line).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the jobs file {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    if path.suffix.lower() == ".jsonl":
        entries = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path.name}, line {line_number}: not valid JSON ({exc}).") from None
            if not isinstance(entry, dict):
                raise InputError(f"{path.name}, line {line_number}: a film is a JSON object, e.g. "
                                 '{"prompt": "a day at the seaside", "subject": "pip.png"}.')
            entries.append((len(entries) + 1, f" (line {line_number})", entry))
        defaults: Any = {}
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path.name} is not valid TOML ({exc}).") from None
        unknown = sorted(set(data) - {"defaults", "film"})
        if unknown:
            raise InputError(f"{path.name}: unknown top-level key {', '.join(map(repr, unknown))}; a jobs file holds a "
                             "[defaults] table and [[film]] entries.")
        defaults, films = data.get("defaults", {}), data.get("film", [])
        if not isinstance(defaults, dict) or not isinstance(films, list) or not all(isinstance(f, dict) for f in films):
            raise InputError(f"{path.name}: defaults must be a table ([defaults]) and each film one [[film]] table.")
        entries = [(i, "", film) for i, film in enumerate(films, start=1)]
    if not entries:
        raise InputError(f"{path.name} lists no film; add one [[film]] entry (TOML) or line (JSON Lines) per film.")
    return defaults, entries


def _job(number: int, settings: dict[str, Any], base: Path, root: Path, width: int,
         default_name: Callable[[Path], str], check: Callable[[RunConfig], None] | None) -> Job:
    unknown = sorted(set(settings) - FILM_SETTINGS)
    if unknown:
        raise InputError(f"unknown setting {', '.join(map(repr, unknown))}; a film takes out and the run settings "
                         f"({', '.join(sorted(RunConfig.model_fields))})")
    for key in PATH_SETTINGS:
        if isinstance(settings.get(key), str):
            settings[key] = (base / Path(settings[key]).expanduser()).resolve()
    if settings.get("review") == "human":
        raise InputError("review 'human' needs a person at every stage, which a batch has not; choose "
                         f"{', '.join(BATCH_REVIEWS)} (or make this film with storyagent chat)")
    if settings.get("finetune") == "force":
        raise InputError("finetune 'force' would train the subject again for each of its films; train it once with "
                         "storyagent run --finetune force, then run the batch with finetune auto")
    if "name" not in settings and isinstance(settings.get("subject"), Path):
        settings["name"] = default_name(settings["subject"])
    out = settings.pop("out", None)
    config = RunConfig.build(**settings)
    if check is not None:
        check(config)
    out = Path(out) if out is not None else root / f"{number:0{width}d}_{slugify(config.prompt)}"
    check_out(out)
    read_run(out)  # a damaged manifest is refused now, not after the other films are made
    return Job(number, config, out)


# ---- one subject, prepared once ---------------------------------------------------------------


def subject_key(config: RunConfig) -> str:
    """What a cast's cut-outs depend on: each character's media's contents (as the cache keys them), its
    mask, name and class word, how many frames are read and how they are masked (the backend)."""
    cast = [{"media": [hash_file(f) for f in media_files(m.media)], "mask": hash_file(m.mask) if m.mask else None,
             "class_word": m.class_word} | ({"name": m.name} if i else {}) for i, m in enumerate(config.cast)]
    lead = cast[0] | {"max_frames": config.max_reference_frames, "backend": config.backend}
    return hash_json(lead if len(cast) == 1 else {"cast": cast, **lead})


def share_subject(source: Path, ws: Workspace) -> bool:
    """Copy the subject that the run in `source` prepared into the run `ws` (its frames, masks and their
    records), unless `ws` already holds the same; `prepare_subject` then finds them fresh. Returns whether
    anything was copied."""
    src = Manifest.view(source)
    keys = src.artifact_keys(f"{LEAD_FOLDER}/") + src.artifact_keys("cast/")
    folders = {k.rpartition("/")[0] for k in keys}
    same = all(ws.manifest.artifact(k) == src.artifact(k) for k in keys) and \
        all(ws.manifest.reference_frames(f) == src.reference_frames(f) for f in folders)
    if not keys or same:
        return False
    for key in keys:
        entry = src.artifact(key)
        for rel in (entry["path"], entry.get("mask_path")):
            if rel is not None:
                with atomic_path(ws.path(rel)) as tmp:
                    shutil.copyfile(src.root / rel, tmp)
        ws.manifest.record(key, entry)
    for folder in folders:
        ws.manifest.set_reference_frames(src.reference_frames(folder), folder)
    ws.manifest.set_stage("subject", src.stages.get("subject", "done"))
    return True


def training_key(config: RunConfig) -> str:
    """What a cast's fine-tunes depend on: its cut-outs (`subject_key`) and the settings that train them."""
    return hash_json({"subject": subject_key(config), **{k: getattr(config, k) for k in TUNE_SETTINGS}})


class BatchExecutor(Executor):
    """A batch's executor in this process: the shots and films made here, one after another; each distinct
    subject prepared once and trained once, the other films of it waiting and then reusing it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._made: dict[str, Path] = {}
        self.shared = 0
        """How many films took their subject's cut-out from another film."""

    def lock(self, key: str) -> threading.Lock:
        """The one lock of `key` (a subject's cut-out, or its training) for every film of this batch."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def train(self, run) -> None:
        """A film's fine-tunes at its storyboard stage, one film of a subject at a time: the first trains them
        into the cache, the next waits and finds them there."""
        with self.lock("train:" + training_key(run.config)):
            super().train(run)

    @contextlib.contextmanager
    def preparing_subject(self, config: RunConfig, ws: Workspace) -> Iterator[None]:
        """One film of a subject at a time prepares it (`Run.open`: the cut-out, then the backend's
        `prepare_subject`); the next finds the cut-out copied in. Their fine-tunes train later, at each film's
        storyboard stage, one film of a subject at a time as well (`train`)."""
        key = subject_key(config)
        with self.lock(key):  # a second film of this subject waits for the first to prepare it
            source = self._made.get(key)
            if source is not None and source != ws.root and share_subject(source, ws):
                self.shared += 1
            yield
            self._made[key] = ws.root


# ---- the driver -------------------------------------------------------------------------------


@dataclass
class FilmDone:
    """How one film of a batch went."""

    job: Job
    error: str | None
    made: int = 0
    """Shots whose clip was made (or recorded) now."""
    reused: int = 0
    """Shots whose clip an earlier run had made."""
    seconds: float = 0.0


def _clips(out: Path) -> dict[str, Any]:
    try:
        run = read_run(out)
    except StoryAgentError:
        return {}
    return {k: run.artifact(k) for k in run.artifact_keys(CLIPS_DIR + "/")} if run else {}


def make_one(job: Job, make_film: Callable[[Job], bool]) -> FilmDone:
    """One film: `make_film(job)` (its crew), and what it made or reused; an error is its one line."""
    start, before = time.perf_counter(), _clips(job.out)
    try:
        finished = make_film(job)
        error = None if finished else "stopped before the film"
    except StoryAgentError as exc:
        error = str(exc)
    except Exception as exc:  # a bug in one film leaves the others to finish
        error = f"internal error: {type(exc).__name__}: {exc}"
    after = _clips(job.out)
    made = sum(1 for k, v in after.items() if before.get(k) != v)
    return FilmDone(job, error, made, len(after) - made, time.perf_counter() - start)


def run_batch(jobs: list[Job], make_film: Callable[[Job], bool], *, at_once: int = 1,
              show_progress: bool = True) -> list[FilmDone]:
    """Make every film (`make_film(job)`: its crew, with the batch's executor) and report each.

    One at a time here, in order; with `at_once` > 1, that many films' crews at once in threads of this
    process (their shots go to a cluster). One line per film as it ends and a bar over all of them, all
    printed from this thread.
    """
    done: list[FilmDone] = []
    with make_progress(disable=not show_progress) as progress:
        bar = progress.add_task("Films", total=len(jobs), status="")

        def report(result: FilmDone) -> None:
            done.append(result)
            progress.console.print(film_line(result, len(jobs)), highlight=False, soft_wrap=True)
            failed = sum(1 for r in done if r.error)
            progress.update(bar, advance=1, status=f"{failed} failed" if failed else "")

        if at_once <= 1:
            for job in jobs:
                report(make_one(job, make_film))
        else:
            for result in _in_threads(jobs, make_film, at_once):
                report(result)
    return sorted(done, key=lambda r: r.job.number)


def _in_threads(jobs: list[Job], make_film: Callable[[Job], bool], at_once: int) -> Iterator[FilmDone]:
    """Each film in one of `at_once` threads; yields each as it ends. The threads are daemons: an
    interrupted driver exits without waiting for them (every write is atomic; the same command continues)."""
    todo: queue.SimpleQueue[Job] = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    results: queue.SimpleQueue[FilmDone] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            results.put(make_one(job, make_film))

    for _ in range(min(at_once, len(jobs))):
        threading.Thread(target=worker, daemon=True, name="storyagent-film").start()
    for _ in jobs:
        while True:
            try:  # woken now and then, so Ctrl-C reaches this thread while the films run
                yield results.get(timeout=0.2)
                break
            except queue.Empty:
                continue


def film_line(result: FilmDone, total: int) -> str:
    """`film 2/4 done: runs/jobs/02_... (3 shots: 1 made, 2 reused; 4.2 s)` or `film 3/4 failed: ... : why`."""
    job = result.job
    head = f"film {job.number}/{total}"
    if result.error:
        return f"[red]{head} failed[/]: {escape(str(job.out))}: {escape(result.error)}"
    shots = result.made + result.reused
    return (f"[green]{head} done[/]: {escape(str(job.out))} ({shots} shots: {result.made} made, "
            f"{result.reused} reused; {result.seconds:.1f} s)")

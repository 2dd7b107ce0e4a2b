"""One home for a run: the `Run` every stage receives, what every backend implements, and the
backends by name.

A `Run` is built once per run by `Run.open` from a validated `RunConfig`: the run folder (and its
manifest), the backend (looked up in `BACKENDS`, the one place a backend's name maps to its
class), the subject prepared once, whether progress is shown, and the one seed rule of every stage
and backend (`Run.seed`). The tools and backends receive the run; none re-reads a setting or
picks a backend.

A backend is built once per run and the tools only call its methods:

- `check()`: fail before any work when the backend cannot run here (missing weights);
- `reference_masks(character)`: how a character's reference frames are masked (None: the media cut-out);
- `prepare_subject(run)`: what the backend builds from the run's cast when the run opens (cheap);
- `train_subject(run)`: what it trains on the cast (the diffusion fine-tunes), at the storyboard stage,
  after the story is written and approved (paper, Fig. 3), once per run (`Run.train`);
- `storyboard(run, script)`: every shot's picture and mask, recorded once each under `shot_key`;
- `clip_inputs()` and `animate(...)`: one shot's clip, made from its storyboard picture;
- `release()`: drop the models a stage loaded, so the next stage has the GPU memory.

Where the heavy work runs is the run's `Executor`: here, one shot after another (the default), or
on the workers of a Ray cluster in a batch (`tools/ray_tasks.py`). Either way a shot's work travels
as plain data (`ShotOrder`), whatever makes it only writes files (`made_once`), and the run's
driver alone records the result in the manifest; a worker sees the run through `Run.attach`, whose
manifest is read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.errors import InputError, StoryAgentError, WeightsNotFoundError
from storyagent.fileio import atomic_write_json
from storyagent.manifest import Manifest
from storyagent.schemas import Artifact, Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.shot_failure import ShotFailedError
from storyagent.tools.subject import PreparedSubject, prepare_cast
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.tools.subject import LangSAMMasks

SeededStage = Literal["storyboard", "video", "music"]
"""The stages whose work is drawn from a seed (the score is one per film: shot 0)."""
SEED_STRIDE = 1000
"""How far one reviewer's take moves a shot's seed (`manifest.MAX_TAKES` bounds the takes)."""
A = TypeVar("A", bound=Artifact)
P = TypeVar("P")
R = TypeVar("R")

BACKENDS: dict[str, str] = {
    "animatic": "storyagent.tools.backends.animatic:AnimaticBackend",
    "diffusion": "storyagent.tools.backends.diffusion:DiffusionBackend",
}
"""Backend name → `module:Class`, imported when asked for: the offline animatic never imports the
diffusion backend (and torch with it). `RunConfig.backend` accepts exactly these names."""
REVIEW_WEIGHTS: dict[str, tuple[str, ...]] = {"aesthetic": ("clip-vit-l-14", "laion-aesthetic-v2")}
"""What each Observer (`--review`) loads: the LAION aesthetic predictor is CLIP ViT-L/14 and its head."""


class Backend(ABC):
    """One way of turning a story and a subject into storyboard pictures and shot clips."""

    name: ClassVar[str]
    weights: ClassVar[tuple[str, ...]] = ()
    """Everything the backend loads, in the order the stages use them (names of `storyagent weights`)."""
    resources: ClassVar[dict[str, float]] = {"num_cpus": 1}
    """What one shot of this backend asks of a cluster's worker (Ray's `num_cpus`, `num_gpus`)."""
    subject_work: ClassVar[bool] = False
    """Whether `train_subject` does work worth a cluster's worker (training fine-tunes); a batch on Ray
    then runs it there, once per subject, with `resources`."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Fail before any work when this backend cannot run here (one sentence, with the fix); `Run.open` then
        checks the Observer's weights too (`check_review_weights`)."""
        if not self.weights:
            return
        from storyagent.weights import weights_available

        missing = [name for name in self.weights if not weights_available(name)]
        if missing:
            raise WeightsNotFoundError(
                f"--backend {self.name} needs weights that are not on this machine ({', '.join(missing)}); "
                f"run `storyagent weights fetch {' '.join(missing)}` or leave out --backend for the offline animatic."
            )

    def reference_masks(self, character: CastMember) -> LangSAMMasks | None:
        """What masks a character's reference frames; None leaves the media cut-out (alpha, GrabCut)."""
        return None

    @abstractmethod
    def prepare_subject(self, run: Run) -> None:
        """Build what this backend needs from the run's subject when the run opens (`Run.open` calls it once)."""

    def train_subject(self, run: Run) -> None:
        """Train what this backend needs on the run's cast (the diffusion fine-tunes) before its first storyboard
        picture: at the storyboard stage, after the story is written and approved (paper, Fig. 3), so a reviewer
        never waits for training to read the story. `Run.train` calls it once per run, through the executor."""

    def attach_subject(self, run: Run) -> None:
        """A worker's `prepare_subject` (`Run.attach`): what the shots need, without recording anything
        (the run is a read-only view). Backends whose `prepare_subject` records must override it."""
        self.prepare_subject(run)

    @abstractmethod
    def storyboard(self, run: Run, script: StoryScript) -> list[StoryboardFrame]:
        """Every shot's storyboard picture (and subject mask), reusing the fresh ones.

        Each frame is recorded once, under `shot_key(STORYBOARD_DIR, index)`; a shot whose picture is
        fresh is not drawn again, whatever happens to the others.
        """

    def draw(self, run: Run, shot: Shot, input_hash: str) -> StoryboardFrame:
        """One shot's storyboard picture and mask, written under `frame_path(shot.index)`, for a backend that
        draws shot by shot (through `run_per_shot`); drawn with `run.seed("storyboard", shot.index)`."""
        raise NotImplementedError(f"the {self.name} backend draws its storyboard a film at a time")

    @property
    def draws_by_shot(self) -> bool:
        """Whether each storyboard picture is its own piece of work (`draw`), or the film's pictures are drawn
        together (the diffusion storyboard: StoryDiffusion attends across the shots)."""
        return type(self).draw is not Backend.draw

    def make_shot(self, run: Run, order: ShotOrder) -> Artifact:
        """The work `order` asks: a storyboard picture (`draw`) or a clip (`animate`); files only, no record."""
        if order.stage == "video":
            if order.board is None:
                raise ValueError(f"the clip of shot {order.shot.index} was asked without its storyboard picture")
            return self.animate(run, order.shot, order.board, order.input_hash)
        return self.draw(run, order.shot, order.input_hash)

    def clip_inputs(self) -> dict[str, object]:
        """What every clip depends on besides its picture, shot, subject and take (part of its hash)."""
        return {"backend": self.name, "adapter": None}

    @abstractmethod
    def animate(self, run: Run, shot: Shot, board: StoryboardFrame, input_hash: str) -> ShotClip:
        """Make shot `shot`'s clip from its storyboard picture `board` (drawn with `board.meta["seed"]`),
        written to `clip_path(shot.index)`; its own randomness comes from `run.seed("video", shot.index)`."""

    def release(self) -> None:
        """Drop the models loaded for a stage; the next call loads them again."""


def check_review_weights(backend: Backend) -> None:
    """Fail before any work when the Observer (`--review`) loads weights this machine lacks, for a backend that
    loads weights at all: hours of fine-tuning may come before its first review. (The animatic reaches its
    first review seconds into a run, where the Observer's own error says the same.)"""
    needed = REVIEW_WEIGHTS.get(backend.cfg.review, ()) if backend.weights else ()
    if not needed:
        return
    from storyagent.weights import weights_available

    missing = [name for name in needed if not weights_available(name)]
    if missing:
        raise WeightsNotFoundError(
            f"--review {backend.cfg.review} needs weights that are not on this machine ({', '.join(missing)}); run "
            f"`storyagent weights fetch {' '.join(missing)}` or choose another --review; nothing was trained.")


def backend_class(name: str) -> type[Backend]:
    """The class of the backend `name`; an unknown name is refused in one sentence."""
    if name not in BACKENDS:
        raise InputError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(import_module(module), cls)


class ShotOrder(BaseModel):
    """One shot's work as plain data: with the run folder and the config, everything a worker anywhere needs."""

    stage: SeededStage
    key: str
    """The artifact's manifest key (`shots/shot_03`)."""
    shot: Shot
    input_hash: str
    seed: int
    """`Run.seed(stage, shot)` when the order was given; a worker whose manifest gives another refuses it."""
    board: StoryboardFrame | None = None
    """The video stage: the storyboard picture the clip starts from."""


class Executor:
    """Where a run's heavy work is done: here, in order, in this process (this class).

    A batch hands the same work to a cluster's workers (`tools/ray_tasks.py`); whichever does it, the
    work only writes files and returns its record, and the caller records it in the manifest.
    """

    @contextlib.contextmanager
    def preparing_subject(self, config: RunConfig, ws: Workspace) -> Iterator[None]:
        """Around a run's subject preparation (its cut-out and the backend's subject work): nothing here; a
        batch makes each subject once and lets the other films of it wait for that and reuse it."""
        yield

    def prepare(self, run: Run) -> None:
        """The backend's work on the run's subject when the run opens (`Backend.prepare_subject`)."""
        run.backend.prepare_subject(run)

    def train(self, run: Run) -> None:
        """The backend's training on the run's cast, at the storyboard stage (`Backend.train_subject`); a batch
        trains each subject once, the other films of it waiting and then finding it in the cache."""
        run.backend.train_subject(run)

    def map(self, run: Run, fn: Callable[[Run, P], R], items: Sequence[P],
            resources: dict[str, float]) -> Iterator[tuple[P, R | ShotFailedError]]:
        """`fn(run, item)` for each item, as each finishes: its result, or the `ShotFailedError` it raised
        (any other error stops the work). Here: in order, each made only when the caller asks for it, so
        a caller that records each result before the next loses none when interrupted."""
        for item in items:
            try:
                yield item, fn(run, item)
            except ShotFailedError as exc:
                yield item, exc

    def call(self, run: Run, fn: Callable[[Run, P], R], item: P, resources: dict[str, float]) -> R:
        """`fn(run, item)`, wherever this executor does its work."""
        ((_, result),) = self.map(run, fn, [item], resources)
        if isinstance(result, ShotFailedError):
            raise result
        return result


@dataclass
class Run:
    """Everything one run's stages share; built by `Run.open`, never by hand in the front ends."""

    config: RunConfig
    ws: Workspace
    backend: Backend
    cast: list[PreparedSubject]
    """Every character's reference frames, the lead first (`config.cast`'s order)."""
    show_progress: bool = True
    executor: Executor = field(default_factory=Executor)
    trained: bool = False
    """Whether `train` has run in this session."""

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: RunConfig, out: str | os.PathLike[str], *, resume: bool = False,
             show_progress: bool = True, executor: Executor | None = None) -> Iterator[Run]:
        """Check the backend can run here, lock the run folder `out` (new, or resumed with `resume`),
        prepare the subject once, and hand over the run; the folder stays locked until the block ends.
        `executor` is where the shots are made (default: here, one after another)."""
        backend = backend_class(config.backend)(config)
        backend.check()
        check_review_weights(backend)  # every weight the run loads, before anything trains
        executor = executor or Executor()
        with Workspace.open(out, config.inputs_record(), resume=resume) as ws:
            with executor.preparing_subject(config, ws):
                cast = prepare_cast(ws, config, backend.reference_masks)
                run = cls(config, ws, backend, cast, show_progress, executor)
                executor.prepare(run)
            yield run

    @classmethod
    def attach(cls, root: str | os.PathLike[str], config: RunConfig) -> Run:
        """A worker's view of the run in `root`, which its driver holds open: the backend built from
        `config`, the subject read from the run folder, the manifest read-only (nothing is recorded)."""
        backend = backend_class(config.backend)(config)
        ws = Workspace.attach(root)
        run = cls(config, ws, backend, prepare_cast(ws, config, backend.reference_masks), show_progress=False)
        backend.attach_subject(run)
        return run

    def train(self) -> None:
        """The backend's training on the cast (`Backend.train_subject`), once per session, through the run's
        executor: the storyboard and video stages call it before their first picture or clip, so it happens
        after the story is written and approved, as in the paper's Fig. 3."""
        if not self.trained:
            self.executor.train(self)
            self.trained = True

    def reread(self, journal: bool = False) -> Run:
        """This worker's view with the manifest read again (the takes and redos of the work asked now),
        read-only or journaling (`Manifest.view`); the backend and the subject are kept."""
        return replace(self, ws=Workspace.attach(self.ws.root, journal=journal))

    @property
    def manifest(self) -> Manifest:
        return self.ws.manifest

    @property
    def subject(self) -> PreparedSubject:
        """The lead character's reference frames."""
        return self.cast[0]

    def seed(self, stage: SeededStage, shot: int) -> int:
        """The one seed rule, for every stage and backend: the run's seed plus the shot's number, moved by
        `SEED_STRIDE` for each take a reviewer asked of this shot at this stage. A clip starts from its storyboard picture, which
        keeps the seed it was drawn with (`StoryboardFrame.meta["seed"]`); the clip's own randomness (its
        motion) comes from its video seed."""
        return self.config.seed + shot + SEED_STRIDE * self.manifest.take(stage, shot)


def subject_ready(run: Run, _: object = None) -> None:
    """A worker's task for a subject: `Run.attach` made it ready (the backend's `attach_subject`)."""


# ---- made once: the note a finished file leaves -------------------------------------------------

MADE_NOTE = ".made.json"
MAX_NOTE_BYTES = 1 << 20


def made_note(ws: Workspace, key: str) -> Path:
    """The note beside artifact `key`'s files once they are finished (`shots/.shot_03.made.json`)."""
    folder, _, name = key.rpartition("/")
    return ws.path(f"{folder}/.{name}{MADE_NOTE}" if folder else f".{name}{MADE_NOTE}")


def finished_earlier(ws: Workspace, key: str, input_hash: str, kind: type[A]) -> A | None:
    """The artifact an earlier attempt finished for `key` from these inputs: its note names this input hash
    and every file it lists is there with the content it had; else None."""
    note = made_note(ws, key)
    try:
        if not note.is_file() or note.stat().st_size > MAX_NOTE_BYTES:
            return None
        data = json.loads(note.read_bytes())
        artifact = kind.model_validate(data["artifact"])
        hashes = artifact.meta.get("file_hashes") or {}
        if data.get("input_hash") != input_hash or artifact.input_hash != input_hash or not hashes:
            return None
        if hashes != ws.file_hashes(artifact):
            return None
    except (OSError, ValueError, KeyError, TypeError, ValidationError, InputError):
        return None
    return artifact


def made_once(run: Run, key: str, input_hash: str, kind: type[A], make: Callable[[], A]) -> A:
    """`make()`'s artifact for `key`, or the one an earlier attempt already finished.

    `make` writes the files (atomically). On a worker (a read-only view of the run, whose result is
    recorded later by the driver), a small note beside them then records the input hash, the artifact
    and its files' content hashes, atomically: a retried task (its worker died after the file was done)
    or the batch run again (its driver died before recording) finds the note and returns the artifact
    without making it again. The driver records at once, so in one process no note is needed.
    """
    earlier = finished_earlier(run.ws, key, input_hash, kind)
    if earlier is not None:
        return earlier
    artifact = make()
    if run.manifest.read_only:
        artifact.meta["file_hashes"] = run.ws.file_hashes(artifact)
        atomic_write_json(made_note(run.ws, key), {
            "input_hash": input_hash, "artifact": artifact.model_dump(mode="json"),
            "made": {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}})
    return artifact


def make_shot(run: Run, order: ShotOrder) -> Artifact:
    """One shot's work (`ShotOrder`), made once (`made_once`); the caller records the result."""
    kind = ShotClip if order.stage == "video" else StoryboardFrame

    def make() -> Artifact:
        seed = run.seed(order.stage, order.shot.index)
        if seed != order.seed:
            raise StoryAgentError(f"Shot {order.shot.index}'s {order.stage} seed is {order.seed} for the driver but "
                                  f"{seed} in {run.ws.root / 'manifest.json'} as this node reads it; put run folders "
                                  "on storage every node sees the same (see README, Many films).")
        return run.backend.make_shot(run, order)

    return made_once(run, order.key, order.input_hash, kind, make)

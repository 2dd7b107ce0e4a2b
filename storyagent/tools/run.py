"""One home for a run: the `Run` every stage receives, what every backend implements, and the
backends by name.

A `Run` is built once per run by `Run.open` from a validated `RunConfig`: the run folder (and its
manifest), the backend (looked up in `BACKENDS`, the one place a backend's name maps to its
class), the subject prepared once, whether progress is shown, and the one seed rule of every stage
and backend (`Run.seed`). The tools and backends receive the run; none re-reads a setting or
picks a backend.

A backend is built once per run and the tools only call its methods:

- `check()`: fail before any work when the backend cannot run here (missing weights);
- `reference_masks()`: how the subject's reference frames are masked (None: the media cut-out);
- `prepare_subject(run)`: what the backend builds from the run's subject, once per run;
- `storyboard(run, script)`: every shot's picture and mask, recorded once each under `shot_key`;
- `clip_inputs()` and `animate(...)`: one shot's clip, made from its storyboard picture;
- `release()`: drop the models a stage loaded, so the next stage has the GPU memory.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, ClassVar, Literal

from storyagent.config import RunConfig
from storyagent.errors import InputError, WeightsNotFoundError
from storyagent.manifest import Manifest
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.subject import PreparedSubject, prepare_subject
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.tools.subject import LangSAMMasks

SeededStage = Literal["storyboard", "video"]
"""The stages whose work is drawn from a seed."""
SEED_STRIDE = 1000
"""How far one reviewer's take moves a shot's seed (`manifest.MAX_TAKES` bounds the takes)."""

BACKENDS: dict[str, str] = {
    "animatic": "storyagent.tools.backends.animatic:AnimaticBackend",
    "diffusion": "storyagent.tools.backends.diffusion:DiffusionBackend",
}
"""Backend name → `module:Class`, imported when asked for: the offline animatic never imports the
diffusion backend (and torch with it). `RunConfig.backend` accepts exactly these names."""


class Backend(ABC):
    """One way of turning a story and a subject into storyboard pictures and shot clips."""

    name: ClassVar[str]
    weights: ClassVar[tuple[str, ...]] = ()
    """Everything the backend loads, in the order the stages use them (names of `storyagent weights`)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Fail before any work when this backend cannot run here (one sentence, with the fix)."""
        if not self.weights:
            return
        from storyagent.weights import weights_available

        missing = [name for name in self.weights if not weights_available(name)]
        if missing:
            raise WeightsNotFoundError(
                f"--backend {self.name} needs weights that are not on this machine ({', '.join(missing)}); "
                f"run `storyagent weights fetch {' '.join(missing)}` or leave out --backend for the offline animatic."
            )

    def reference_masks(self) -> LangSAMMasks | None:
        """What masks the subject's reference frames; None leaves the media cut-out (alpha, GrabCut)."""
        return None

    @abstractmethod
    def prepare_subject(self, run: Run) -> None:
        """Build what this backend needs from the run's subject (`Run.open` calls it once)."""

    @abstractmethod
    def storyboard(self, run: Run, script: StoryScript) -> list[StoryboardFrame]:
        """Every shot's storyboard picture (and subject mask), reusing the fresh ones.

        Each frame is recorded once, under `shot_key(STORYBOARD_DIR, index)`; a shot whose picture is
        fresh is not drawn again, whatever happens to the others.
        """

    def clip_inputs(self) -> dict[str, object]:
        """What every clip depends on besides its picture, shot, subject and take (part of its hash)."""
        return {"backend": self.name, "adapter": None}

    @abstractmethod
    def animate(self, run: Run, shot: Shot, board: StoryboardFrame, input_hash: str) -> ShotClip:
        """Make shot `shot`'s clip from its storyboard picture `board` (drawn with `board.meta["seed"]`),
        written to `clip_path(shot.index)`; its own randomness comes from `run.seed("video", shot.index)`."""

    def release(self) -> None:
        """Drop the models loaded for a stage; the next call loads them again."""


def backend_class(name: str) -> type[Backend]:
    """The class of the backend `name`; an unknown name is refused in one sentence."""
    if name not in BACKENDS:
        raise InputError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(import_module(module), cls)


@dataclass
class Run:
    """Everything one run's stages share; built by `Run.open`, never by hand in the front ends."""

    config: RunConfig
    ws: Workspace
    backend: Backend
    subject: PreparedSubject
    show_progress: bool = True

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: RunConfig, out: str | os.PathLike[str], *, resume: bool = False,
             show_progress: bool = True) -> Iterator[Run]:
        """Check the backend can run here, lock the run folder `out` (new, or resumed with `resume`),
        prepare the subject once, and hand over the run; the folder stays locked until the block ends."""
        backend = backend_class(config.backend)(config)
        backend.check()
        with Workspace.open(out, config.inputs_record(), resume=resume) as ws:
            subject = prepare_subject(ws, config, backend.reference_masks())
            run = cls(config, ws, backend, subject, show_progress)
            backend.prepare_subject(run)
            yield run

    @property
    def manifest(self) -> Manifest:
        return self.ws.manifest

    def seed(self, stage: SeededStage, shot: int) -> int:
        """The one seed rule, for every stage and backend: the run's seed plus the shot's number, moved by
        `SEED_STRIDE` for each take a reviewer asked of this shot at this stage. A clip starts from its storyboard picture, which
        keeps the seed it was drawn with (`StoryboardFrame.meta["seed"]`); the clip's own randomness (its
        motion) comes from its video seed."""
        return self.config.seed + shot + SEED_STRIDE * self.manifest.take(stage, shot)

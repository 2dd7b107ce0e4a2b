"""The run's backend: what the offline animatic and the paper's diffusion pipeline do differently.

`select_backend(cfg)` is the one place that reads `cfg.backend`; it is called once per run (the
crew keeps the object) and the tools only call the object's methods:

- `check()`: fail before any work when the backend cannot run here (missing weights);
- `reference_masks()`: how the subject's reference frames are masked (None: the media cut-out);
- `prepare_subject(ws, subject)`: what the backend builds from the subject, once per subject
  (the crew's subject preparation stage);
- `storyboard(...)`: every shot's picture and mask, recorded once each under `shot_key`;
- `clip_inputs()` and `animate(...)`: one shot's clip, made from its storyboard picture;
- `release()`: drop the models a stage loaded, so the next stage has the GPU memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from storyagent.config import RunConfig
from storyagent.errors import WeightsNotFoundError
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.weights import weights_available
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.tools.subject import LangSAMMasks, PreparedSubject


class Backend(ABC):
    """One way of turning a story and a subject into storyboard pictures and shot clips."""

    name: ClassVar[str]
    weights: ClassVar[tuple[str, ...]] = ()
    """Everything the backend loads, in the order the stages use them (names of `storyagent weights`)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Fail before any work when this backend cannot run here (one sentence, with the fix)."""
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
    def prepare_subject(self, ws: Workspace, subject: PreparedSubject, show_progress: bool = True) -> None:
        """Build what this backend needs from the subject; the tools call it before every stage, so it
        must return at once when `subject` is the one already prepared."""

    @abstractmethod
    def storyboard(self, ws: Workspace, script: StoryScript, subject: PreparedSubject,
                   show_progress: bool) -> list[StoryboardFrame]:
        """Every shot's storyboard picture (and subject mask), reusing the fresh ones.

        Each frame is recorded once, under `shot_key(STORYBOARD_DIR, index)`; a shot whose picture is
        fresh is not drawn again, whatever happens to the others.
        """

    def clip_inputs(self) -> dict[str, object]:
        """What every clip depends on besides its picture, shot, subject and take (part of its hash)."""
        return {"backend": self.name, "adapter": None}

    @abstractmethod
    def animate(self, ws: Workspace, shot: Shot, board: StoryboardFrame, input_hash: str, seed: int) -> ShotClip:
        """Make shot `shot`'s clip from its storyboard picture `board`, written to `clip_path(shot.index)`."""

    def release(self) -> None:
        """Drop the models loaded for a stage; the next call loads them again."""


def select_backend(cfg: RunConfig) -> Backend:
    """The backend `cfg.backend` names; call once per run and hand the object to the tools."""
    from storyagent.tools.backends.animatic import AnimaticBackend
    from storyagent.tools.backends.diffusion import DiffusionBackend

    backends: dict[str, type[Backend]] = {b.name: b for b in (AnimaticBackend, DiffusionBackend)}
    return backends[cfg.backend](cfg)

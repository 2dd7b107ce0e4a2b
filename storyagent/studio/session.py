"""One film in the studio: `run_crew` in a background thread, its review questions through a queue.

The crew asks the human Observer through AG2's IOStream; `PageIO.input` parks the question where
the page can see it and waits until the page answers. The page only ever polls (`RunSession.view`)
and answers (`RunSession.answer`), so a slow step never blocks a request.
"""

from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from autogen.io import IOConsole

from storyagent.agents.context import parse_verdict
from storyagent.config import RunConfig
from storyagent.errors import InputError, StoryAgentError
from storyagent.manifest import MANIFEST

STAGE = re.compile(r"\[(story|storyboard|video)\] ready")


class PageIO(IOConsole):
    """An IOStream whose `input()` waits for the page's answer; what the crew prints is kept as a log."""

    def __init__(self) -> None:
        self.question: str | None = None
        self.log: list[str] = []
        self._answers: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()

    def print(self, *objects: object, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        self.log.append(sep.join(map(str, objects)))

    def send(self, message: object) -> None:
        pass  # the page shows the work itself, not the agents' chat events

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        with self._lock:
            self.question = prompt
        answer = self._answers.get()
        with self._lock:
            self.question = None
        return answer

    def answer(self, text: str) -> bool:
        """Hand `text` to the waiting crew; False when no question is open."""
        with self._lock:
            if self.question is None:
                return False
            self.question = None  # answered once: a double click does not queue a second answer
        self._answers.put(text)
        return True


@dataclass
class View:
    """What the page shows of a run at one moment."""

    state: str
    """running, review, done, stopped or failed."""
    stage: str | None = None
    """The stage under review (story, storyboard, video) while state is review."""
    question: str = ""
    error: str = ""
    stages: dict[str, str] = field(default_factory=dict)
    """Each stage's status from the manifest: pending, running, done ..."""
    film: Path | None = None


@dataclass
class RunSession:
    """One run folder driven by `run_crew` with the human Observer answering from the page."""

    root: Path
    cfg: RunConfig
    resume: bool = False
    io: PageIO = field(default_factory=PageIO)
    error: str = ""
    stopped: bool = False
    finished: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        # A daemon: a tab closed mid-review leaves a thread waiting for an answer, which must not keep
        # the server from exiting (the run folder keeps every finished file; reopening resumes it).
        self._thread = threading.Thread(target=self._work, name=f"studio-{self.root.name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        from storyagent.agents.crew import run_crew

        try:
            result = run_crew(self.cfg, self.root, resume=self.resume, show_progress=False, io=self.io)
            self.stopped = result.stopped
        except StoryAgentError as exc:
            self.error = str(exc)
        except Exception as exc:  # shown as one sentence on the page; the folder keeps finished work
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.error = f"The run stopped on an unexpected error ({type(exc).__name__}: {first})."
        finally:
            self.finished = True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def view(self) -> View:
        stages = read_stages(self.root)
        question = self.io.question
        if question is not None:
            m = STAGE.search(question)
            return View("review", m.group(1) if m else None, question.strip().removesuffix(">").strip(), stages=stages)
        if not self.finished:
            return View("running", stages=stages)
        if self.error:
            return View("failed", error=self.error, stages=stages)
        film = self.root / "film.mp4"
        if self.stopped or not film.is_file():
            return View("stopped", stages=stages)
        return View("done", stages=stages, film=film)

    def answer(self, text: str) -> None:
        """Send one review answer; an answer the crew cannot read is refused here, in one sentence."""
        question = self.io.question
        if question is None:
            raise InputError("The crew is not waiting for a review right now; wait for the next stage.")
        parse_verdict(text, self.cfg.shots)
        if not self.io.answer(text):
            raise InputError("That stage was already answered; wait for the next one.")


def read_stages(root: Path) -> dict[str, str]:
    """Each stage's status as the manifest has it now, with how many pictures and clips are finished
    (the manifest records each one as soon as it is written); empty before the run has written one."""
    import json

    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    stages = {k: str(v) for k, v in manifest.get("stages", {}).items()}
    made = [a.get("path", "") for a in manifest.get("artifacts", {}).values() if isinstance(a, dict)]
    for stage, folder in (("storyboard", "storyboard/shot_"), ("video", "shots/shot_")):
        count = sum(p.startswith(folder) and "_mask" not in p for p in made)
        if stage in stages and count:
            stages[stage] = f"{stages[stage].split(':')[0]} ({count} made)"
    return stages

"""A batch's work as Ray tasks (`storyagent batch --ray`).

The driver runs each film's crew (the story, the reviews, the redos, the manifest); the work is a
graph of tasks on the cluster: each distinct subject's fine-tunes (the diffusion backend; once per
subject, at the first of its films' storyboard stage, the other films of that character waiting for
it), each shot's storyboard picture, each shot's
clip (those of a film at once, as soon as its storyboard is reviewed), then the film's joining.
A shot asks for what its backend declares (`Backend.resources`: a CPU for the animatic, a GPU for
the diffusion backend), the film for a CPU; the cluster's scheduler places them, spread over the
nodes. The diffusion backend draws every shot of a film's storyboard together (StoryDiffusion's
consistent attention runs across the shots), so its storyboard is one task per film
(`storyboard.draw_storyboard`), which hands back its manifest changes for the driver to make.

A task receives plain data (the run folder, the config as JSON, a `ShotOrder` or `FilmOrder`),
sees the run through `Run.attach` (read-only manifest; the backend and the subject's sprites are
kept per worker process, so a worker making many shots of one film loads the subject once), writes
its files atomically with a note beside them (`made_once`) and returns the record, which the driver
records. A task whose worker dies is retried by Ray (`MAX_RETRIES`); a retry that finds the file
finished returns it without making it again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from storyagent.config import RunConfig
from storyagent.errors import StoryAgentError
from storyagent.tools.batch import BatchExecutor, training_key
from storyagent.tools.run import Run, subject_ready
from storyagent.tools.shot_failure import ShotFailedError

P = TypeVar("P")
R = TypeVar("R")

MAX_RETRIES = 3
"""How many times Ray runs a task again whose worker died (a lost node, a killed process)."""
KEPT_RUNS = 4
"""How many films' views a worker keeps (one when its backend holds a GPU's models)."""

_views: OrderedDict[str, Run] = OrderedDict()


def attached(root: str, config: dict[str, Any]) -> Run:
    """This worker's view of the run in `root`: built once per film and kept (backend, subject), with the
    manifest read again for every task (the takes and redos it works from)."""
    key = json.dumps([root, config], sort_keys=True)
    run = _views.pop(key, None)
    run = Run.attach(root, RunConfig.model_validate(config)) if run is None else run.reread()
    _views[key] = run
    keep = 1 if run.backend.resources.get("num_gpus") else KEPT_RUNS
    while len(_views) > keep:
        _, old = _views.popitem(last=False)
        old.backend.release()
    return run


def work(root: str, config: dict[str, Any], fn: Callable[[Run, P], R], item: P) -> R:
    """A task: `fn(view, item)` on this worker's view of the run in `root`."""
    return fn(attached(root, config), item)


class RayExecutor(BatchExecutor):
    """A batch's executor on a Ray cluster: every piece of work a task, the results back to the driver."""

    def __init__(self, ray: Any) -> None:
        super().__init__()
        self.ray = ray
        self._task = ray.remote(max_retries=MAX_RETRIES)(work)
        self._prepared: set[str] = set()

    def train(self, run: Run) -> None:
        """The backend's subject work (the fine-tunes, at a film's storyboard stage) as one task per subject (the
        other films of that subject wait on its lock); then the driver's backend finds the result in the cache
        and records it."""
        key = training_key(run.config)
        with self.lock("train:" + key):
            if run.backend.subject_work and key not in self._prepared:
                self.call(run, subject_ready, None, run.backend.resources)
                self._prepared.add(key)
            run.backend.train_subject(run)

    def map(self, run: Run, fn: Callable[[Run, P], R], items: Sequence[P],
            resources: dict[str, float]) -> Iterator[tuple[P, R | ShotFailedError]]:
        """Every item a task at once (spread over the nodes); yields each as it finishes. Tasks still running
        when the caller stops are cancelled."""
        ray = self.ray
        root, config = str(run.ws.root), run.config.model_dump(mode="json")
        task = self._task.options(**resources, scheduling_strategy="SPREAD")
        refs = {task.remote(root, config, fn, item): item for item in items}
        pending = list(refs)
        try:
            while pending:
                (ref,), pending = ray.wait(pending, num_returns=1)
                yield refs[ref], self._result(ref, run)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def _result(self, ref: Any, run: Run) -> Any:
        """A finished task's result; a failed shot as its `ShotFailedError`, any other failure raised in one
        sentence (a worker lost more often than Ray retries, an error on the worker)."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ShotFailedError):
                return cause
            if isinstance(cause, StoryAgentError):
                raise cause from None
            raise StoryAgentError(f"A task of {run.ws.root} failed on a worker: {type(cause or exc).__name__}: "
                                  f"{(str(cause or exc).strip().splitlines() or [''])[-1][:300]}") from None
        except exceptions.RayError as exc:
            raise StoryAgentError(f"A task of {run.ws.root} lost its worker {MAX_RETRIES + 1} times "
                                  f"({type(exc).__name__}); run the same command again to continue.") from None

"""The loop every per-shot stage shares: reuse what is fresh, make what is not, one progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from storyagent.progress import make_progress
from storyagent.schemas import Artifact, Shot
from storyagent.workspace import Workspace

A = TypeVar("A", bound=Artifact)


def run_per_shot(ws: Workspace, shots: Sequence[Shot], *, key_prefix: str, label: str, kind: type[A],
                 input_hash: Callable[[Shot], str], make: Callable[[Shot, str], A], show_progress: bool = True) -> list[A]:
    """For each shot: the artifact `key_prefix/shot_NN` if its inputs are unchanged, else `make(shot, hash)`.

    Each made artifact is recorded in the manifest at once, so an interruption loses none.
    """
    results: list[A] = []
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(label, total=len(shots), status="")
        for shot in shots:
            key, h = f"{key_prefix}/shot_{shot.index:02d}", input_hash(shot)
            if ws.fresh(key, h):
                results.append(kind.model_validate(ws.artifact(key)))
                progress.update(task, advance=1, status=f"shot {shot.index} reused")
                continue
            results.append(ws.record(key, make(shot, h)))
            progress.update(task, advance=1, status=f"shot {shot.index} done")
    return results

"""What every per-shot stage shares: artifact keys and file names, the reviewer's words a shot's model
prompt takes, and the loop that reuses what is fresh and has the run's executor make what is not,
under one progress bar."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from storyagent.progress import make_progress
from storyagent.schemas import Artifact, Shot, ShotClip, StoryboardFrame
from storyagent.tools.run import SeededStage, ShotOrder, make_shot
from storyagent.tools.shot_failure import ShotFailedError

if TYPE_CHECKING:
    from storyagent.manifest import Manifest
    from storyagent.tools.run import Run

A = TypeVar("A", bound=Artifact)

STORYBOARD_DIR = "storyboard"
CLIPS_DIR = "shots"
STAGE_DIR: dict[str, str] = {"storyboard": STORYBOARD_DIR, "video": CLIPS_DIR}


def shot_key(folder: str, index: int) -> str:
    """The manifest key of shot `index`'s artifact in `folder` (`storyboard/shot_03`); its files share the name."""
    return f"{folder}/shot_{index:02d}"


def frame_path(index: int) -> str:
    """Shot `index`'s storyboard picture (`storyboard/shot_03.png`); its mask is `..._mask.png`."""
    return shot_key(STORYBOARD_DIR, index) + ".png"


def clip_path(index: int) -> str:
    """Shot `index`'s clip (`shots/shot_03.mp4`)."""
    return shot_key(CLIPS_DIR, index) + ".mp4"


def shot_feedback(manifest: Manifest, stage: str, index: int) -> str:
    """A reviewer's words for this shot's `stage` that the story could not take in, oldest first ("" when
    none). Words that rewrote the shot's text ("make it night") are already in it; the rest ("under a red
    umbrella" to the offline planner) reach the image or video model's prompt this way."""
    redos = manifest.redos(stage, index)
    return "; ".join(r["feedback"] for r in redos if r.get("feedback") and not r.get("rewrote_story"))


def run_per_shot(run: Run, shots: Sequence[Shot], *, stage: SeededStage, label: str,
                 input_hash: Callable[[Shot], str],
                 boards: Mapping[int, StoryboardFrame] | None = None) -> list[StoryboardFrame] | list[ShotClip]:
    """For each shot: the artifact `shot_key(STAGE_DIR[stage], index)` if its inputs are unchanged, else
    made by the run's executor (`make_shot`: the backend's `draw` or, with its picture in `boards`, `animate`).

    Each made artifact is recorded in the manifest (here, by the run's driver) as soon as it comes
    back, so an interruption loses none. A shot whose making raises `ShotFailedError` is skipped; the
    other shots are made and the error is raised at the end.
    """
    kind = ShotClip if stage == "video" else StoryboardFrame
    results: dict[int, Artifact] = {}
    failed: list[ShotFailedError] = []
    made: list[int] = []
    ws = run.ws
    orders = []
    for shot in shots:
        key, h = shot_key(STAGE_DIR[stage], shot.index), input_hash(shot)
        if ws.fresh(key, h):
            results[shot.index] = kind.model_validate(ws.manifest.artifact(key))
        else:
            orders.append(ShotOrder(stage=stage, key=key, shot=shot, input_hash=h, seed=run.seed(stage, shot.index),
                                    board=boards[shot.index] if boards is not None else None))
    with make_progress(disable=not run.show_progress) as progress:
        task = progress.add_task(label, total=len(shots), completed=len(results), status="")
        for order, outcome in run.executor.map(run, make_shot, orders, run.backend.resources):
            if isinstance(outcome, ShotFailedError):
                failed.append(outcome)
            else:
                results[order.shot.index] = ws.record(order.key, outcome)
                made.append(order.shot.index)
            progress.update(task, advance=1, status=f"shot {order.shot.index}")
        lost = {s for f in failed for s in f.shots}
        reused = [s.index for s in shots if s.index not in made and s.index not in lost]
        # The line left on screen says what this pass did, not which shot happened to come last.
        progress.update(task, completed=len(shots), status="; ".join(
            part for part in (f"made: {', '.join(map(str, sorted(made)))}" if made else "",
                              f"reused: {', '.join(map(str, reused))}" if reused else "",
                              f"failed: {', '.join(map(str, sorted(lost)))}" if lost else "") if part))
    if failed:
        raise ShotFailedError.combine(failed)
    return [results[s.index] for s in shots]  # type: ignore[return-value]

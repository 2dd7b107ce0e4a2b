"""A shot that could not be made, while the others can: the per-shot loop keeps going and
raises this at the end, so finished shots are kept and `--resume` redoes only the failed ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from storyagent.errors import StoryAgentError

T = TypeVar("T")


class ShotFailedError(StoryAgentError):
    """One shot could not be made (out of GPU memory even on its retry); `run_per_shot` goes on with
    the other shots and raises this at the end, so their work is kept and `--resume` redoes this one."""

    def __init__(self, shots: list[int], reason: str) -> None:
        self.shots, self.reason = shots, reason
        names = f"Shot {shots[0]}" if len(shots) == 1 else f"Shots {', '.join(map(str, shots))}"
        super().__init__(f"{names} {reason}")

    @classmethod
    def combine(cls, failures: list[ShotFailedError]) -> ShotFailedError:
        """One error (one sentence) for every failed shot, with the first failure's reason."""
        if len(failures) == 1:
            return failures[0]
        return cls(sorted(s for f in failures for s in f.shots), failures[0].reason)


OUT_OF_MEMORY = ("ran out of GPU memory, also when tried again with --low-vram settings; the finished shots are "
                 "kept: run again with --resume, and with --low-vram, fewer frames or a smaller size")


def with_memory_retry(shots: list[int], run: Callable[[bool], T], low_vram: bool) -> tuple[T, bool]:
    """`run(low_vram)` for these shots, tried once more with low-VRAM settings after a GPU
    out-of-memory error (see `placement.retry_out_of_memory`); (result, retried).

    A second out-of-memory error is a `ShotFailedError` naming the shots, in one sentence.
    """
    from storyagent.models.placement import StillOutOfMemory, retry_out_of_memory
    from storyagent.progress import console

    tries: list[bool] = []

    def attempt(setting: bool) -> T:
        tries.append(setting)
        if len(tries) > 1:
            console.print(f"{'Shot' if len(shots) == 1 else 'Shots'} {', '.join(map(str, shots))} ran out of "
                          "GPU memory; trying once more with --low-vram settings.")
        return run(setting)

    try:
        return retry_out_of_memory(attempt, low_vram)
    except StillOutOfMemory:
        raise ShotFailedError(shots, OUT_OF_MEMORY + ".") from None

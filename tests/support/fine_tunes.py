"""A stand-in for the fine-tunes in tests of which film trains a subject, and a way to open films at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class SlowFineTunes:
    """Patched over a backend method `(self, run)` (`monkeypatch.setattr(Backend, "train_subject", stand_in)`):
    trains, which takes a while, when its cache (by the subject's content) has none. `calls` names every film
    that called it, `trained` those that trained."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds
        self.cache: set[str] = set()
        self.calls: list[str] = []
        self.trained: list[str] = []

    def __call__(self, run) -> None:  # set on the class, so called without the backend
        self.calls.append(run.ws.root.name)
        if run.subject.input_hash not in self.cache:
            time.sleep(self.seconds)
            self.trained.append(run.ws.root.name)
            self.cache.add(run.subject.input_hash)


def at_once(target: Callable[..., Any], arguments: Iterable[Any]) -> None:
    """`target(argument)` for each argument, each in its own thread, all started together; returns when all end
    (as a batch's driver runs its films)."""
    threads = [threading.Thread(target=target, args=(a,)) for a in arguments]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

"""Playing a shot's spoken line to the person reviewing at this terminal.

Never required: with no player installed, or with `STORYAGENT_NO_PLAY` set (`chat --no-play`), the
review still names every line's file, and nothing is played. Playing never blocks the review: the
lines play one after another in a background thread while the question waits for its answer, and
a new round of playing stops the one before (the reviewer answered, or asked for the line again).
Stdlib only: the CLI imports this module for its option's help.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

NO_PLAY_ENV = "STORYAGENT_NO_PLAY"
"""Set to anything but "" or "0": the lines are named, never played."""

PLAYERS: tuple[tuple[str, ...], ...] = (
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"),
    ("aplay", "-q"),
    ("paplay",),
)
"""Command lines that play a WAV file given after them, in the order they are tried."""


def muted() -> bool:
    return os.environ.get(NO_PLAY_ENV, "") not in ("", "0")


def player() -> tuple[str, ...] | None:
    """The first installed player's command line, or None (then nothing is played)."""
    for command in PLAYERS:
        found = shutil.which(command[0])
        if found:
            return (found, *command[1:])
    return None


class LinePlayer:
    """Plays sound files one after another in the background; `play` again stops what is playing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: subprocess.Popen[bytes] | None = None
        self._round = 0

    def play(self, paths: Sequence[Path]) -> bool:
        """Start playing `paths` in order; False (and nothing started) when muted or no player exists."""
        command = None if muted() else player()
        self.stop()
        if command is None or not paths:
            return False
        with self._lock:
            self._round += 1
            round_ = self._round
        threading.Thread(target=self._play_all, args=(command, list(paths), round_), daemon=True,
                         name="storyagent-lines").start()
        return True

    def _play_all(self, command: tuple[str, ...], paths: list[Path], round_: int) -> None:
        for path in paths:
            with self._lock:
                if round_ != self._round:
                    return
                try:
                    self._current = subprocess.Popen([*command, str(path)], stdin=subprocess.DEVNULL,
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except OSError:
                    return  # the player vanished or cannot run here: the review goes on without sound
                process = self._current
            process.wait()

    def stop(self) -> None:
        """Stop the line playing now and the ones queued after it (the player this object started only)."""
        with self._lock:
            self._round += 1
            if self._current is not None and self._current.poll() is None:
                self._current.terminate()
            self._current = None

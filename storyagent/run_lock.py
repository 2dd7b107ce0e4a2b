"""One run at a time owns a run folder: an advisory lock (`flock` on `.storyagent.lock`, which
holds the owner's PID), kept until the run's Workspace is closed or collected, or the process
ends; the OS frees it when the process dies, however it dies, so a stale lock file is simply taken."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from storyagent.errors import InputError

LOCK = ".storyagent.lock"


@dataclass
class _Held:
    fd: int
    path: Path
    pid: int = field(default_factory=os.getpid)
    users: int = 0

    def current(self) -> bool:
        """Whether this is still the folder's lock file (a folder removed and made again is not the same)."""
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(self.path))
        except OSError:
            return False


_HELD: dict[tuple[int, int], _Held] = {}
"""This process's locks, by run folder (device, inode): any spelling of a folder is one lock."""


def lock(root: Path) -> _Held:
    """Take `root`'s lock for this process; give it to `unlock` when done.

    A process that opens a folder it already holds shares the lock: a process runs one run at a
    time, so the earlier Workspace is finished, only not yet collected (tests and benchmarks reopen
    a folder in one process).
    """
    st = root.stat()
    key = (st.st_dev, st.st_ino)
    held = _HELD.get(key)
    if held is None or not held.current():
        held = _HELD[key] = _acquire(root)
    held.users += 1
    return held


def _acquire(root: Path) -> _Held:
    path = root / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"Cannot create the lock file in {root}: {exc.strerror or exc}; check the folder's permissions.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"{root} is in use by another StoryAgent run (PID {holder}); "
                             "wait for it to end, or choose another --out.") from None
        except OSError as exc:
            os.close(fd)
            raise InputError(f"Cannot lock {root} ({exc.strerror or exc}); choose an --out on a local disk.") from exc
        held = _Held(fd, path)
        # An owner that ended removed the file before unlocking it: a lock on a removed file guards nothing.
        if held.current():
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return held


def _holder(fd: int) -> str:
    """The PID the lock's owner wrote; it writes it just after locking, so wait a moment for it."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"


def unlock(held: _Held) -> None:
    # A forked child inherits the table but not the lock's ownership: only the locking process lets go.
    if held.pid != os.getpid() or held.users == 0:
        return
    held.users -= 1
    if held.users:
        return
    for key, entry in list(_HELD.items()):
        if entry is held:
            del _HELD[key]
    # Removed while still locked, so no other process can lock the old file after this one lets go.
    if held.current():
        with contextlib.suppress(OSError):
            held.path.unlink()
    os.close(held.fd)

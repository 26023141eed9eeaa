"""One process per trial: an advisory ``fcntl`` lock on a file in the trial's folder.

Two processes that train the same trial would both do all of its work, and with different
numeric settings they would mix them in one trial. The lock file (``.lock``, gitignored)
holds the owner's pid for messages; the lock itself lives in the kernel, so a killed owner
releases it at once and a stale file never blocks anyone.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"


class TrialLock:
    """An exclusive advisory lock on ``<trial folder>/.lock`` (not re-entrant)."""

    def __init__(self, trial_dir: Path) -> None:
        self.path = Path(trial_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)

    def _claim(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (at once) when another process does."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this TrialLock")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._claim(fd)
        return True

    def acquire(self) -> None:
        """Wait until the lock is free, then take it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this TrialLock")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._claim(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> str:
        """The pid written by the current (or last) owner, for messages."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> TrialLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

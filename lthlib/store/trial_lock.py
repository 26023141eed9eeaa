"""One process per trial: an advisory ``fcntl`` lock on a file in the trial's folder.

Two processes that train the same trial would both do all of its work, and with different
numeric settings they would mix them in one trial. The lock file (``.lock``, gitignored)
holds the owner's pid for messages; the lock itself lives in the kernel, so a killed owner
releases it at once and a stale file never blocks anyone.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from lthlib.util.errors import CorruptRecordError
from lthlib.store.file_checks import file_kind, read_text

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
        """The lock file, opened without following a link; refused (one line naming it)
        unless it is a regular file with one link: a pid is never written through a link
        or into a file that also lives elsewhere."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fix = f"allowed: a regular file with one link, or none (remove {self.path})"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ValueError(f"lock {self.path} is a symbolic link; {fix}") from None
            if err.errno in (errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
                raise ValueError(f"lock {self.path} is not a regular file; {fix}") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = (f"a {file_kind(st.st_mode)}" if not stat.S_ISREG(st.st_mode)
                    else f"a file with {st.st_nlink} links")
            raise ValueError(f"lock {self.path} is {what}; {fix}")
        return fd

    def _current(self, fd: int) -> bool:
        """True when ``fd`` is still the file at the lock's path (a lock file removed by
        :meth:`release` while this process waited is not the lock any more)."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        return (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)

    def _claim(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (at once) when another process does."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this TrialLock")
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if self._current(fd):
                self._claim(fd)
                return True
            os.close(fd)  # its holder removed it meanwhile: take the new one

    def acquire(self) -> None:
        """Wait until the lock is free, then take it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this TrialLock")
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            if self._current(fd):
                self._claim(fd)
                return
            os.close(fd)

    def release(self, remove: bool = False) -> None:
        """Give the lock up; with ``remove`` delete the lock file first (while still held,
        so no other process can hold a lock on a file that is gone)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if remove and self._current(fd):
                self.path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> str:
        """The pid written by the current (or last) owner, for messages."""
        try:
            return read_text(self.path, 64).strip() or "unknown"
        except (OSError, CorruptRecordError):
            return "unknown"

    def __enter__(self) -> TrialLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

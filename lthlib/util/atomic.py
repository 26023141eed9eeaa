"""Atomic file writes: a temp file beside the target, then ``os.replace``.

A reader (or a process killed part-way) sees the old file or the new one, never half of one.
Every module that writes a result, a checkpoint, a figure or a dataset file goes through here.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on a clean exit it replaces ``path``, else it is
    removed. ``suffix`` lets writers that pick their format from the name (savefig) see it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: str | os.PathLike, write: Callable[[Path], Any],
                suffix: str = ".tmp") -> None:
    """Let ``write(tmp)`` produce the file (``torch.save``, ``fig.savefig``, ``df.to_csv``),
    then move it into place atomically."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)

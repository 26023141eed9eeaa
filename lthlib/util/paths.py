"""Where the repository's ``runs/`` and ``book/`` are, found from the working directory.

The package may be installed anywhere (site-packages, a wheel, an editable checkout), so it
never looks beside its own files. The repository is the nearest folder at or above the working
directory that holds ``_toc.yml`` and ``lthlib/``; an explicit argument or environment variable
always wins, and without either a clear error says what to pass.
"""
from __future__ import annotations

import os
from pathlib import Path

MARKERS = ("_toc.yml", "lthlib")


def find_repo_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    ``_toc.yml`` and ``lthlib/``, or None."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / m).exists() for m in MARKERS):
            return folder
    return None


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """Like :func:`find_repo_root`, but raises a ValueError naming the ways out."""
    root = find_repo_root(start)
    if root is None:
        where = Path(start if start is not None else Path.cwd()).resolve()
        raise ValueError(f"no lthlib repository at or above {where} (a folder holding "
                         f"{' and '.join(MARKERS)}); allowed: run inside a clone of the "
                         f"repository, or pass the folder explicitly")
    return root


def runs_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The store root: ``explicit``, else env ``LTH_RUNS_DIR``, else ``<repo>/runs``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("LTH_RUNS_DIR")
    if env:
        return Path(env)
    root = find_repo_root()
    if root is None:
        raise ValueError(f"no runs directory: {Path.cwd()} is not inside an lthlib repository; "
                         f"allowed: pass runs_dir= (CLI: --runs-dir), set LTH_RUNS_DIR, or run "
                         f"inside a clone of the repository")
    return root / "runs"


def book_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The chapters' folder: ``explicit``, else ``<repo>/book``."""
    return Path(explicit) if explicit is not None else repo_root() / "book"

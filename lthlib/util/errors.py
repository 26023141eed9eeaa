"""The errors a user can cause, and how every command ends on one: a line on stderr naming the
bad value and what is allowed.

The one command line (:mod:`lthlib.cli`) and the module aliases (``python -m lthlib.studies.plateau``,
``python -m lthlib.studies.lmc``) run their handlers through :func:`run_handler`, so a user who
mistypes a value, or runs outside a repository without ``--runs-dir``, never sees a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import TextIO

class CorruptRecordError(RuntimeError):
    """A stored trial cannot be trusted: a file does not match its hash, a JSON file has the
    wrong type, the folder is not the config's, or a file is a symbolic link."""


class UnverifiedRecordError(CorruptRecordError):
    """A finished record lacks the sha256 of some of its files, so they cannot be checked."""


USER_ERRORS = (ValueError, FileNotFoundError, ImportError, CorruptRecordError)


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: TextIO | None = None, line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``handler(args)``'s exit status, or 2 after printing ``error: <message>`` for an
    error the user can fix (:data:`USER_ERRORS`, and a file system that refuses: a
    read-only store, a path that is a file). Warnings print as one line each."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line  # restored when the block ends
        try:
            return int(handler(args))
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
        except OSError as err:
            hint = ("; allowed: a store this user can write" if isinstance(err, PermissionError)
                    else "")
            print(f"error: {err.filename or ''}: {err.strerror or err}{hint}", file=sys.stderr)
        return 2

"""How every command ends on a bad value: one line on stderr naming it and what is allowed.

The one command line (:mod:`lthlib.cli`) and the module aliases (``python -m lthlib.plateau``,
``python -m lthlib.lmc``) run their handlers through :func:`run_handler`, so a user who
mistypes a value, or runs outside a repository without ``--runs-dir``, never sees a traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .record_files import CorruptRecordError

USER_ERRORS = (ValueError, FileNotFoundError, ImportError, CorruptRecordError)


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``handler(args)``'s exit status, or 2 after printing ``error: <message>`` for an
    error the user can fix (:data:`USER_ERRORS`)."""
    try:
        return int(handler(args))
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

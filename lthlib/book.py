"""``python -m lthlib.book build|html|check|screenshot``: the report's ``book`` command
(:mod:`lthlib.report.build`), kept under this name for the Makefile."""
import sys

from .report.build import main

if __name__ == "__main__":
    sys.exit(main())

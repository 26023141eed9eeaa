"""``python -m lthlib.book build|html|check|screenshot``: the same as ``python -m lthlib book
...`` (:mod:`lthlib.report.build`), kept under this name for the Makefile."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["book", *sys.argv[1:]]))

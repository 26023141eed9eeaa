"""``python -m lthlib``: see :mod:`lthlib.cli`."""
import sys

from .cli import main

sys.exit(main())

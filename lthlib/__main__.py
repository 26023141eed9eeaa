"""``python -m lthlib``: see :mod:`lthlib.cli`."""
import sys

from lthlib.cli import main

sys.exit(main())

"""``python -m lthlib.bench``: the benchmark on its own (also ``python -m lthlib bench``)."""
import sys

from lthlib.bench import main

sys.exit(main())

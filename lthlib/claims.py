"""Old import path of :mod:`lthlib.report.claims`, kept while ``lthlib.lmc`` imports it."""
from .report.claims import CSV_COLUMNS, EVIDENCE, claim  # noqa: F401
from .report.judge import assess  # noqa: F401

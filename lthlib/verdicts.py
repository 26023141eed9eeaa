"""Old import path of :mod:`lthlib.report.verdicts`, kept while ``lthlib.lmc`` imports it."""
from .report.verdicts import Below  # noqa: F401

"""Old import path of :mod:`lthlib.report.evidence`, kept while ``lthlib.lmc`` imports it."""
from .report.evidence import Evidence, need_key, per_trial  # noqa: F401

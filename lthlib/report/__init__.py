"""The report: what the book's chapters read from ``runs/``, the claims ledger judged on it,
and the tables, figures and sentences the chapters show. Nothing here trains: results are
read with :meth:`lthlib.store.run_store.RunStore.results`, and a chapter trains what the store lacks
by calling :func:`lthlib.run_experiment` itself.

Modules, each with one job (imports point down the list):

- :mod:`.text`: number formats, dataset names, the deviations from the paper, Markdown;
- :mod:`.analysis`: the per-level statistics every table, figure and sentence uses;
- :mod:`.chapters`, :mod:`.context`: the chapter registry, :func:`prepare` and the
  :class:`Context` of a chapter's results; :mod:`.replicates`, :mod:`.overview`: tables;
- :mod:`.claims`: the claims ledger, from the paper's claims as data and the rules that
  judge them to the table a reader sees;
- :mod:`.plots`, :mod:`.ticket_plots`: figures; :mod:`.figure8`: chapter 7.7's settings;
  :mod:`.discussion`, :mod:`.ticket_prose`,
  :mod:`.demos`: the chapters' prose and live checks;
- :mod:`.build`, :mod:`.site`: papermill, Jupyter Book, the site check, the ``book``
  command (imported on demand: ``from lthlib.report import build``).
"""
from __future__ import annotations

from lthlib.report import (analysis, claims, demos, discussion, figure8, plots, ticket_plots,
                           ticket_prose)
from lthlib.report.claims import paper_claims, stability_claims, verdict_rules, views
from lthlib.report.analysis import (compare_levels, gaps_by_trial, level_means,
                                    smallest_gap_by_trial, ticket_gaps)
from lthlib.report.chapters import (CHAPTERS, Chapter, Need, chapter_path, compute_allowed,
                                    get_chapter)
from lthlib.report.context import Context, prepare, with_stored_datasets
from lthlib.report.claims.claims_csv import ledger, ledger_summary
from lthlib.report.claims.views import (chapter_ledger, evidence_note, ratio_example,
                                        verdict_counts, verdict_list, verdict_table)
from lthlib.report.overview import coverage_table, coverage_text, runs_overview
from lthlib.report.replicates import (replicate_shift, replicate_table, replicate_text,
                                      replicated_controls)
from lthlib.report.text import (DATASET_NAMES, OUR_CHOICES, deviations_markdown, pct,
                                show_markdown, show_table)

__all__ = [
    "analysis", "claims", "demos", "discussion", "figure8", "paper_claims", "plots",
    "stability_claims", "ticket_plots", "ticket_prose", "verdict_rules", "views",
    "CHAPTERS", "Chapter", "Need", "Context", "chapter_path", "compute_allowed",
    "get_chapter", "prepare", "with_stored_datasets",
    "compare_levels", "gaps_by_trial", "level_means", "smallest_gap_by_trial", "ticket_gaps",
    "replicate_shift", "replicate_table", "replicate_text", "replicated_controls",
    "ledger", "ledger_summary", "chapter_ledger", "evidence_note", "ratio_example",
    "verdict_counts", "verdict_list", "verdict_table",
    "coverage_table", "coverage_text", "runs_overview",
    "DATASET_NAMES", "OUR_CHOICES", "deviations_markdown", "pct", "show_markdown",
    "show_table",
]

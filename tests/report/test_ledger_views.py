"""The book's views of the claims ledger (lthlib.report): the interval next to each verdict,
indicative verdicts marked, and the worked 2.51x example built from the stored trials."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from lthlib.report.claims import (paper_claims as claims, claims_csv as evaluate, evidence, judge,
                                  views as ledger_views)
from lthlib.store.run_store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from test_claims import fake_trial, summary_rows  # noqa: E402

CLAIM = "fig4a-ticket-2.51x-faster-than-reinit"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    rows = summary_rows(seeds=(0, 1, 2))
    for seed in (0, 1, 2):
        fake_trial(RunStore(root), "smoke", seed, rows)
    return root


@pytest.fixture(scope="module")
def ledger(store: Path) -> pd.DataFrame:
    return evaluate.ledger(store, ["mnist"], figures=("4a",))


def test_verdict_table_and_list_show_the_interval_and_rule(ledger: pd.DataFrame) -> None:
    table = ledger_views.verdict_table(ledger)
    assert "95% CI" in table.columns
    row = table[table.claim == CLAIM].iloc[0]
    assert row["95% CI"].startswith("[") and row.verdict.endswith("(indicative)")
    text = ledger_views.verdict_list(ledger)
    assert "95% CI [" in text and "Rule: 95% CI within a factor 1.25 of 2.51x" in text
    assert "paired t-interval over 3 trials" in text and "Indicative only" in text
    assert ledger_views.ledger_number(-2160.0) == "-2,160"
    assert ledger_views.ledger_number(0.3239) == "0.324"
    assert ledger_views.ledger_interval(None, 1.0) == "-"


def test_evidence_note_counts_indicative_verdicts(ledger: pd.DataFrame) -> None:
    note = ledger_views.evidence_note(ledger)
    n = int((ledger.evidence == "indicative").sum())
    assert n > 0 and f"{n} from the `smoke` profile (Figure 4a)" in note
    assert "(Figure 8: `converged-cpu`)" in note  # the profile chapter 7.7 counts


def test_ratio_example_is_worked_from_the_trials(ledger: pd.DataFrame, store: Path) -> None:
    text = ledger_views.ratio_example(ledger, store)
    ev, _ = evaluate.claim_evidence(CLAIM, "mnist", store, "smoke")
    trials = evidence.trial_values(ev, evidence.IMP, evidence.ES, 0.211)
    a = judge.assess(claims.get_claim(CLAIM), ev)
    assert f"{trials.ticket.mean():,.0f}" in text and f"**{a.ours:.2f}x**" in text
    assert f"{a.ci.low:.2f}x to {a.ci.high:.2f}x" in text and "2.01x to 3.14x" in text
    loo = [trials.reinit.drop(s).mean() / trials.ticket.drop(s).mean() for s in trials.index]
    assert ", ".join(f"{x:.2f}x" for x in loo) in text  # each seed left out in turn
    assert "Student's t with 2 degrees of freedom (4.30)" in text  # 3 trials
    assert f"**{a.verdict}**" in text
    empty = ledger.assign(verdict="not run")
    assert "do not reach this claim" in ledger_views.ratio_example(empty, store)


def test_ratio_example_with_one_trial_says_there_is_no_interval(tmp_path: Path) -> None:
    fake_trial(RunStore(tmp_path), "smoke", 0, summary_rows(seeds=(0,)))
    df = evaluate.ledger(tmp_path, ["mnist"], figures=("4a",))
    text = ledger_views.ratio_example(df, tmp_path)
    assert "no spread between trials" in text and "**inconclusive**" in text


def test_weakest_levels_and_verdict_notes_are_labelled() -> None:
    """A number that is one level's of many says which, and a verdict kept from
    "reproduced" (its control passes too) or a "partly" with a wrong-sign level says so."""
    df = claims.ledger_frame([{**claims.ledger_row(claims.get_claim(
        "fig1-ticket-faster-than-random"), "mnist"), "ours": -20.0, "ci_low": -5000.0,
        "ci_high": 5000.0, "verdict": "partly", "ours_is": "weakest level, Pm 80%",
        "verdict_note": judge.WRONG_SIGN, "profile": "paper", "trials": 5, "levels": 18,
        "evidence": "counted"}])
    row = ledger_views.verdict_table(df).iloc[0]
    assert row.ours == "-20 (weakest level, Pm 80%)"
    assert row.verdict == f"**partly**: {judge.WRONG_SIGN}"
    assert "(weakest level, Pm 80%)" in ledger_views.verdict_list(df)
    assert ledger_views.ours_cell(0.278, "best level, Pm 32.9%") == "0.278 (best level, Pm 32.9%)"
    assert ledger_views.ours_cell(None, "weakest level, Pm 80%") == "-"

"""The answer first (lthlib.report.answer): the opening paragraph, the per-figure table and a
chapter's claim table follow the ledger's verdicts, count only what was run and say why the
rest was not."""
from __future__ import annotations

import pandas as pd

from lthlib.report import answer
from lthlib.report.claims.paper_claims import CLAIMS


def _ledger(verdict_of) -> pd.DataFrame:
    rows = []
    for c in CLAIMS:
        for ds in ("mnist", "fashionmnist", "cifar10"):
            v = verdict_of(c, ds)
            ran = v != "not run"
            rows.append({"claim": c.id, "statement": c.statement, "paper": c.paper,
                         "ours": 1.0 if ran else None, "ci_low": None, "ci_high": None,
                         "verdict": v, "evidence": "counted" if ran else None,
                         "profile": ("converged-cpu" if c.figure == "8" else "paper")
                         if ran else None, "trials": 5 if ran else None, "dataset": ds,
                         "levels": None, "detail": "", "group": "figures"})
    return pd.DataFrame(rows)


def _lenet_reproduced(c, ds):
    if ds == "cifar10" or (c.figure == "8") or (c.datasets and ds not in c.datasets):
        return "not run"
    return "reproduced"


def test_overall_word() -> None:
    s = pd.Series
    assert answer.overall_word(s(["reproduced", "reproduced"])) == "reproduced"
    assert answer.overall_word(s(["reproduced", "partly", "inconclusive"])) == \
        "mostly reproduced"
    assert answer.overall_word(s(["reproduced", "not reproduced"])) == "mixed"
    assert answer.overall_word(s(["inconclusive"])) == "inconclusive"
    assert answer.overall_word(s(["reproduced"] + ["inconclusive"] * 6)) == \
        "mostly inconclusive"
    assert answer.overall_word(s(["not reproduced", "inconclusive"])) == "not reproduced"
    assert answer.overall_word(s([], dtype=str)) == "not run"


def test_answer_counts_only_what_ran_and_names_the_rest() -> None:
    ledger = _ledger(_lenet_reproduced)
    text = answer.opening_answer(ledger)
    assert text.startswith("**Yes, for the network")
    assert "Figure 8" not in text  # ResNet-18 was not run: no sentence about it
    table = answer.figure_answers(ledger)
    assert list(table["figure"].str.extract(r"Figure (\w+)")[0]) == ["1", "3", "4a", "4b",
                                                                      "12", "4c"]
    assert table["our answer"].str.startswith("**reproduced**").all()
    reasons = " ".join(answer.not_run_reasons(ledger))
    assert "on CIFAR-10: CIFAR-10 is not available" in reasons
    totals = answer.totals(ledger)
    assert list(totals["dataset"]) == ["MNIST", "FashionMNIST"]  # CIFAR-10 was not run


def test_chapter_table_fits_and_groups_by_figure() -> None:
    ledger = _ledger(_lenet_reproduced)
    fig1 = ledger[ledger.claim.str.startswith("fig1-")]
    table = answer.chapter_claims(fig1)
    assert len(table) <= 6 and list(table.columns) == ["claim", "paper", "ours", "verdict"]
    assert table["verdict"].iloc[0] == "MNIST: **reproduced**; FashionMNIST: **reproduced**"
    assert table["claim"].iloc[-1].endswith("more claims")  # CIFAR-10's rows, with the reason
    many = ledger[~ledger.claim.str.startswith(("fig1-", "fig8-"))]
    table = answer.chapter_claims(many)
    assert len(table) <= 6 and table["claim"].iloc[0].startswith("Figure 3:")

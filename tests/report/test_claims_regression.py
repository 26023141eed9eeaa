"""The verdict of every counted claim (the paper profile, and Figure 8 at the profile its
chapter names), pinned: a change of a rule, a tolerance or the interval shows up in review as
a change of this table, not silently in the book. Reads the committed runs/ (nothing is
trained); a new counted claim or result must be added here with the verdict the ledger
computes for it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lthlib.report.claims import paper_claims as claims, claims_csv as evaluate

PINNED: dict[tuple[str, str], str] = {
    # mnist
    ("fig1-random-slower-when-sparser", "mnist"): "partly",
    ("fig1-random-less-accurate-when-sparser", "mnist"): "reproduced",
    ("fig1-ticket-faster-than-random", "mnist"): "partly",
    ("fig1-ticket-more-accurate-than-random", "mnist"): "partly",
    ("fig3-51pct-learns-faster", "mnist"): "reproduced",
    ("fig3-51pct-higher-accuracy", "mnist"): "reproduced",
    ("fig3-21pct-faster-still", "mnist"): "reproduced",
    ("fig3-below-21pct-slows", "mnist"): "reproduced",
    ("fig3-3.6pct-regresses-to-dense", "mnist"): "inconclusive",
    ("fig4a-early-stop-38pct-earlier", "mnist"): "inconclusive",
    ("fig4a-early-stop-back-at-3.6pct", "mnist"): "inconclusive",
    ("fig4a-test-acc-gain-13.5pct", "mnist"): "inconclusive",
    ("fig4a-test-acc-back-at-3.6pct", "mnist"): "inconclusive",
    ("fig4a-ticket-holds-to-3.6pct", "mnist"): "partly",
    ("fig4a-train-acc-gain-13.5pct", "mnist"): "reproduced",
    ("fig4a-reinit-slower-than-dense", "mnist"): "reproduced",
    ("fig4a-reinit-below-dense-at-21pct", "mnist"): "inconclusive",
    ("fig4a-ticket-2.51x-faster-than-reinit", "mnist"): "inconclusive",
    ("fig4a-ticket-0.5pp-more-accurate-than-reinit", "mnist"): "reproduced",
    ("fig4b-final-acc-gain-up-to-0.35pp", "mnist"): "inconclusive",
    ("fig12-train-acc-100-pm-ge-2pct", "mnist"): "partly",
    ("fig12-all-train-acc-100-pm-ge-5pct", "mnist"): "partly",
    ("fig4c-oneshot-earlier-67.5-17.6", "mnist"): "inconclusive",
    ("fig4c-oneshot-more-accurate-95-5.17", "mnist"): "partly",
    ("fig4c-iterative-faster-at-small-pm", "mnist"): "reproduced",
    ("fig4c-iterative-more-accurate-at-small-pm", "mnist"): "partly",
    # fashionmnist
    ("fig1-random-slower-when-sparser", "fashionmnist"): "reproduced",
    ("fig1-random-less-accurate-when-sparser", "fashionmnist"): "partly",
    ("fig1-ticket-faster-than-random", "fashionmnist"): "partly",
    ("fig1-ticket-more-accurate-than-random", "fashionmnist"): "partly",
    ("fig3-51pct-learns-faster", "fashionmnist"): "partly",
    ("fig3-51pct-higher-accuracy", "fashionmnist"): "inconclusive",
    ("fig3-21pct-faster-still", "fashionmnist"): "reproduced",
    ("fig3-below-21pct-slows", "fashionmnist"): "reproduced",
    ("fig3-3.6pct-regresses-to-dense", "fashionmnist"): "not reproduced",
    ("fig4a-early-stop-38pct-earlier", "fashionmnist"): "inconclusive",
    ("fig4a-early-stop-back-at-3.6pct", "fashionmnist"): "inconclusive",
    ("fig4a-test-acc-gain-13.5pct", "fashionmnist"): "inconclusive",
    ("fig4a-test-acc-back-at-3.6pct", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-holds-to-3.6pct", "fashionmnist"): "inconclusive",
    ("fig4a-train-acc-gain-13.5pct", "fashionmnist"): "reproduced",
    ("fig4a-reinit-slower-than-dense", "fashionmnist"): "reproduced",
    ("fig4a-reinit-below-dense-at-21pct", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-2.51x-faster-than-reinit", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-0.5pp-more-accurate-than-reinit", "fashionmnist"): "reproduced",
    ("fig4b-final-acc-gain-up-to-0.35pp", "fashionmnist"): "inconclusive",
    ("fig12-train-acc-100-pm-ge-2pct", "fashionmnist"): "not reproduced",
    ("fig12-all-train-acc-100-pm-ge-5pct", "fashionmnist"): "not reproduced",
    ("fig4c-oneshot-earlier-67.5-17.6", "fashionmnist"): "inconclusive",
    ("fig4c-oneshot-more-accurate-95-5.17", "fashionmnist"): "inconclusive",
    ("fig4c-iterative-faster-at-small-pm", "fashionmnist"): "reproduced",
    ("fig4c-iterative-more-accurate-at-small-pm", "fashionmnist"): "partly",
    ("fig8-lr0.1-no-winning-tickets", "fashionmnist"): "inconclusive",
    ("fig8-lr0.01-ticket-beats-reinit", "fashionmnist"): "reproduced",
    ("fig8-lr0.01-advantage-exceeds-lr0.1", "fashionmnist"): "inconclusive",
    ("fig8-lr0.01-short-of-dense-lr0.1", "fashionmnist"): "inconclusive",
    ("fig8-warmup-matches-dense-lr0.1", "fashionmnist"): "inconclusive",
    ("fig8-warmup-winning-to-11.8pct", "fashionmnist"): "inconclusive",
    ("fig8-warmup-advantage-exceeds-lr0.1", "fashionmnist"): "inconclusive",
}


@pytest.fixture(scope="module")
def ledger() -> pd.DataFrame:
    return evaluate.evaluate_claims(datasets=("mnist", "fashionmnist", "cifar10"))


def test_counted_verdicts_are_pinned(ledger: pd.DataFrame) -> None:
    counted = ledger[ledger.evidence == "counted"]
    if counted.empty:
        pytest.skip("runs/ holds no results that count")
    got = {(r.claim, r.dataset): r.verdict for r in counted.itertuples()}
    changed = {k: (PINNED.get(k), v) for k, v in got.items() if PINNED.get(k) != v}
    lost = sorted(set(PINNED) - set(got))
    assert not changed and not lost, (
        "counted verdicts differ from the pinned table (pinned, now): "
        + "; ".join(f"{k}: {p} -> {v}" for k, (p, v) in changed.items())
        + (f"; no longer counted: {lost}" if lost else ""))


def test_no_claim_counts_as_reproduced_while_its_control_passes(ledger: pd.DataFrame) -> None:
    measured = ledger[ledger.verdict != "not run"]
    passing = measured[measured.control_verdict == "reproduced"]
    assert (passing.verdict != "reproduced").all()
    assert (passing.verdict_note.str.contains("control passes the same test")).all()
    with_control = measured[measured.control != ""]
    assert with_control.control_verdict.isin(["reproduced", "partly", "inconclusive",
                                              "not reproduced"]).all()


def test_committed_ledger_is_what_the_rules_compute(ledger: pd.DataFrame) -> None:
    """runs/claims.csv holds the verdicts computed from the committed trials today."""
    committed = pd.read_csv(Path(evaluate.resolve_runs_dir(None)) / "claims.csv",
                            keep_default_na=False)
    mine = committed[committed.group != "beyond the paper"]
    assert list(mine.claim) == list(ledger.claim)
    assert list(mine.verdict) == list(ledger.verdict)


def test_every_measured_claim_has_an_interval_and_a_rule(ledger: pd.DataFrame) -> None:
    measured = ledger[ledger.verdict != "not run"]
    assert (measured.rule.str.len() > 0).all() and measured.trials.notna().all()
    several = measured[measured.trials >= 2]
    assert several.ci_low.notna().all() and several.ci_high.notna().all()
    assert (several.ci_low <= several.ci_high).all()
    # one trial gives no interval, and then no verdict either way
    assert (measured[measured.trials < 2].verdict == "inconclusive").all()
    # only the paper profile, or one a figure names as able to test its claims, counts
    expected = [claims.get_claim(r.claim).counted(r.profile) for r in measured.itertuples()]
    assert (measured.evidence == "counted").tolist() == expected
    assert (measured[measured.profile != "paper"].evidence == "indicative").all() or \
        claims.TESTING_PROFILES

"""The verdict of every committed paper-profile claim, pinned: a change of a rule, a
tolerance or the bootstrap shows up in review as a change of this table, not silently in the
book. Reads the committed runs/ (nothing is trained); a new paper-profile claim or result must
be added here with the verdict the ledger computes for it."""
from __future__ import annotations

import pandas as pd
import pytest

from lthlib.report import claims, evaluate

PINNED: dict[tuple[str, str], str] = {
    # mnist
    ("fig1-random-slower-when-sparser", "mnist"): "reproduced",
    ("fig1-random-less-accurate-when-sparser", "mnist"): "reproduced",
    ("fig1-ticket-faster-than-random", "mnist"): "partly",
    ("fig1-ticket-more-accurate-than-random", "mnist"): "partly",
    ("fig3-51pct-learns-faster", "mnist"): "reproduced",
    ("fig3-51pct-higher-accuracy", "mnist"): "inconclusive",
    ("fig3-21pct-faster-still", "mnist"): "reproduced",
    ("fig3-below-21pct-slows", "mnist"): "reproduced",
    ("fig3-3.6pct-regresses-to-dense", "mnist"): "inconclusive",
    ("fig4a-early-stop-38pct-earlier", "mnist"): "inconclusive",
    ("fig4a-early-stop-back-at-3.6pct", "mnist"): "not reproduced",
    ("fig4a-test-acc-gain-13.5pct", "mnist"): "reproduced",
    ("fig4a-test-acc-back-at-3.6pct", "mnist"): "inconclusive",
    ("fig4a-ticket-holds-to-3.6pct", "mnist"): "partly",
    ("fig4a-train-acc-gain-13.5pct", "mnist"): "reproduced",
    ("fig4a-reinit-slower-than-dense", "mnist"): "reproduced",
    ("fig4a-reinit-below-dense-at-21pct", "mnist"): "inconclusive",
    ("fig4a-ticket-2.51x-faster-than-reinit", "mnist"): "inconclusive",
    ("fig4a-ticket-0.5pp-more-accurate-than-reinit", "mnist"): "reproduced",
    ("fig4b-final-acc-gain-up-to-0.35pp", "mnist"): "reproduced",
    ("fig12-train-acc-100-pm-ge-2pct", "mnist"): "reproduced",
    ("fig12-all-train-acc-100-pm-ge-5pct", "mnist"): "reproduced",
    ("fig4c-oneshot-earlier-67.5-17.6", "mnist"): "not reproduced",
    ("fig4c-oneshot-more-accurate-95-5.17", "mnist"): "partly",
    ("fig4c-iterative-faster-at-small-pm", "mnist"): "reproduced",
    ("fig4c-iterative-more-accurate-at-small-pm", "mnist"): "reproduced",
    # fashionmnist
    ("fig1-random-slower-when-sparser", "fashionmnist"): "reproduced",
    ("fig1-random-less-accurate-when-sparser", "fashionmnist"): "reproduced",
    ("fig1-ticket-faster-than-random", "fashionmnist"): "partly",
    ("fig1-ticket-more-accurate-than-random", "fashionmnist"): "not reproduced",
    ("fig3-51pct-learns-faster", "fashionmnist"): "reproduced",
    ("fig3-51pct-higher-accuracy", "fashionmnist"): "inconclusive",
    ("fig3-21pct-faster-still", "fashionmnist"): "reproduced",
    ("fig3-below-21pct-slows", "fashionmnist"): "reproduced",
    ("fig3-3.6pct-regresses-to-dense", "fashionmnist"): "not reproduced",
    ("fig4a-early-stop-38pct-earlier", "fashionmnist"): "inconclusive",
    ("fig4a-early-stop-back-at-3.6pct", "fashionmnist"): "inconclusive",
    ("fig4a-test-acc-gain-13.5pct", "fashionmnist"): "inconclusive",
    ("fig4a-test-acc-back-at-3.6pct", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-holds-to-3.6pct", "fashionmnist"): "partly",
    ("fig4a-train-acc-gain-13.5pct", "fashionmnist"): "reproduced",
    ("fig4a-reinit-slower-than-dense", "fashionmnist"): "reproduced",
    ("fig4a-reinit-below-dense-at-21pct", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-2.51x-faster-than-reinit", "fashionmnist"): "inconclusive",
    ("fig4a-ticket-0.5pp-more-accurate-than-reinit", "fashionmnist"): "reproduced",
    ("fig4b-final-acc-gain-up-to-0.35pp", "fashionmnist"): "inconclusive",
    ("fig12-train-acc-100-pm-ge-2pct", "fashionmnist"): "not reproduced",
    ("fig12-all-train-acc-100-pm-ge-5pct", "fashionmnist"): "not reproduced",
    ("fig4c-oneshot-earlier-67.5-17.6", "fashionmnist"): "partly",
    ("fig4c-oneshot-more-accurate-95-5.17", "fashionmnist"): "not reproduced",
    ("fig4c-iterative-faster-at-small-pm", "fashionmnist"): "reproduced",
    ("fig4c-iterative-more-accurate-at-small-pm", "fashionmnist"): "reproduced",
}


@pytest.fixture(scope="module")
def ledger() -> pd.DataFrame:
    return evaluate.evaluate_claims(datasets=("mnist", "fashionmnist", "cifar10"))


def test_paper_profile_verdicts_are_pinned(ledger: pd.DataFrame) -> None:
    paper = ledger[ledger.profile == "paper"]
    if paper.empty:
        pytest.skip("runs/ holds no paper-profile results")
    got = {(r.claim, r.dataset): r.verdict for r in paper.itertuples()}
    changed = {k: (PINNED.get(k), v) for k, v in got.items() if PINNED.get(k) != v}
    lost = sorted(set(PINNED) - set(got))
    assert not changed and not lost, (
        "paper-profile verdicts differ from the pinned table (pinned, now): "
        + "; ".join(f"{k}: {p} -> {v}" for k, (p, v) in changed.items())
        + (f"; no longer at the paper profile: {lost}" if lost else ""))


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

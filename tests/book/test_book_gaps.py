"""The per-trial ticket-vs-re-init gaps that chapter 7.7 reports (lthlib.report)."""
import pandas as pd
import pytest

from lthlib.report import analysis


def _summary(rows):
    return pd.DataFrame(rows, columns=["variant", "level", "replicate", "seed", "pm",
                                       "final_test_acc"])


@pytest.fixture
def two_trials():
    """Seed 0: ticket wins both levels; seed 1: loses level 2. Seed 1 has two re-inits."""
    return _summary([
        ("ticket", 0, 0, 0, 1.0, 0.80), ("ticket", 1, 0, 0, 0.8, 0.85),
        ("ticket", 2, 0, 0, 0.64, 0.86),
        ("reinit", 1, 0, 0, 0.8, 0.82), ("reinit", 2, 0, 0, 0.64, 0.80),
        ("ticket", 0, 0, 1, 1.0, 0.81), ("ticket", 1, 0, 1, 0.8, 0.84),
        ("ticket", 2, 0, 1, 0.64, 0.80),
        ("reinit", 1, 0, 1, 0.8, 0.80), ("reinit", 1, 1, 1, 0.8, 0.82),
        ("reinit", 2, 0, 1, 0.64, 0.84), ("reinit", 2, 1, 1, 0.64, 0.82),
    ])


def test_ticket_gaps_per_trial_and_of_the_means(two_trials):
    gaps = analysis.ticket_gaps(two_trials)
    assert list(gaps.index) == [1, 2]  # the dense level has no control
    assert gaps.loc[1, 0] == pytest.approx(0.03)
    assert gaps.loc[2, 0] == pytest.approx(0.06)
    assert gaps.loc[1, 1] == pytest.approx(0.84 - 0.81)  # re-inits averaged first
    assert gaps.loc[2, 1] == pytest.approx(0.80 - 0.83)
    # "mean": trial means of tickets minus all re-inits of the level pooled
    assert gaps.loc[2, "mean"] == pytest.approx(0.83 - (0.80 + 0.84 + 0.82) / 3)


def test_gaps_by_trial_and_smallest_gap(two_trials):
    other = two_trials.assign(final_test_acc=lambda d: d.final_test_acc
                              + 0.05 * (d.variant == "ticket") * (d.level > 0))
    table = analysis.gaps_by_trial({"a": two_trials, "b": other})
    row = table.set_index("setting").loc["a"]
    assert row["trial 0 gap"] == "+4.50 pp" and row["trial 0 wins"] == "2 of 2"
    assert row["trial 1 gap"] == "+0.00 pp" and row["trial 1 wins"] == "1 of 2"
    assert "all trials gap" in table.columns
    assert analysis.smallest_gap_by_trial({"a": two_trials, "b": other}) == {0: "a", 1: "a"}


def test_one_trial_without_seed_column_and_no_controls(two_trials):
    one = two_trials[two_trials.seed == 0].drop(columns="seed")
    table = analysis.gaps_by_trial({"x": one})
    assert list(table.columns) == ["setting", "trial 0 gap", "trial 0 wins"]
    assert analysis.ticket_gaps(one[one.variant == "ticket"]).empty

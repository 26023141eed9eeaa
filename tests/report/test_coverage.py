"""The ledger's interval methods hold the truth about as often as they say: a seeded
simulation at 3, 5 and 8 trials, on normal and on skewed trial values (seconds)."""
from __future__ import annotations

import pandas as pd
import pytest

from lthlib.report.claims import coverage


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return coverage.coverage_table()


def test_each_method_covers_within_bounds(table: pd.DataFrame) -> None:
    low, high = coverage.COVERAGE_BOUNDS
    assert set(table["method"]) == set(coverage.METHODS)
    assert set(table["distribution"]) == set(coverage.SHAPES)
    cells = table.set_index(["method", "distribution"])
    assert list(cells.columns) == [f"n={n}" for n in coverage.TRIALS]
    bad = {(m, d, c): round(v, 4) for (m, d), row in cells.iterrows()
           for c, v in row.items() if not low <= v <= high}
    assert not bad, f"coverage outside [{low}, {high}]: {bad}"


def test_the_simulation_is_seeded_and_can_fail() -> None:
    """The same seed gives the same table; an interval that is too narrow (the normal
    quantile in place of Student's t at 3 trials) is caught by the bounds."""
    a = coverage.coverage_table(trials=(3,), reps=2_000)
    assert a.equals(coverage.coverage_table(trials=(3,), reps=2_000))
    rng = coverage.np.random.default_rng(0)
    d = 0.3 + 0.5 * coverage.noise(rng, "normal", (20_000, 3))
    se = d.std(axis=1, ddof=1) / 3 ** 0.5
    z_cover = float((abs(d.mean(axis=1) - 0.3) <= 1.96 * se).mean())
    assert z_cover < coverage.COVERAGE_BOUNDS[0]  # about 86%: what t corrects
    with pytest.raises(ValueError, match="'normal', 'skewed'"):
        coverage.noise(rng, "uniform", (2,))


def test_skewed_distribution_has_unit_variance_and_zero_mean() -> None:
    x = coverage.noise(coverage.np.random.default_rng(1), "skewed", (400_000,))
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert ((x - x.mean()) ** 3).mean() > 0.4  # right-skewed


def test_verdicts_in_brief_states_scope_coverage_and_chance(table: pd.DataFrame) -> None:
    ledger = pd.DataFrame({"verdict": ["reproduced", "inconclusive", "not reproduced",
                                       "partly", "not run"],
                           "evidence": ["counted", "counted", "counted", "indicative", ""]})
    text = coverage.verdicts_in_brief(ledger, table)
    low, mean, _ = coverage.coverage_range(table)
    assert "per claim, not simultaneous" in text and f"{100 * low:.1f}%" in text
    assert "among the 3 counted verdicts, 2 of them decisive" in text
    assert f"about {2 * (1 - mean):.1f} are expected" in text

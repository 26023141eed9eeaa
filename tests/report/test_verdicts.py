"""The verdict rules of lthlib.report.claims.verdict_rules on hand-made trials whose answer is known, one
test per rule, including each lenient case the old rules let through."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lthlib.report.claims import intervals as I
from lthlib.report.claims import verdict_rules as V


def mean_of(trials) -> V.Interval:
    """Jackknife t-interval of the mean of per-trial values (the Student-t interval)."""
    x = np.asarray(trials, dtype=float)
    return I.jackknife_interval(lambda w: V.weighted_mean(x, w), len(x))


def ratio_of_means(num, den) -> V.Interval:
    """Jackknife t-interval of mean(num) / mean(den), both from the same trials (paired)."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return I.jackknife_interval(lambda w: V.weighted_mean(a, w) / V.weighted_mean(b, w),
                                len(a))


def test_t_quantiles_match_the_tables():
    """Student's t quantiles computed here (no SciPy) against printed tables."""
    for df, q975 in ((1, 12.706), (2, 4.303), (4, 2.776), (7, 2.365), (30, 2.042)):
        assert I.t_quantile(0.975, df) == pytest.approx(q975, abs=1e-3)
    assert I.t_quantile(0.995, 3) == pytest.approx(5.841, abs=1e-3)
    assert I.t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    assert I.t_cdf(0.0, 5) == 0.5 and I.t_cdf(1.0, 1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="df=0"):
        I.t_cdf(1.0, 0)
    with pytest.raises(ValueError, match="p=1"):
        I.t_quantile(1, 3)


def test_jackknife_of_a_mean_is_the_student_t_interval():
    """For a mean, leaving out one trial at a time gives exactly s / sqrt(n)."""
    x = np.array([0.2, 0.5, 0.1, 0.4, 0.0])
    ci = mean_of(x)
    half = I.t_quantile(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert (ci.low, ci.high) == (pytest.approx(x.mean() - half), pytest.approx(x.mean() + half))
    assert ci == I.mean_interval(x)
    # a simultaneous band over m levels widens each level's interval (Bonferroni)
    band = I.jackknife_interval(lambda w: V.weighted_mean(x, w), 5, family=10)
    assert band.high - band.low == pytest.approx(
        2 * I.t_quantile(1 - 0.05 / 20, 4) * x.std(ddof=1) / math.sqrt(5))


def test_interval_covers_the_spread_of_trials_and_needs_two_trials():
    ci = mean_of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ci.estimate == pytest.approx(3.0) and ci.n == 5
    assert 1.0 <= ci.low < 3.0 < ci.high <= 5.0
    one = mean_of([3.15])
    assert one.estimate == pytest.approx(3.15) and not one.known and math.isnan(one.low)
    assert V.inequality(one, 0.0, "above") == "inconclusive"  # one trial shows no noise
    assert V.equality(one, 0.0, 0.5) == "inconclusive"


def test_paired_interval_removes_the_noise_trials_share():
    """Each trial's ticket and re-init share a large seed effect; the gap is constant. The
    paired interval of the gap is a point; the two means' own intervals are wide."""
    seed_effect = np.array([-2.0, 0.5, 1.5, -1.0, 1.0])
    ticket, reinit = 98.0 + seed_effect + 0.4, 98.0 + seed_effect
    gap = I.jackknife_interval(
        lambda w: V.weighted_mean(ticket, w) - V.weighted_mean(reinit, w), 5)
    assert gap.low == pytest.approx(0.4) and gap.high == pytest.approx(0.4)
    assert V.inequality(gap, 0.0, "above") == "reproduced"
    assert mean_of(ticket).high - mean_of(ticket).low > 1.0


@pytest.mark.parametrize("trials,threshold,side,expected", [
    ([0.5, 0.6, 0.55, 0.7, 0.45], 0.3, "above", "reproduced"),
    ([0.1, 0.2, 0.15, 0.05, 0.12], 0.3, "above", "not reproduced"),
    ([0.1, 0.5, 0.3, 0.6, 0.0], 0.3, "above", "inconclusive"),
    # Figure 4a's re-init claim (< 0 pp) with the re-inits slightly *above* dense: a wrong sign
    # is inconclusive when the trials straddle 0 and not reproduced when they do not.
    ([0.066, -0.068, 0.24, 0.1, -0.01], 0.0, "below", "inconclusive"),
    ([0.066, 0.05, 0.08, 0.07, 0.06], 0.0, "below", "not reproduced"),
    ([-0.3, -0.2, -0.25, -0.4, -0.1], 0.0, "below", "reproduced"),
    # ">= 0 pp" was judged as ">= -0.1 pp": a level clearly below 0 now fails.
    ([-0.05, -0.06, -0.04, -0.05, -0.07], 0.0, "above", "not reproduced"),
])
def test_inequality(trials, threshold, side, expected):
    assert V.inequality(mean_of(trials), threshold, side) == expected


def test_inequality_names_bad_side():
    with pytest.raises(ValueError, match="'above', 'below'"):
        V.inequality(mean_of([1, 2]), 0.0, "left")


@pytest.mark.parametrize("trials,value,tol,expected", [
    ([0.1, -0.1, 0.05, 0.0, -0.05], 0.0, 0.5, "reproduced"),
    # Figure 8's "warmup ticket matches the dense network" at +3.15 pp was judged one-sided
    # and passed; as an equality it is outside 0 ± 0.5 pp.
    ([3.15, 3.0, 3.3, 3.1, 3.2], 0.0, 0.5, "not reproduced"),
    ([-3.15, -3.0, -3.3, -3.1, -3.2], 0.0, 0.5, "not reproduced"),
    ([0.2, 0.7, 0.4, 0.6, 0.3], 0.0, 0.5, "inconclusive"),  # straddles the band's edge
    # "0.38 earlier": 0.25 used to pass (0.23-0.53); with a +/-0.1 band it does not.
    ([0.25, 0.24, 0.26, 0.25, 0.25], 0.38, 0.1, "not reproduced"),
    ([0.37, 0.40, 0.38, 0.36, 0.39], 0.38, 0.1, "reproduced"),
])
def test_equality(trials, value, tol, expected):
    assert V.equality(mean_of(trials), value, tol) == expected


def test_ratio_must_lie_within_the_stated_factor():
    ticket = np.array([3000.0, 3100, 2900, 3050, 2950])
    # 2.51x within a factor 1.25 means [2.008, 3.1375]
    assert V.ratio(ratio_of_means(2.6 * ticket, ticket), 2.51, 1.25) == "reproduced"
    # 1.67x and 3.77x passed the old rule (a factor 1.5); with tight trials they fail now
    assert V.ratio(ratio_of_means(1.67 * ticket, ticket), 2.51, 1.25) == "not reproduced"
    assert V.ratio(ratio_of_means(3.77 * ticket, ticket), 2.51, 1.25) == "not reproduced"
    assert V.ratio(ratio_of_means(0.8 * ticket, ticket), 2.51, 1.25) == "not reproduced"
    # noisy trials: the interval contains 2.51 but is wider than the band, so it cannot tell
    noisy = ticket * np.array([1.4, 3.9, 2.2, 1.7, 3.3])
    ci = ratio_of_means(noisy, ticket)
    assert ci.low < 2.51 < ci.high and V.ratio(ci, 2.51, 1.25) == "inconclusive"
    with pytest.raises(ValueError, match="factor"):
        V.ratio(ci, 2.51, 0.5)


@pytest.mark.parametrize("levels,expected", [
    (["reproduced"] * 17, "reproduced"),
    (["reproduced"] * 14 + ["inconclusive"] * 3, "partly"),
    # FashionMNIST Figure 1: 14 of 17 levels held (82%), which passed as "reproduced" at the
    # old 80% share; one level whose interval lies on the wrong side now decides.
    (["reproduced"] * 14 + ["inconclusive"] * 2 + ["not reproduced"], "not reproduced"),
    (["inconclusive"] * 5, "inconclusive"),
    ([], "not run"),
])
def test_every_level(levels, expected):
    assert V.every_level(levels) == expected


def test_every_level_on_trials():
    """Per-level paired gaps (ticket - random) over 5 trials: 3 of 4 levels clearly positive
    and one clearly negative is not reproduced; the rule object judges the levels."""
    rule = V.EveryLevel(0.0, "above", "pp")
    gaps = {0.8: [0.2, 0.3, 0.25, 0.2, 0.3], 0.41: [-0.2, -0.3, -0.1, -0.25, -0.2],
            0.21: [0.5, 0.6, 0.4, 0.5, 0.6], 0.035: [0.1, 0.2, 0.15, 0.1, 0.2]}
    per_level = [rule.level_verdict(mean_of(g)) for g in gaps.values()]
    assert per_level == ["reproduced", "not reproduced", "reproduced", "reproduced"]
    assert rule.verdict(per_level) == "not reproduced"


def spearman_trials(level_pms, trial_values) -> V.Interval:
    """t-interval of the mean over trials of each trial's Spearman rho of Pm with its
    level values."""
    pms = np.asarray(level_pms, dtype=float)
    rho = V.spearman(pms, np.asarray(trial_values, dtype=float))  # one per trial
    return I.jackknife_interval(lambda w: V.weighted_mean(rho, w), len(rho))


def test_monotone():
    pms = np.array([1.0, .8, .64, .51, .41, .33, .26, .21, .17, .13, .1, .08])
    rng = np.random.default_rng(0)
    clean = (1 - pms)[:, None] * 5000 + rng.normal(0, 10, (len(pms), 5))  # later when sparser
    rule = V.Monotone(-1)
    assert rule.verdict(spearman_trials(pms, clean)) == "reproduced"
    assert V.Monotone(+1).verdict(spearman_trials(pms, clean)) == "not reproduced"  # wrong sign
    # a rank correlation of about 0.5 used to pass; a weak, noisy trend is not monotone
    weak = (1 - pms)[:, None] * 300 + rng.normal(0, 400, (len(pms), 5))
    assert rule.verdict(spearman_trials(pms, weak)) in ("inconclusive", "not reproduced")
    # a clear trend with swapped neighbours: rho below 0.9 but its interval above 0.5
    swapped = np.array([3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8], dtype=float)
    trend = (swapped * 100)[:, None] + rng.normal(0, 50, (len(pms), 5))
    rho = spearman_trials(pms, trend)
    assert -0.9 < rho.estimate < -0.5 and rule.verdict(rho) == "partly"
    assert V.monotone(V.Interval(0.95, 0.7, 1.0, 5)) == "reproduced"
    assert V.monotone(V.Interval(0.3, 0.1, 0.45, 5)) == "not reproduced"


def test_spearman_is_pearson_of_ranks():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=9), rng.normal(size=(9, 3))
    y[2, 0] = y[5, 0]  # a tie: both get their mean rank
    rank = lambda v: pd.Series(v).rank()  # noqa: E731
    expected = [rank(x).corr(rank(y[:, j])) for j in range(3)]
    assert V.spearman(x, y) == pytest.approx(expected)
    assert V.spearman(x, np.ones((9, 1)))[0] == 0.0


WRONG_SIDE = [V.Interval(-0.5, -0.8, -0.2, 5), V.Interval(-0.05, -0.09, -0.01, 5)]


@pytest.mark.parametrize("ci", WRONG_SIDE)
def test_a_wrong_sign_is_never_partly(ci):
    """An interval wholly on the wrong side of a claim of a positive effect: no rule calls
    it "partly", however small the effect."""
    assert V.Above(0.0).verdict(ci) == "not reproduced"
    assert V.Below(0.0).verdict(V.Interval(-ci.estimate, -ci.high, -ci.low, 5)) == \
        "not reproduced"
    assert V.Near(0.5, 0.25).verdict(ci) == "not reproduced"
    rule = V.EveryLevel(0.0)
    assert rule.verdict([rule.level_verdict(ci)] + ["reproduced"] * 9) == "not reproduced"
    assert V.Monotone(+1).verdict(ci) == "not reproduced"


def test_rule_texts_state_their_numbers():
    assert "above 0.3 pp" in V.Above(0.3, "pp").text()
    assert "below 0 pp" in V.Below(0.0, "pp").text()
    assert "0.38 ± 0.1" in V.Near(0.38, 0.1).text()
    text = V.RatioNear(2.51, 1.25).text()
    assert "factor 1.25 of 2.51x" in text and "2.01x" in text and "3.14x" in text
    assert "simultaneous 95% band" in V.EveryLevel(0.0, "above", "pp").text()
    assert "largest lower end" in V.MaxNear(0.35, 0.25, "pp").text()
    assert "0.9" in V.Monotone(-1).text() and "0.5" in V.Monotone(-1).text()


def test_rules_in_words_use_the_module_constants():
    text = V.rules_in_words()
    assert "Student's t" in text and f"reach {V.RHO_MIN:g}" in text
    assert "jackknife" in text and "control passes the same test" in text
    assert f"beyond {V.RHO_FLOOR:g}" in text and "never *partly*" in text


def test_equality_tolerance_is_at_least_one_networks_sampling_error():
    """±0.25 pp is narrower than one network's test-set error on FashionMNIST (0.30 pp):
    the band grows to that error there and stays at 0.25 pp on MNIST (0.10 pp)."""
    rule = V.Near(0.0, 0.25, "pp")
    fashion, mnist = rule.on_dataset(0.30), rule.on_dataset(0.10)
    assert fashion.band == pytest.approx(0.30) and mnist.band == pytest.approx(0.25)
    assert rule.on_dataset(None) is rule
    ci = V.Interval(0.1, -0.18, 0.28, 5)
    assert rule.verdict(ci) == "inconclusive" and fashion.verdict(ci) == "reproduced"
    assert "σ = 0.3 pp" in fashion.text() and "1 σ" in fashion.text()
    best = V.MaxNear(0.35, 0.25, "pp").on_dataset(0.3)
    assert best.verdict(V.Interval(0.4, 0.1, 0.6, 5)) == "reproduced"


def test_sampling_se_is_the_binomial_error_of_a_mean_of_gaps():
    # one network at 92% on 10,000 images: 0.27 pp; a gap of two: sqrt(2) times that
    assert V.sampling_se(0.92, 10_000, networks=1) == pytest.approx(0.002713, rel=1e-3)
    assert V.sampling_se(0.92, 10_000) == pytest.approx(0.002713 * 2 ** 0.5, rel=1e-3)
    # averaged over 5 levels of 2 trials: ten times fewer variance
    assert V.sampling_se(0.92, 10_000, cells=10) == pytest.approx(
        V.sampling_se(0.92, 10_000) / 10 ** 0.5)
    for named, bad in (("acc=1.5", {"acc": 1.5, "images": 10}),
                       ("images=0", {"acc": 0.5, "images": 0}),
                       ("cells=0", {"acc": 0.5, "images": 10, "cells": 0})):
        with pytest.raises(ValueError, match=named):
            V.sampling_se(**bad)


def test_widened_interval_only_grows_and_unknown_stays_unknown():
    ci = V.Interval(1.0, 0.9, 1.5, 2)
    w = ci.widened(0.3)
    assert (w.low, w.high, w.estimate, w.n) == (pytest.approx(0.7), 1.5, 1.0, 2)
    assert ci.widened(0.0) == ci and ci.widened(float("nan")) == ci
    none = V.Interval(1.0, math.nan, math.nan, 1)
    assert not none.widened(0.3).known

"""Intervals with honest coverage at a handful of trials.

A claim's number is a function of per-trial values. Its interval is a jackknife t-interval:
the number is recomputed leaving out one trial at a time, the spread of those recomputations
gives a standard error, and the interval is the number plus or minus Student's t quantile
with n - 1 degrees of freedom times that error. For a mean over trials (a paired difference
when both sides come from the same seeds) the jackknife error is exactly s / sqrt(n), so the
interval *is* the paired Student-t interval; for a smooth function of means (a ratio of
means) it is the delta-method t-interval. Claims about every level use a simultaneous band:
each level's interval at confidence 1 - (1 - c) / m for m levels (Bonferroni), so that all
m hold together with probability at least c. :mod:`lthlib.report.claims.coverage` measures how
often each of these covers the truth.

Student's t distribution is computed here (no SciPy): its distribution function in closed
form for whole degrees of freedom (Abramowitz & Stegun 26.7.3-4), the quantile by bisection.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
MIN_TRIALS = 2  # one trial shows no noise: no interval, and the verdict is "inconclusive"
Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.96: half-width in SEs


@dataclass(frozen=True)
class Interval:
    """A point estimate (all trials) with its interval over ``n`` trials."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        """Whether the interval exists (enough trials, every leave-one-out value finite)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        ci = f"[{self.low:.4g}, {self.high:.4g}]" if self.known else "no interval"
        return f"{self.estimate:.4g} {ci} (n={self.n})"

    def widened(self, half: float) -> Interval:
        """This interval, reaching at least ``half`` either side of the estimate (an
        unknown interval stays unknown: a floor does not make one trial an interval)."""
        if not self.known or not half > 0:
            return self
        return Interval(self.estimate, min(self.low, self.estimate - half),
                        max(self.high, self.estimate + half), self.n)


def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with ``df`` (whole, >= 1) degrees of freedom."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df={df}: a whole number >= 1")
    theta = math.atan(abs(x) / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: A = 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        a = 2 / math.pi * (theta + (s * math.cos(theta) * total if df > 1 else 0.0))
    else:  # even: A = sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        a = s * total
    return 0.5 + math.copysign(a / 2, x)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p}: must lie strictly between 0 and 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def two_sided(confidence: float, family: int = 1) -> float:
    """The upper quantile level of a two-sided interval at ``confidence``, Bonferroni-shared
    among ``family`` intervals (a simultaneous band over ``family`` levels)."""
    if not 0.0 < confidence < 1.0 or family < 1:
        raise ValueError(f"confidence={confidence}, family={family}: need 0 < confidence "
                         "< 1 and family >= 1")
    return 1.0 - (1.0 - confidence) / (2 * family)


def leave_one_out(n: int) -> np.ndarray:
    """``(n, n)`` trial weights: row i counts every trial once except trial i."""
    if n < 1:
        raise ValueError(f"n={n}: must be >= 1")
    return np.ones((n, n)) - np.eye(n)


def jackknife_se(loo: np.ndarray) -> np.ndarray:
    """Standard error from leave-one-out values ``loo`` (..., n): sqrt((n-1)/n * sum of
    squared deviations from their mean). NaN where any value is missing or n < 2."""
    loo = np.asarray(loo, dtype=float)
    n = loo.shape[-1]
    if n < MIN_TRIALS:
        return np.full(loo.shape[:-1], np.nan)
    dev = loo - loo.mean(axis=-1, keepdims=True)
    return np.sqrt((n - 1) / n * (dev ** 2).sum(axis=-1))


def t_interval(estimate: float, se: float, df: int, confidence: float = CONFIDENCE,
               family: int = 1, n: int | None = None) -> Interval:
    """``estimate`` plus or minus the t quantile times ``se``; no interval (NaN ends) when
    ``se`` is not finite or ``df`` < 1."""
    n = df + 1 if n is None else n
    if df < 1 or not math.isfinite(se) or not math.isfinite(estimate):
        return Interval(float(estimate), math.nan, math.nan, n)
    half = t_quantile(two_sided(confidence, family), df) * se
    return Interval(float(estimate), estimate - half, estimate + half, n)


def jackknife_interval(stat: Callable[[np.ndarray], np.ndarray], n: int,
                       confidence: float = CONFIDENCE, family: int = 1) -> Interval:
    """Interval of ``stat`` over ``n`` trials: ``stat`` maps a ``(k, n)`` matrix of trial
    weights to ``k`` values; all-ones weights give the estimate, leave-one-out weights the
    jackknife standard error, and the interval is t (n - 1 df) times it either side."""
    estimate = float(np.asarray(stat(np.ones((1, n))), dtype=float).ravel()[0])
    se = float(jackknife_se(np.asarray(stat(leave_one_out(n)), dtype=float).ravel()))
    return t_interval(estimate, se, n - 1, confidence, family, n)


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The Student-t interval of the mean of per-trial ``values`` (paired differences when
    each value is one trial's difference)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < MIN_TRIALS:
        return Interval(float(x.mean()) if len(x) else math.nan, math.nan, math.nan, len(x))
    return t_interval(float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))), len(x) - 1,
                      confidence)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights`` (k, n), the weighted mean of ``values`` (..., n) over trials,
    ignoring NaN (a trial without that value): shape (..., k)."""
    values = np.asarray(values, dtype=float)
    present = np.isfinite(values)
    total = np.where(present, values, 0.0) @ weights.T
    mass = present.astype(float) @ weights.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``x`` (m,) with each column of ``y`` (m, k): Pearson
    correlation of the ranks (ties get their mean rank); 0 where either side is constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float).reshape(len(x), -1)
    rx = _ranks(x[:, None])[:, 0]
    ry = _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=0)
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx @ ry) / np.where(denom > 0, denom, 1.0), 0.0)


def _ranks(a: np.ndarray) -> np.ndarray:
    """Column-wise ranks (1-based, ties averaged) of ``a`` (m, k)."""
    order = a.argsort(axis=0, kind="stable")
    ranks = np.empty_like(a, dtype=float)
    np.put_along_axis(ranks, order, np.arange(1, len(a) + 1, dtype=float)[:, None]
                      .repeat(a.shape[1], axis=1), axis=0)
    srt = np.take_along_axis(a, order, axis=0)
    tied = np.flatnonzero((np.diff(srt, axis=0) == 0).any(axis=0))
    for j in tied:  # average tied ranks (rare: means of floats)
        _, inv, cnt = np.unique(a[:, j], return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=ranks[:, j])
        ranks[:, j] = (sums / cnt)[inv]
    return ranks


def sampling_se(acc: float, images: int, networks: int = 2, cells: int = 1) -> float:
    """Standard error (units of ``acc``) of a mean of ``cells`` measurements, each the sum or
    difference of ``networks`` test accuracies near ``acc`` on ``images`` test images, from
    the test set's sampling alone (each accuracy a binomial proportion, the networks
    independent): sqrt(networks * acc * (1 - acc) / images / cells). With two or three
    trials the trials can agree more closely than their test sets allow; this is the floor
    under the noise of such a claim."""
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"acc={acc}: an accuracy between 0 and 1")
    if images < 1 or networks < 1 or cells < 1:
        raise ValueError(f"images={images}, networks={networks}, cells={cells}: "
                         "all must be >= 1")
    return math.sqrt(networks * acc * (1.0 - acc) / images / cells)

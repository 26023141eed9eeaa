"""Verdicts that account for trial noise.

A claim's number is a mean over trials, and trials disagree. So every verdict is taken on a
95% interval, not on the mean alone: the bootstrap draws the trials with replacement (all
quantities of one draw come from the same drawn trials, so a ticket is always compared with
the re-init, dense network or one-shot run of its own seed: the comparison is *paired*) and
the interval is the middle 95% of the recomputed statistic. With up to :data:`MAX_EXACT`
trials every distinct draw is enumerated with its probability (the exact bootstrap: no
sampling noise, so no verdict depends on a random seed); beyond that, :data:`DRAWS` draws
from a fixed seed stand in for them.

Each kind of claim has one small rule, a pure function of the interval:

- :func:`inequality` (x > t or x < t): the interval must lie wholly on the claimed side;
- :func:`equality` (x ≈ v): the interval must lie within v ± a tolerance stated in the claim;
- :func:`ratio` ("2.51x"): the interval must lie within a stated factor of the paper's value;
- :func:`every_level` ("at all levels"): combines the per-level inequality verdicts;
- :func:`monotone` (a trend over sizes): Spearman rho and its interval.

A rule can answer "inconclusive": the trials cannot tell. None answers "partly" for an
effect of the wrong sign. The rule objects (:class:`Above`, :class:`Below`, :class:`Near`,
:class:`RatioNear`, :class:`EveryLevel`, :class:`Monotone`) carry a claim's parameters and say
the rule in words for the ledger's ``rule`` column.
"""
from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

VERDICTS = ("reproduced", "partly", "inconclusive", "not reproduced", "not run")
CONFIDENCE = 0.95
DRAWS = 2000  # random bootstrap draws, used above MAX_EXACT trials
BOOTSTRAP_SEED = 1803  # fixed, so a ledger recomputed from the same runs/ is identical
# Up to this many trials every distinct draw is enumerated (6,435 of them at 8 trials). With
# 5 trials and 2,000 random draws the interval's ends moved by up to 12% of its width between
# seeds, enough to flip a verdict whose interval ends at its threshold.
MAX_EXACT = 8
MIN_TRIALS = 2  # one trial shows no noise: no interval, and the verdict is "inconclusive"
MIN_FINITE = 0.9  # share of bootstrap samples that must give a number (else no interval)
SIDES = ("above", "below")


@dataclass(frozen=True)
class Interval:
    """A point estimate (all trials) with its bootstrap interval over ``n`` trials."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        """Whether the interval exists (enough trials, enough finite bootstrap samples)."""
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


Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.96: half-width in SEs


def sampling_se(acc: float, images: int, networks: int = 2, cells: int = 1) -> float:
    """Standard error (units of ``acc``) of a mean of ``cells`` measurements, each the sum or
    difference of ``networks`` test accuracies near ``acc`` on ``images`` test images, from
    the test set's sampling alone (each accuracy a binomial proportion, the networks
    independent). With two or three trials the trials can agree more closely than their
    test sets allow; this is the floor under the noise of such a claim."""
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"acc={acc}: an accuracy between 0 and 1")
    if images < 1 or networks < 1 or cells < 1:
        raise ValueError(f"images={images}, networks={networks}, cells={cells}: "
                         "all must be >= 1")
    return math.sqrt(networks * acc * (1.0 - acc) / images / cells)


# --- the bootstrap ---------------------------------------------------------------------------

def resample_counts(n: int, draws: int = DRAWS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(draws, n)`` matrix: how often each of ``n`` trials is drawn in each bootstrap
    sample (each row sums to ``n``). Seeded by (seed, n), so it never depends on call order."""
    if n < 1 or draws < 1:
        raise ValueError(f"n={n} and draws={draws}: both must be >= 1")
    rng = np.random.default_rng([seed, n])
    picks = rng.integers(0, n, size=(draws, n))
    counts = np.zeros((draws, n))
    np.add.at(counts, (np.arange(draws)[:, None], picks), 1.0)
    return counts


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws of ``n`` trials: ``counts`` (k, n), how often each trial is drawn in
    each draw (rows sum to n), and ``probs`` (k,), the probability of each draw."""

    counts: np.ndarray
    probs: np.ndarray
    exact: bool


def all_draws(n: int) -> Draws:
    """Every distinct draw of ``n`` trials from ``n`` with replacement, with its multinomial
    probability: the exact bootstrap distribution (126 draws for 5 trials)."""
    if n < 1:
        raise ValueError(f"n={n}: must be >= 1")
    counts = np.array([np.bincount(c, minlength=n) for c in
                       itertools.combinations_with_replacement(range(n), n)], dtype=float)
    log_p = (math.lgamma(n + 1) - np.sum([[math.lgamma(x + 1) for x in row] for row in counts],
                                          axis=1) - n * math.log(n))
    return Draws(counts, np.exp(log_p), True)


def bootstrap_draws(n: int, draws: int = DRAWS, seed: int = BOOTSTRAP_SEED,
                    exact_upto: int = MAX_EXACT) -> Draws:
    """The exact draws up to ``exact_upto`` trials, else ``draws`` seeded random ones."""
    if n <= exact_upto:
        return all_draws(n)
    return Draws(resample_counts(n, draws, seed), np.full(draws, 1.0 / draws), False)


def weighted_quantiles(samples: np.ndarray, probs: np.ndarray, qs: Sequence[float]
                       ) -> list[float]:
    """For each q, the smallest sample whose cumulative probability reaches q (the inverse
    of the distribution function; no interpolation between draws)."""
    order = np.argsort(samples, kind="stable")
    x, cum = samples[order], np.cumsum(probs[order]) / probs.sum()
    return [float(x[min(int(np.searchsorted(cum, q - 1e-12)), len(x) - 1)]) for q in qs]


def percentile_interval(estimate: float, samples: np.ndarray, n: int,
                        confidence: float = CONFIDENCE, probs: np.ndarray | None = None
                        ) -> Interval:
    """The middle ``confidence`` of the finite ``samples`` (weighted by ``probs``, default
    equal) around ``estimate``; no interval (NaN ends) with fewer than :data:`MIN_TRIALS`
    trials or too much probability on undefined samples."""
    samples = np.asarray(samples, dtype=float).ravel()
    probs = np.full(len(samples), 1.0) if probs is None else np.asarray(probs, dtype=float)
    finite = np.isfinite(samples)
    if n < MIN_TRIALS or len(samples) == 0 or \
            probs[finite].sum() < MIN_FINITE * probs.sum():
        return Interval(float(estimate), math.nan, math.nan, n)
    tail = (1 - confidence) / 2
    low, high = weighted_quantiles(samples[finite], probs[finite], (tail, 1 - tail))
    return Interval(float(estimate), low, high, n)


def bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int, draws: int = DRAWS,
              seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Interval:
    """Interval of ``stat`` over ``n`` trials. ``stat`` maps a ``(k, n)`` matrix of trial
    weights to ``k`` values; all-ones weights give the estimate, the draws the interval."""
    estimate = float(np.asarray(stat(np.ones((1, n))), dtype=float).ravel()[0])
    d = bootstrap_draws(n, draws, seed)
    samples = np.asarray(stat(d.counts), dtype=float)
    return percentile_interval(estimate, samples, n, confidence, d.probs)


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
    for j in range(a.shape[1]):  # average tied ranks (rare: means of floats)
        col = a[:, j]
        _, inv, cnt = np.unique(col, return_inverse=True, return_counts=True)
        if (cnt > 1).any():
            sums = np.bincount(inv, weights=ranks[:, j])
            ranks[:, j] = (sums / cnt)[inv]
    return ranks


# --- the rules: one small function each --------------------------------------------------------

def inequality(ci: Interval, threshold: float, side: str) -> str:
    """x > t (``side="above"``) or x < t (``"below"``): reproduced if the interval lies wholly
    on the claimed side of t, not reproduced if wholly on the other side, else inconclusive."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}: allowed values are {SIDES}")
    if not ci.known:
        return "inconclusive"
    low, high = (ci.low, ci.high) if side == "above" else (-ci.high, -ci.low)
    t = threshold if side == "above" else -threshold
    return "reproduced" if low > t else "not reproduced" if high < t else "inconclusive"


def equality(ci: Interval, value: float, tolerance: float) -> str:
    """x ≈ v: reproduced if the interval lies within v ± tolerance, not reproduced if it lies
    wholly outside that band, else inconclusive (partly in, partly out)."""
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance}: must be >= 0")
    return _band(ci, value - tolerance, value + tolerance)


def ratio(ci: Interval, value: float, factor: float) -> str:
    """x ≈ v for a ratio: reproduced if the interval lies within [v / factor, v * factor],
    not reproduced if wholly outside, else inconclusive. Demanding only that the interval
    *contain* v would reward noise: a wider interval (fewer or noisier trials) contains any
    value more easily, so a vaguer experiment would pass more often than a precise one."""
    if factor < 1 or value <= 0:
        raise ValueError(f"factor={factor}, value={value}: need factor >= 1 and value > 0")
    return _band(ci, value / factor, value * factor)


def _band(ci: Interval, lo: float, hi: float) -> str:
    if not ci.known:
        return "inconclusive"
    if lo <= ci.low and ci.high <= hi:
        return "reproduced"
    return "not reproduced" if ci.high < lo or ci.low > hi else "inconclusive"


def every_level(level_verdicts: Sequence[str]) -> str:
    """Combine per-level inequality verdicts: not reproduced if any level contradicts the
    claim, reproduced if every level confirms it, inconclusive if none can tell, else partly
    (some levels confirm it, the others cannot tell, none contradicts)."""
    vs = set(level_verdicts)
    if not vs:
        return "not run"
    if "not reproduced" in vs:
        return "not reproduced"
    if vs == {"reproduced"}:
        return "reproduced"
    return "inconclusive" if vs == {"inconclusive"} else "partly"


RHO_MIN, RHO_FLOOR = 0.9, 0.5


def monotone(rho: Interval, rho_min: float = RHO_MIN, floor: float = RHO_FLOOR) -> str:
    """A monotone trend, ``rho`` the Spearman correlation signed so that the claimed
    direction is positive. Reproduced if rho >= ``rho_min`` and its interval lies above
    ``floor``; partly if the interval lies above ``floor`` but rho < ``rho_min`` (a clear
    trend with reversals); not reproduced if the interval lies below ``floor`` (no clear
    trend, or the opposite one); else inconclusive."""
    if not rho.known:
        return "inconclusive"
    if rho.high < floor:
        return "not reproduced"
    if rho.low > floor:
        return "reproduced" if rho.estimate >= rho_min else "partly"
    return "inconclusive"


# --- rule objects: a claim's parameters and its rule in words ----------------------------------

PCT = f"{CONFIDENCE:.0%}"


def _num(x: float, unit: str) -> str:
    return f"{x:g}{unit}" if unit in ("%", "x") else f"{x:g} {unit}".rstrip()


@dataclass(frozen=True)
class Above:
    """Claim x > threshold."""

    threshold: float
    unit: str = ""

    def verdict(self, ci: Interval) -> str:
        return inequality(ci, self.threshold, "above")

    def text(self) -> str:
        return (f"{PCT} CI above {_num(self.threshold, self.unit)} (below it: not reproduced; "
                f"across it: inconclusive)")


@dataclass(frozen=True)
class Below:
    """Claim x < threshold."""

    threshold: float
    unit: str = ""

    def verdict(self, ci: Interval) -> str:
        return inequality(ci, self.threshold, "below")

    def text(self) -> str:
        return (f"{PCT} CI below {_num(self.threshold, self.unit)} (above it: not reproduced; "
                f"across it: inconclusive)")


@dataclass(frozen=True)
class Near:
    """Claim x ≈ value, within ± tolerance (stated in the claim)."""

    value: float
    tolerance: float
    unit: str = ""

    def verdict(self, ci: Interval) -> str:
        return equality(ci, self.value, self.tolerance)

    def text(self) -> str:
        lo, hi = self.value - self.tolerance, self.value + self.tolerance
        return (f"{PCT} CI within {self.value:g} ± {_num(self.tolerance, self.unit)} = "
                f"[{lo:g}, {hi:g}] (wholly outside: not reproduced; across an edge: "
                f"inconclusive)")


@dataclass(frozen=True)
class RatioNear:
    """Claim ratio ≈ value, within a factor (stated in the claim)."""

    value: float
    factor: float

    def verdict(self, ci: Interval) -> str:
        return ratio(ci, self.value, self.factor)

    def text(self) -> str:
        lo, hi = self.value / self.factor, self.value * self.factor
        return (f"{PCT} CI within a factor {self.factor:g} of {self.value:g}x = "
                f"[{lo:.3g}x, {hi:.3g}x] (wholly outside: not reproduced; across an edge: "
                f"inconclusive)")


@dataclass(frozen=True)
class EveryLevel:
    """Claim "at every level, x > threshold" (or below): judged level by level."""

    threshold: float
    side: str = "above"
    unit: str = ""

    def level_verdict(self, ci: Interval) -> str:
        return inequality(ci, self.threshold, self.side)

    def verdict(self, level_verdicts: Sequence[str]) -> str:
        return every_level(level_verdicts)

    def text(self) -> str:
        other = "below" if self.side == "above" else "above"
        t = _num(self.threshold, self.unit)
        return (f"each level's {PCT} CI {self.side} {t} (any level {other} it: not "
                f"reproduced; some across it, none {other}: partly)")


@dataclass(frozen=True)
class Monotone:
    """Claim: the quantity moves monotonically with Pm (``sign`` +1: rises with Pm)."""

    sign: int
    rho_min: float = RHO_MIN
    floor: float = RHO_FLOOR

    def verdict(self, rho: Interval) -> str:
        """``rho`` is the raw Spearman correlation with Pm (signed here)."""
        s = 1 if self.sign > 0 else -1
        lo, hi = sorted((s * rho.low, s * rho.high))
        return monotone(Interval(s * rho.estimate, lo, hi, rho.n), self.rho_min, self.floor)

    def text(self) -> str:
        s = 1 if self.sign > 0 else -1
        cmp, side, other = (">=", "above", "below") if s > 0 else ("<=", "below", "above")
        short = "<" if s > 0 else ">"
        r, f = s * self.rho_min, s * self.floor
        return (f"Spearman rho of Pm with the level means {cmp} {r:g} and its {PCT} CI "
                f"{side} {f:g} (CI {side} {f:g} but rho {short} {r:g}: partly; CI wholly "
                f"{other} {f:g}: not reproduced; across it: inconclusive)")


Rule = Above | Below | Near | RatioNear | EveryLevel | Monotone


def rules_in_words() -> str:
    """The bootstrap and the rules in plain words (Markdown), with this module's constants:
    what the report's introduction prints, so the text cannot drift from the code."""
    pct = f"{CONFIDENCE:.0%}"
    return "\n".join([
        f"A claim's number is a mean over trials (seeds), and trials disagree. To see how far "
        f"the number could move had other trials been run, we draw as many trials as we have "
        f"from our own, with replacement (some twice, some not at all), and recompute the "
        f"number. With up to {MAX_EXACT} trials we take every distinct draw, weighted by its "
        f"probability (for 5 trials, {math.comb(9, 5)} draws), so no random seed is involved; "
        f"with more, {DRAWS:,} draws from a fixed seed stand in for them. The middle {pct} of "
        f"the recomputed numbers is the claim's interval. When the paper compares two things "
        f"from the same "
        f"trial (a ticket and its re-initialisation, a ticket and the dense network, iterative "
        f"and one-shot pruning of the same seed), a draw keeps each trial's pair together, so "
        f"what a seed does to both sides cancels out of the comparison: the interval is "
        f"*paired*. With fewer than {MIN_TRIALS} trials there is nothing to redraw: no "
        f"interval, and the verdict is *inconclusive*.",
        "",
        "One rule per kind of claim; *inconclusive* means our trials cannot tell:",
        "",
        "- **Above or below a threshold** (\"more than 0.3 pp\"): reproduced if the whole "
        "interval lies on the claimed side, not reproduced if it lies wholly on the other "
        "side, else inconclusive.",
        "- **Equal to a value** (\"back at the dense network's accuracy\"): the claim states a "
        "tolerance, printed in its rule; reproduced if the whole interval lies within the "
        "value plus or minus the tolerance, not reproduced if it lies wholly outside, else "
        "inconclusive.",
        "- **A ratio** (\"2.51x faster\"): the same with a factor: the whole interval must lie "
        "within the stated factor of the paper's value. Asking only that the interval "
        "*contain* the paper's value would reward noise: fewer or noisier trials give a wider "
        "interval, which contains any value more easily.",
        "- **At every level**: each level's paired interval is judged as a threshold claim. "
        "Reproduced if every level confirms the claim, not reproduced if any level "
        "contradicts it (the chapter names those levels), partly if the others cannot tell.",
        f"- **Monotone** (\"the sparser, the slower\"): the Spearman rank correlation of Pm "
        f"with the level means must reach {RHO_MIN:g} in the claimed direction, with its "
        f"interval beyond {RHO_FLOOR:g}. Not 1, because neighbouring levels whose means "
        f"differ by less than the trial noise may swap places; an interval beyond "
        f"{RHO_FLOOR:g}, so that the trend survives redrawing the trials and is not carried "
        f"by one of them. A clear trend (interval beyond {RHO_FLOOR:g}) weaker than "
        f"{RHO_MIN:g} is partly reproduced; an interval wholly short of {RHO_FLOOR:g} is not "
        f"reproduced, one across it inconclusive.",
        "- An effect of the wrong sign is never *partly*: it is not reproduced, or "
        "inconclusive if the interval still reaches the claimed side.",
        "",
        f"With a handful of trials a percentile bootstrap tends to be a little narrow (it "
        f"covers the truth somewhat less often than {pct}), so an interval that only just "
        f"clears a threshold is weaker evidence than it looks.",
        "",
        f"With two trials it is worse: the bootstrap interval is just the range of the two "
        f"values, and for any symmetric noise the true mean lies between two draws only half "
        f"the time, and three are little better. Figure 8's claims rest on three trials of "
        f"ResNet-18 per setting, so each of their intervals is also widened to reach at least {Z:.2f} standard errors of the "
        f"test set's sampling either side of our number: a network's accuracy p on n test "
        f"images varies by about √(p(1−p)/n) (0.27 pp at 92% on 10,000), and a ticket's gap "
        f"over its re-initialisation holds two such networks. The rule column says when an "
        f"interval was widened and by how much.",
    ])

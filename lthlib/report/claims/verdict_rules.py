"""Verdicts that account for trial noise.

A claim's number is a function of per-trial values, and trials disagree. So every verdict is
taken on a 95% interval, not on the number alone: a jackknife t-interval
(:mod:`lthlib.report.claims.intervals`), which for a mean over trials is the paired Student-t
interval (a ticket minus the re-init, dense network or one-shot run of its own seed) and for
a ratio of means the delta-method t-interval. Its coverage is measured by
:mod:`lthlib.report.claims.coverage`.

Each kind of claim has one small rule, a pure function of the interval:

- :func:`inequality` (x > t or x < t): the interval must lie wholly on the claimed side;
- :func:`equality` (x ≈ v): the interval must lie within v ± a tolerance stated in the claim;
- :func:`ratio` ("2.51x"): the interval must lie within a stated factor of the paper's value;
- :func:`every_level` ("at all levels"): combines per-level verdicts on a simultaneous band;
- :func:`monotone` (a trend over sizes): the mean of per-trial Spearman correlations.

A rule can answer "inconclusive": the trials cannot tell. None answers "partly" for an
effect of the wrong sign. The rule objects (:class:`Above`, :class:`Below`, :class:`Near`,
:class:`RatioNear`, :class:`EveryLevel`, :class:`MaxNear`, :class:`Monotone`) carry a
claim's parameters and say the rule in words for the ledger's ``rule`` column.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lthlib.report.claims.intervals import (CONFIDENCE, MIN_TRIALS, Z, Interval, sampling_se,
                                            spearman, weighted_mean)

__all__ = ["VERDICTS", "CONFIDENCE", "MIN_TRIALS", "Z", "Interval", "sampling_se",
           "spearman", "weighted_mean", "inequality", "equality", "ratio", "every_level",
           "monotone", "Above", "Below", "Near", "RatioNear", "EveryLevel", "MaxNear",
           "Monotone", "Rule", "LevelRule", "rules_in_words"]

VERDICTS = ("reproduced", "partly", "inconclusive", "not reproduced", "not run")
SIDES = ("above", "below")


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
    """Combine per-level inequality verdicts (each level's interval from a simultaneous
    band): not reproduced if any level contradicts the claim, reproduced if every level
    confirms it, inconclusive if none can tell, else partly (some levels confirm it, the
    others cannot tell, none contradicts)."""
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
    """A monotone trend, ``rho`` the mean per-trial Spearman correlation signed so that the claimed
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


def _tolerance_text(tolerance: float, unit: str, sigma: float | None, floor: float) -> str:
    """A tolerance with one network's test-set sampling error beside it, when known."""
    tol = _num(round(tolerance, 3), unit)
    if sigma is None or not sigma > 0:
        return tol
    return (f"{tol} (= {tolerance / sigma:.2g} σ, σ = {_num(round(sigma, 3), unit)}: one "
            f"network's test-set sampling error on this dataset; the larger of "
            f"{_num(floor, unit)} and 1 σ)")


@dataclass(frozen=True)
class Near:
    """Claim x ≈ value, within ± tolerance (stated in the claim). ``sigma``, when known, is
    one network's test-set sampling error on the dataset judged: the tolerance is then the
    larger of the stated one and ``sigma`` (:meth:`on_dataset`), since a band narrower than
    one network's sampling error asks the test set for more than it can tell."""

    value: float
    tolerance: float
    unit: str = ""
    sigma: float | None = None

    def on_dataset(self, sigma: float | None) -> Near:
        """This rule with the dataset's sampling error ``sigma`` (None: unchanged)."""
        return self if sigma is None else Near(self.value, self.tolerance, self.unit, sigma)

    @property
    def band(self) -> float:
        """The tolerance applied: the stated one, at least one sampling error."""
        return max(self.tolerance, self.sigma or 0.0)

    def verdict(self, ci: Interval) -> str:
        return equality(ci, self.value, self.band)

    def text(self) -> str:
        lo, hi = self.value - self.band, self.value + self.band
        tol = _tolerance_text(self.band, self.unit, self.sigma, self.tolerance)
        return (f"{PCT} CI within {self.value:g} ± {tol} = [{lo:.3g}, {hi:.3g}] (wholly "
                f"outside: not reproduced; across an edge: inconclusive)")


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
        return (f"each level's interval from a simultaneous {PCT} band over the m levels "
                f"(Bonferroni: a t-interval at 1 - 5%/m each) {self.side} {t} (any level "
                f"{other} it: not reproduced; some across it, none {other}: partly; a level "
                f"whose estimate lies on the wrong side is named)")


@dataclass(frozen=True)
class MaxNear(Near):
    """Claim "the best level is ≈ value": judged on the simultaneous band over levels, which
    holds every level's mean with 95% probability, so the best level's mean lies between
    the largest lower end and the largest upper end. A percentile bootstrap of a maximum is
    biased (the observed maximum sits low in it); this interval is not. The tolerance and
    its dataset's sampling error work as in :class:`Near`."""

    def on_dataset(self, sigma: float | None) -> MaxNear:
        return self if sigma is None else MaxNear(self.value, self.tolerance, self.unit, sigma)

    def text(self) -> str:
        lo, hi = self.value - self.band, self.value + self.band
        tol = _tolerance_text(self.band, self.unit, self.sigma, self.tolerance)
        return (f"best level within {self.value:g} ± {tol} = [{lo:.3g}, {hi:.3g}]: its "
                f"interval runs from the largest lower end to the largest upper end of a "
                f"simultaneous {PCT} band over the m levels (Bonferroni: a t-interval at "
                f"1 - 5%/m each); wholly outside: not reproduced; across an edge: "
                f"inconclusive")


@dataclass(frozen=True)
class Monotone:
    """Claim: the quantity moves monotonically with Pm (``sign`` +1: rises with Pm)."""

    sign: int
    rho_min: float = RHO_MIN
    floor: float = RHO_FLOOR

    def verdict(self, rho: Interval) -> str:
        """``rho`` is the raw mean per-trial Spearman correlation with Pm (signed here)."""
        s = 1 if self.sign > 0 else -1
        lo, hi = sorted((s * rho.low, s * rho.high))
        return monotone(Interval(s * rho.estimate, lo, hi, rho.n), self.rho_min, self.floor)

    def text(self) -> str:
        s = 1 if self.sign > 0 else -1
        cmp, side, other = (">=", "above", "below") if s > 0 else ("<=", "below", "above")
        short = "<" if s > 0 else ">"
        r, f = s * self.rho_min, s * self.floor
        return (f"mean over trials of each trial's Spearman rho of Pm with its level values "
                f"{cmp} {r:g} and its {PCT} CI "
                f"{side} {f:g} (CI {side} {f:g} but rho {short} {r:g}: partly; CI wholly "
                f"{other} {f:g}: not reproduced; across it: inconclusive)")


Rule = Above | Below | Near | RatioNear | EveryLevel | MaxNear | Monotone
LevelRule = EveryLevel | MaxNear  # rules judged on per-level values


def rules_in_words() -> str:
    """The intervals and the rules in plain words (Markdown), with this module's constants:
    what the report's introduction prints, so the text cannot drift from the code."""
    pct = f"{CONFIDENCE:.0%}"
    return "\n".join([
        f"A claim's number is computed from our trials (seeds), and trials disagree. Its "
        f"{pct} interval is a t-interval: the number plus or minus Student's t quantile "
        f"(n − 1 degrees of freedom for n trials) times its standard error. For a mean over "
        f"trials the error is the trials' standard deviation over √n; when the paper compares "
        f"two things from the same trial (a ticket and its re-initialisation, a ticket and "
        f"the dense network, iterative and one-shot pruning of the same seed, two learning "
        f"rates run from the same seed), the mean is of each trial's difference, so what a "
        f"seed does to both sides cancels out: the interval is *paired*. For a ratio of means "
        f"the error comes from recomputing the ratio leaving out one trial at a time (the "
        f"jackknife, a delta-method error). With fewer than {MIN_TRIALS} trials there is no "
        f"interval, and the verdict is *inconclusive*. How often these intervals hold the "
        f"truth is measured by simulation in the appendix on verdicts.",
        "",
        "One rule per kind of claim; *inconclusive* means our trials cannot tell:",
        "",
        "- **Above or below a threshold** (\"more than 0.3 pp\"): reproduced if the whole "
        "interval lies on the claimed side, not reproduced if it lies wholly on the other "
        "side, else inconclusive.",
        "- **Equal to a value** (\"back at the dense network's accuracy\"): the claim states a "
        "tolerance, at least one network's test-set sampling error on the dataset "
        "(σ = √(p(1−p)/N) for accuracy p on N test images), printed in its rule; reproduced "
        "if the whole interval lies within the value plus or minus the tolerance, not "
        "reproduced if it lies wholly outside, else inconclusive.",
        "- **A ratio** (\"2.51x faster\"): the same with a factor: the whole interval must lie "
        "within the stated factor of the paper's value.",
        f"- **At every level**: the levels are judged together on a simultaneous {pct} band "
        f"(each of m levels at 1 − 5%/m), so that one level out of many crossing a threshold "
        f"by chance does not decide the claim. Reproduced if every level confirms the claim, "
        f"not reproduced if any level contradicts it, partly if the others cannot tell; the "
        f"row names the levels of each kind and any level whose estimate has the wrong sign. "
        f"A number shown for such a claim is its weakest level's, and says so.",
        "- **The best level** (\"up to 0.35 pp\"): the same band gives the best level's "
        "interval (from the largest lower end to the largest upper end).",
        f"- **Monotone** (\"the sparser, the slower\"): each trial's Spearman rank "
        f"correlation of Pm with its level values, averaged over trials, must reach "
        f"{RHO_MIN:g} in the claimed direction, with its interval beyond {RHO_FLOOR:g}; a "
        f"clear trend weaker than {RHO_MIN:g} is partly reproduced.",
        "- **Controls**: where a claim has a natural control (re-initialised networks, the "
        "high learning rate, tickets beside random networks), the control is judged by the "
        "same rule. If it passes too, the claim is at most *partly* reproduced and the row "
        "says \"control passes the same test\".",
        "- An effect of the wrong sign is never *partly*: it is not reproduced, or "
        "inconclusive if the interval still reaches the claimed side.",
        "",
        f"Figure 8's claims rest on three trials of ResNet-18 per setting, so each of their "
        f"intervals also reaches at least {Z:.2f} standard errors of the test set's sampling "
        f"either side of our number: 1.96 √(k p(1−p) / (N c)) for k networks in the number "
        f"(two in a ticket's gap over its re-initialisation), accuracy p, N test images and "
        f"c trial-level cells averaged. The rule column says when an interval was widened "
        f"and by how much.",
    ])

"""Judging one claim on its evidence: the estimate over all trials, its jackknife t-interval
(paired over trials when every experiment holds the same seeds), the verdict of the claim's
rule, the same rule run on the claim's control, and notes for claims about every level.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lthlib.report.claims.paper_claims import Claim, round_value
from lthlib.report.claims.evidence import Evidence, LevelValues, Measured, Sampling, need_key
from lthlib.report.claims.intervals import (MIN_TRIALS, Z, Interval, jackknife_se, leave_one_out,
                                            t_interval)
from lthlib.report.claims.verdict_rules import EveryLevel, LevelRule, MaxNear, Monotone, Rule


@dataclass(frozen=True)
class Assessment:
    """A claim judged on its evidence: our number with its interval, the verdict, the rule
    as applied (with the pairing and trial count), per-level notes for level claims, what
    ``ours`` is when it is not the claim's whole number (a weakest level), a note on the
    verdict (a control that passes too, a level of the wrong sign) and the control's own
    judgement."""

    ours: float | None
    ci: Interval | None
    verdict: str
    rule: str = ""
    detail: str = ""
    ours_is: str = ""
    note: str = ""
    control: Assessment | None = None

    @property
    def ci_low(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.low

    @property
    def ci_high(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.high


NOT_RUN = Assessment(None, None, "not run")
CONTROL_PASSES = "control passes the same test"
WRONG_SIGN = "a level has the wrong sign"


def jackknife_groups(evidence: Evidence, keys: Sequence[str]
                     ) -> tuple[list[dict[str, np.ndarray]], int, bool]:
    """Leave-one-out trial weights per need key, the trial count n, and whether the trials
    are paired. When every need holds the same seeds, one group leaves out a seed from all
    of them at once (paired: the ticket, its controls and the other setting of a seed move
    together) and n is that count. Otherwise each need is left out on its own (its variance
    terms add) and n is the smallest count."""
    seeds = {k: evidence.seeds(k) for k in keys}
    if len(set(seeds.values())) == 1:
        n = len(next(iter(seeds.values())))
        return [{k: leave_one_out(max(n, 1)) for k in keys}], n, True
    groups = []
    for k, s in seeds.items():
        rows = max(len(s), 1)
        groups.append({o: leave_one_out(rows) if o == k else np.ones((rows, max(len(t), 1)))
                       for o, t in seeds.items()})
    return groups, min(len(s) for s in seeds.values()), False


def _values(m: Measured) -> np.ndarray | None:
    if m is None:
        return None
    return np.asarray(m.values if isinstance(m, LevelValues) else m, dtype=float)


def standard_error(compute: Callable[[Evidence], Measured], evidence: Evidence,
                   keys: Sequence[str], shape: tuple[int, ...]
                   ) -> tuple[np.ndarray, int, bool]:
    """Jackknife standard error of ``compute`` (one per value of ``shape``), n, paired."""
    groups, n, paired = jackknife_groups(evidence, keys)
    var = np.zeros(shape)
    for weights in groups:
        loo = _values(compute(evidence.reweighted(weights)))
        if loo is None or loo.shape[:-1] != shape:
            return np.full(shape, np.nan), n, paired
        var = var + jackknife_se(loo) ** 2
    return np.sqrt(var), n, paired


def _pm_text(pms: Sequence[float]) -> str:
    return ", ".join(f"{100 * p:.3g}%" for p in pms)


def _names(point: LevelValues, idx: Sequence[int]) -> str:
    if point.labels is not None:
        return ", ".join(point.labels[i] for i in idx)
    return _pm_text([point.pms[i] for i in idx])


@dataclass(frozen=True)
class Measurement:
    """A compute judged by a rule: interval, verdict, per-level notes, what ours is."""

    ci: Interval
    verdict: str
    how: str
    detail: str = ""
    ours_is: str = ""
    wrong_sign: bool = False


def measure(claim_id: str, rule: Rule, compute: Callable[[Evidence], Measured],
            evidence: Evidence, keys: Sequence[str], sampling: Sampling | None = None
            ) -> Measurement | None:
    """``compute`` on ``evidence`` judged by ``rule``; None when it cannot be measured."""
    point = compute(evidence)
    if point is None:
        return None
    levels = isinstance(point, LevelValues)
    if levels != isinstance(rule, (EveryLevel, MaxNear)):
        raise TypeError(f"claim {claim_id!r}: per-level values go with an EveryLevel or "
                        f"MaxNear rule and single values with the others; got "
                        f"{type(rule).__name__} for "
                        f"{'per-level values' if levels else 'a value'}")
    est = _values(point)[..., 0]
    se, n, paired = standard_error(compute, evidence, keys, est.shape)
    how = (f"{'paired' if paired else 'unpaired'} t-interval over {n} trial"
           f"{'s' if n != 1 else ''} (t with {max(n - 1, 0)} df times the jackknife standard "
           f"error: s/√n for a mean)")
    floor = sampling(evidence, n) if sampling is not None else None
    half = Z * floor if floor is not None and math.isfinite(floor) else 0.0
    if half > 0 and n >= MIN_TRIALS:
        unit = getattr(rule, "unit", "")
        how += (f", each end at least {half:.2g}{'' if unit == '%' else ' '}{unit} from our "
                f"number ({Z:.2f} x the test set's sampling error "
                f"{sampling.formula(evidence, n)})")
    if not levels:
        ci = t_interval(float(est), float(se), n - 1, n=n).widened(half)
        if isinstance(rule, Monotone) and ci.known:  # a correlation lies in [-1, 1]
            ci = Interval(ci.estimate, max(ci.low, -1.0), min(ci.high, 1.0), n)
        if not math.isfinite(ci.estimate):
            return None
        return Measurement(ci, rule.verdict(ci), how)
    return _judge_levels(rule, point, est, se, n, half, how)


def _judge_levels(rule: LevelRule, point: LevelValues, est: np.ndarray, se: np.ndarray,
                  n: int, half: float, how: str) -> Measurement:
    """Per-level intervals from a simultaneous band over the m levels. EveryLevel: ours and
    the interval are the weakest level's (a contradicting level first, else an
    inconclusive one, else any; among those the one least on the claimed side). MaxNear:
    the best level's mean lies between the band's largest lower and upper ends."""
    m = len(point.pms)
    cis = [t_interval(float(est[i]), float(se[i]), n - 1, family=m, n=n).widened(half)
           for i in range(m)]
    how += f"; simultaneous band over m = {m} levels"
    if isinstance(rule, MaxNear):
        best = int(np.nanargmax(est))
        ci = Interval(float(est[best]), max(c.low for c in cis), max(c.high for c in cis), n)
        return Measurement(ci, rule.verdict(ci), how,
                           f"best of {m} levels: Pm {_names(point, [best])}",
                           f"best level, Pm {_names(point, [best])}")
    verdicts = [rule.level_verdict(ci) for ci in cis]
    sign = 1 if rule.side == "above" else -1
    severity = {"not reproduced": 0, "inconclusive": 1, "reproduced": 2}
    weakest = min(range(m), key=lambda i: (severity[verdicts[i]],
                                           sign * (cis[i].estimate - rule.threshold)))
    held = [i for i in range(m) if verdicts[i] == "reproduced"]
    against = [i for i in range(m) if verdicts[i] == "not reproduced"]
    unsure = [i for i in range(m) if verdicts[i] == "inconclusive"]
    wrong = [i for i in unsure if sign * (cis[i].estimate - rule.threshold) < 0]
    parts = [f"holds at {len(held)} of {m} levels" + (f" (Pm {_names(point, held)})"
                                                      if held and len(held) < m else "")]
    if against:
        parts.append(f"contradicted at Pm {_names(point, against)}")
    if unsure:
        parts.append(f"cannot tell at Pm {_names(point, unsure)}")
    if wrong:
        parts.append(f"of those, estimate on the wrong side at Pm {_names(point, wrong)}")
    label = f"weakest level, Pm {_names(point, [weakest])}"
    parts.append(f"ours: the {label}")
    return Measurement(cis[weakest], rule.verdict(verdicts), how, "; ".join(parts), label,
                       bool(wrong))


def _on_dataset(rule: Rule, claim: Claim, evidence: Evidence) -> Rule:
    if claim.tolerance_se is None or not hasattr(rule, "on_dataset"):
        return rule
    return rule.on_dataset(claim.tolerance_se(evidence))


def assess(claim: Claim, evidence: Evidence) -> Assessment:
    """``claim`` judged on ``evidence``: "not run" if anything is missing or the claim is
    restricted to other datasets; else the estimate over all trials, its t-interval, the
    rule's verdict and, when the claim has a control, the control's judgement by the same
    rule (a control that passes too keeps the claim from "reproduced")."""
    if claim.datasets is not None and evidence.dataset not in claim.datasets:
        return NOT_RUN
    keys = [need_key(n) for n in claim.needs]
    if any(evidence.summary(k) is None for k in keys):
        return NOT_RUN
    rule = _on_dataset(claim.rule, claim, evidence)
    m = measure(claim.id, rule, claim.compute, evidence, keys, claim.sampling)
    if m is None:
        return NOT_RUN
    text = f"{claim.criterion(rule)}; {m.how}"
    verdict, notes, detail = m.verdict, [], m.detail
    if verdict == "reproduced" and not reaches_depth(claim, evidence):
        verdict = "partly"  # the run stops above the sizes the statement is about
    control = None
    if claim.control is not None:
        cm = measure(claim.id, rule, claim.control.compute, evidence, keys,
                     claim.control.sampling)
        if cm is not None:
            control = Assessment(cm.ci.estimate, cm.ci, cm.verdict, cm.how, cm.detail,
                                 cm.ours_is)
            passes = cm.verdict == "reproduced"
            detail = "; ".join(filter(None, [detail, (
                f"control ({claim.control.label}): {cm.ci}, {cm.verdict}"
                + (f" — {CONTROL_PASSES}" if passes else ""))]))
            if passes:
                notes.append(CONTROL_PASSES)
                if verdict == "reproduced":
                    verdict = "partly"
            text += f"; control ({claim.control.label}) judged by the same rule"
    if m.wrong_sign and verdict == "partly":
        notes.append(WRONG_SIGN)
    if not m.ci.known:
        detail = "; ".join(filter(None, [detail, f"{m.ci.n} trial(s): too few for an "
                                                 f"interval"]))
    return Assessment(m.ci.estimate, m.ci, verdict, text, detail, m.ours_is,
                      "; ".join(notes), control)


def row_fields(a: Assessment) -> dict[str, Any]:
    """The ledger columns an assessment fills (numbers rounded as ``claims.csv`` stores them)."""
    c = a.control
    return dict(ours=round_value(a.ours), ci_low=round_value(a.ci_low),
                ci_high=round_value(a.ci_high), verdict=a.verdict, detail=a.detail,
                ours_is=a.ours_is, verdict_note=a.note,
                control_ours=round_value(c.ours) if c else None,
                control_ci_low=round_value(c.ci_low) if c else None,
                control_ci_high=round_value(c.ci_high) if c else None,
                control_verdict=c.verdict if c else "")


def reaches_depth(claim: Claim, evidence: Evidence) -> bool:
    """Whether the stored tickets of the claim's first need get down to ``claim.reaches``
    (within one 20% pruning round, i.e. the deepest Pm is at most 1.25 times it)."""
    if claim.reaches is None:
        return True
    s = evidence.summary(need_key(claim.needs[0]))
    return s is not None and len(s) > 0 and float(s["pm"].min()) <= 1.25 * claim.reaches

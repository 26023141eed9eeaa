"""Judging one claim on its evidence: the estimate over all trials, its bootstrap interval
(paired over trials when every experiment holds the same seeds) and the verdict of the
claim's rule, with notes for claims about every level.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .claims import Claim
from .evidence import Evidence, LevelValues, Measured, need_key
from .verdicts import (BOOTSTRAP_SEED, DRAWS, MIN_TRIALS, Z, EveryLevel, Interval,
                       bootstrap_draws, percentile_interval, resample_counts)


@dataclass(frozen=True)
class Assessment:
    """A claim judged on its evidence: our number with its interval, the verdict, the rule
    as applied (with the pairing and trial count), and per-level notes for level claims."""

    ours: float | None
    ci: Interval | None
    verdict: str
    rule: str = ""
    detail: str = ""

    @property
    def ci_low(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.low

    @property
    def ci_high(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.high


NOT_RUN = Assessment(None, None, "not run")


def trial_draws(evidence: Evidence, keys: Sequence[str], draws: int = DRAWS,
                seed: int = BOOTSTRAP_SEED
                ) -> tuple[dict[str, np.ndarray], np.ndarray, int, bool]:
    """Bootstrap weights per need key, the probability of each draw, the trial count n, and
    whether the draws are paired.

    When every need holds the same seeds, one draw of seeds serves them all (paired: the
    ticket, its controls and the other experiment of a seed move together), exact up to
    :data:`~lthlib.report.verdicts.MAX_EXACT` trials, and n is that count. Otherwise each need is
    drawn on its own (seeded random draws) and n is the smallest count."""
    seeds = {k: evidence.seeds(k) for k in keys}
    if len(set(seeds.values())) == 1:
        n = len(next(iter(seeds.values())))
        d = bootstrap_draws(max(n, 1), draws, seed)
        return {k: d.counts for k in keys}, d.probs, n, True
    weights = {k: resample_counts(max(len(s), 1), draws, seed + i)
               for i, (k, s) in enumerate(seeds.items())}
    return weights, np.full(draws, 1.0 / draws), min(len(s) for s in seeds.values()), False


def _pm_text(pms: Sequence[float]) -> str:
    return ", ".join(f"{100 * p:.3g}%" for p in pms)


def _level_detail(pms: Sequence[float], verdicts: Sequence[str]) -> str:
    held = [p for p, v in zip(pms, verdicts) if v == "reproduced"]
    against = [p for p, v in zip(pms, verdicts) if v == "not reproduced"]
    unsure = [p for p, v in zip(pms, verdicts) if v == "inconclusive"]
    parts = [f"holds at {len(held)} of {len(pms)} levels"]
    if against:
        parts.append(f"contradicted at Pm {_pm_text(against)}")
    if unsure:
        parts.append(f"inconclusive at Pm {_pm_text(unsure)}")
    return "; ".join(parts)


def assess(claim: Claim, evidence: Evidence, draws: int = DRAWS,
           seed: int = BOOTSTRAP_SEED) -> Assessment:
    """``claim`` judged on ``evidence``: "not run" if anything is missing or the claim is
    restricted to other datasets; else the estimate over all trials, its bootstrap interval
    and the rule's verdict."""
    if claim.datasets is not None and evidence.dataset not in claim.datasets:
        return NOT_RUN
    keys = [need_key(n) for n in claim.needs]
    if any(evidence.summary(k) is None for k in keys):
        return NOT_RUN
    point = claim.compute(evidence)
    if point is None:
        return NOT_RUN
    weights, probs, n, paired = trial_draws(evidence, keys, draws, seed)
    boot = claim.compute(evidence.reweighted(weights))
    how = (f"{'paired' if paired else 'unpaired'} bootstrap over {n} trial"
           f"{'s' if n != 1 else ''}")
    floor = claim.sampling(evidence, n) if claim.sampling is not None else None
    half = Z * floor if floor is not None and math.isfinite(floor) else 0.0
    if half > 0 and n >= MIN_TRIALS:
        unit = getattr(claim.rule, "unit", "")
        how += (f", each end at least {half:.2g}{'' if unit == '%' else ' '}{unit} from our "
                f"number ({Z:.2f} x the test set's sampling error)")
    rule = f"{claim.criterion()}; {how}"
    if isinstance(point, LevelValues) != isinstance(claim.rule, EveryLevel):
        raise TypeError(f"claim {claim.id!r}: per-level values go with an EveryLevel rule and "
                        f"single values with the others; got {type(claim.rule).__name__} for "
                        f"{'per-level values' if isinstance(point, LevelValues) else 'a value'}")
    if isinstance(point, LevelValues):
        ours, ci, verdict, detail = _judge_levels(claim, point, boot, n, probs, half)
    else:
        ci = percentile_interval(float(point[0]), boot, n, probs=probs).widened(half)
        ours, verdict, detail = ci.estimate, claim.rule.verdict(ci), ""
        if not math.isfinite(ours):
            return NOT_RUN
    if verdict == "reproduced" and not reaches_depth(claim, evidence):
        verdict = "partly"  # the run stops above the sizes the statement is about
    if not ci.known:
        detail = "; ".join(filter(None, [detail, f"{n} trial(s): too few for an interval"]))
    return Assessment(ours, ci, verdict, rule, detail)


def _judge_levels(claim: Claim, point: LevelValues, boot: Measured, n: int,
                  probs: np.ndarray, half: float = 0.0) -> tuple[float, Interval, str, str]:
    """Per-level intervals and verdicts; ours and the interval are those of the weakest
    level: a contradicting level first, else an inconclusive one, else any; among those, the
    one whose estimate lies least on the claimed side."""
    rule = claim.rule
    if not isinstance(rule, EveryLevel) or not isinstance(boot, LevelValues):
        raise TypeError(f"claim {claim.id!r}: per-level values need an EveryLevel rule")
    cis = [percentile_interval(float(point.values[i, 0]), boot.values[i], n, probs=probs
                               ).widened(half) for i in range(len(point.pms))]
    verdicts = [rule.level_verdict(ci) for ci in cis]
    sign = 1 if rule.side == "above" else -1
    severity = {"not reproduced": 0, "inconclusive": 1, "reproduced": 2}
    weakest = min(range(len(cis)), key=lambda i: (severity[verdicts[i]], sign * cis[i].estimate))
    detail = _level_detail(point.pms, verdicts) + \
        f"; weakest level Pm {_pm_text([point.pms[weakest]])}"
    return cis[weakest].estimate, cis[weakest], rule.verdict(verdicts), detail


def reaches_depth(claim: Claim, evidence: Evidence) -> bool:
    """Whether the stored tickets of the claim's first need get down to ``claim.reaches``
    (within one 20% pruning round, i.e. the deepest Pm is at most 1.25 times it)."""
    if claim.reaches is None:
        return True
    s = evidence.summary(need_key(claim.needs[0]))
    return s is not None and len(s) > 0 and float(s["pm"].min()) <= 1.25 * claim.reaches

"""The measurements the claims ledger is built from (:mod:`lthlib.report.claims.paper_claims`), each a
function of the evidence (:mod:`lthlib.report.claims.evidence`) that returns one value per row of
the trial weights: a ticket against the dense network or its re-initialisation, per-level
gaps, ratios of means, rank correlations, best levels and Figure 3's learning curves.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from lthlib.report.analysis import PM_REL_TOL, nearest_level
from lthlib.report.claims.evidence import (ES, IMP, ONESHOT, RANGE_SLACK, Evidence, LevelValues,
                                           Need, Values, difference, in_range, level_values,
                                           need_key, quotient, value_at)
from lthlib.report.claims.intervals import spearman, weighted_mean


def ticket_vs_dense(need: Need, metric: str, pm: float, variant: str = "ticket",
                    scale: float = 1.0) -> Callable[[Evidence], Values | None]:
    """``variant`` at ``pm`` minus the dense network (level 0 ticket), times ``scale``."""
    return lambda ev: difference(value_at(ev, need, metric, pm, variant),
                           value_at(ev, need, metric, 1.0), scale)


def ratio_to_dense(need: Need, metric: str, pm: float, variant: str = "ticket"
                   ) -> Callable[[Evidence], Values | None]:
    return lambda ev: quotient(value_at(ev, need, metric, pm, variant),
                             value_at(ev, need, metric, 1.0))


def gaps_by_level(need: Need, metric: str, hi: float, lo: float, against: str = "reinit",
                  scale: float = 100.0, flip: bool = False, variant: str = "ticket"
                  ) -> Callable[[Evidence], LevelValues | None]:
    """Per pruned level of ``variant`` with ``hi >= Pm >= lo``: it minus ``against`` (a
    variant at the same level, or "dense"), times ``scale``; ``flip`` takes ``against``
    minus it (for iterations, where lower is better). Levels lacking the other side are
    dropped."""
    def compute(ev: Evidence) -> LevelValues | None:
        pms, vals = level_values(ev, need, metric, variant)
        keep = in_range(pms, hi, lo) & (pms < 1.0).to_numpy()
        out_pm, out = [], []
        for (lvl, pm), v, k in zip(pms.items(), vals, keep):
            if not k:
                continue
            ref = value_at(ev, need, metric, 1.0) if against == "dense" else \
                value_at(ev, need, metric, pm, against, rel=0.01)
            if ref is not None:
                out_pm.append(float(pm))
                out.append(scale * ((ref - v) if flip else (v - ref)))
        return LevelValues(tuple(out_pm), np.array(out)) if out else None
    return compute


def reduce_levels(per_level: Callable[[Evidence], LevelValues | None], how: str
                  ) -> Callable[[Evidence], Values | None]:
    """A per-level quantity reduced over levels (mean, min or max) for each weight row."""
    def compute(ev: Evidence) -> Values | None:
        lv = per_level(ev)
        return None if lv is None else lv.reduce(how)
    return compute


def variant_gap(need: Need, metric: str, pm: float, a: str = "ticket", b: str = "reinit"
                ) -> Callable[[Evidence], Values | None]:
    """``a`` minus ``b`` at the level nearest ``pm``, in pp."""
    return lambda ev: difference(value_at(ev, need, metric, pm, a),
                           value_at(ev, need, metric, pm, b), 100.0)


def pct_at(need: Need, metric: str, pm: float) -> Callable[[Evidence], Values | None]:
    """The ticket's mean ``metric`` at ``pm``, in percent."""
    return lambda ev: difference(value_at(ev, need, metric, pm), 0.0, 100.0)


def rank_corr(need: Need, metric: str, variant: str = "random"
              ) -> Callable[[Evidence], Values | None]:
    """Each trial's Spearman correlation of Pm with its level values of ``metric`` for
    ``variant`` (the dense network included as Pm 100%), averaged over the trials: a mean of
    per-trial numbers, so its interval is a Student-t one. Needs 3 levels."""
    def compute(ev: Evidence) -> Values | None:
        key = need_key(need)
        pms, per = ev.table(key, metric, variant)
        pms = list(pms)
        dense_pm, dense = ev.table(key, metric, "ticket")
        lvl = nearest_level(dense_pm, 1.0, PM_REL_TOL) if len(dense_pm) else None
        if lvl is not None and not any(p >= 1.0 for p in pms):
            pms, per = pms + [1.0], np.vstack([per, dense[dense_pm.index.get_loc(lvl)][None]])
        if len(pms) < 3:
            return None
        rho = spearman(np.array(pms), np.nan_to_num(per, nan=np.nanmean(per)))
        rho = np.where(np.isfinite(per).all(axis=0), rho, np.nan)
        return weighted_mean(rho, ev.trial_weights(key))
    return compute


def rank_corr_random(need: Need, metric: str) -> Callable[[Evidence], Values | None]:
    """:func:`rank_corr` of the random sparse networks."""
    return rank_corr(need, metric, "random")


def levels_of(need: Need, metric: str, pm_min: float, variants: tuple[str, ...] = ("ticket",),
              scale: float = 100.0, pm_max: float = 1.0, minus: Need | None = None
              ) -> Callable[[Evidence], LevelValues | None]:
    """Per level with ``pm_max >= Pm >= pm_min`` of each of ``variants``: the
    trial-weighted mean of ``metric`` times ``scale`` (minus the dense network of ``minus``
    when given, paired by seed), each level labelled with its Pm (and its variant when
    there are several)."""
    def compute(ev: Evidence) -> LevelValues | None:
        pms_out, vals_out, labels = [], [], []
        ref = 0.0 if minus is None else value_at(ev, minus, metric, 1.0)
        if ref is None:
            return None
        for v in variants:
            pms, vals = level_values(ev, need, metric, v)
            for pm, row in zip(pms, vals - ref):
                if pm_max >= pm >= pm_min:
                    pms_out.append(float(pm))
                    vals_out.append(scale * row)
                    labels.append(f"{100 * pm:.3g}%" + (f" ({v})" if len(variants) > 1 else ""))
        return LevelValues(tuple(pms_out), np.array(vals_out), tuple(labels)) \
            if vals_out else None
    return compute


def iterative_vs_oneshot(metric: str, better: str, pm_max: float = 0.10
                         ) -> Callable[[Evidence], LevelValues | None]:
    """Per one-shot level with Pm <= ``pm_max``: how much better the iterative ticket at the
    nearest iterative level is (one-shot minus iterative for ``better="lower"``, iterations;
    iterative minus one-shot in pp for "higher"). The same seeds run both experiments, so
    the interval pairs them."""
    def compute(ev: Evidence) -> LevelValues | None:
        pms, vals = level_values(ev, ONESHOT, metric)
        out_pm, out = [], []
        for pm, one in zip(pms, vals):
            other = value_at(ev, IMP, metric, pm) if pm <= pm_max * (1 + RANGE_SLACK) else None
            if other is not None:
                out_pm.append(float(pm))
                out.append(one - other if better == "lower" else 100.0 * (other - one))
        return LevelValues(tuple(out_pm), np.array(out)) if out else None
    return compute


# Figure 3: test-accuracy curves of iterative tickets.
def _curve(ev: Evidence, pm: float, variant: str = "ticket"
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """Iterations and the trial-weighted mean curve of ``variant`` at ``pm``, (its, k)."""
    got = _level_curves(ev, pm, variant)
    return None if got is None else (got[0], weighted_mean(got[1], ev.trial_weights(need_key(IMP))))


def learning_advantage(ev: Evidence, pm: float, variant: str = "ticket") -> Values | None:
    """Mean test-accuracy lead (pp) of ``variant`` at ``pm`` over the dense network during
    the dense network's learning phase (evaluations 0 < iteration <= its early stop)."""
    c, d = _curve(ev, pm, variant), _curve(ev, 1.0)
    stop = value_at(ev, IMP, ES, 1.0)
    if c is None or d is None or stop is None:
        return None
    common = np.intersect1d(c[0], d[0])
    cv = c[1][np.searchsorted(c[0], common)]
    dv = d[1][np.searchsorted(d[0], common)]
    inside = (common[:, None] > 0) & (common[:, None] <= stop[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        n = inside.sum(axis=0)
        lead = np.where(inside, cv - dv, 0.0).sum(axis=0) / np.where(n > 0, n, 1)
    return np.where(n > 0, 100 * lead, np.nan)


def peak_gain(ev: Evidence, pm: float, variant: str = "ticket") -> Values | None:
    """Each trial's peak test accuracy of the ticket at ``pm`` minus its dense network's
    peak, averaged over trials (pp): a mean of paired per-trial differences. The peak of
    the trials' mean curve would be a maximum of means, whose interval is biased."""
    c, d = _trial_curves(ev, pm, variant), _trial_curves(ev, 1.0)
    if c is None or d is None:
        return None
    with warnings.catch_warnings():  # a trial without a curve is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per = 100 * (np.nanmax(c, axis=0) - np.nanmax(d, axis=0))
    return weighted_mean(per, ev.trial_weights(need_key(IMP)))


def _level_curves(ev: Evidence, pm: float, variant: str = "ticket"
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Iterations and per-trial test-accuracy curves of ``variant`` at the level nearest
    ``pm``, (iterations, trials); None without IMP results."""
    key = need_key(IMP)
    m = ev.long(key)
    if m is None or m.empty:
        return None
    t = m[m["variant"] == variant]
    lvl = nearest_level(t.groupby("level")["pm"].mean(), pm) if len(t) else None
    return None if lvl is None else ev.curves(key, lvl, variant)


def _trial_curves(ev: Evidence, pm: float, variant: str = "ticket") -> np.ndarray | None:
    """Per-trial test-accuracy curves of ``variant`` at ``pm``, (iterations, trials)."""
    got = _level_curves(ev, pm, variant)
    return None if got is None else got[1]

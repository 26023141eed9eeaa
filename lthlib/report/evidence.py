"""The evidence a claim is measured on: stored summaries and curves by experiment, each trial
with a weight, and the measurements the claims ledger is built from (:mod:`lthlib.report.claims`).

Every measurement returns one value per row of the trial weights: all-ones weights give the
claim's number over all trials, resampled counts give its bootstrap draws
(:mod:`lthlib.report.verdicts`). Means are over trials of per-trial means over replicates,
so a level stored with one re-initialisation per trial and one with three weigh trials
alike.

Pm levels are looked up as the nearest stored level within a relative tolerance of
:data:`PM_REL_TOL` (15%): our one-shot targets and the paper's plotted points differ
slightly, and a level further away than that is a different network, so the claim is "not
run" rather than measured at the wrong point. Accuracy differences are in percentage points.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ..config import check_choice
from .analysis import PM_REL_TOL, nearest_level
from .verdicts import sampling_se, spearman, weighted_mean

TEST_IMAGES = 10_000  # MNIST, FashionMNIST and CIFAR-10 all hold out 10,000 test images
RANGE_SLACK = 0.05  # Pm ranges ("67.5% >= Pm >= 17.6%") are widened by 5% at both ends

Need = tuple[str, ...]  # (experiment, arch) or (experiment, arch, lr setting)
Values = np.ndarray  # one value per row of the trial weights, shape (k,)


@dataclass(frozen=True)
class LevelValues:
    """A per-level quantity: Pm of each level and its values, shape (levels, k)."""

    pms: tuple[float, ...]
    values: np.ndarray

    def reduce(self, how: str) -> Values:
        """Mean, min or max over levels (NaN levels ignored) for each weight row."""
        fn = {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[
            check_choice("reduction", how, ("mean", "min", "max"))]
        with warnings.catch_warnings():  # an all-NaN column is NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(self.values, axis=0)


Measured = Values | LevelValues | None


# --- trial-weighted tables ---------------------------------------------------------------------

def need_key(need: Need) -> str:
    """``("global-imp", "resnet18", "lr0.1") -> "global-imp/resnet18/lr0.1"``."""
    return "/".join(need)


@dataclass
class Evidence:
    """Summaries (and, lazily, long metrics) of the experiments a claim needs, by need key,
    with the weight each trial gets: ``weights[key]`` is ``(k, trials)``, one row per
    bootstrap sample (absent: one row of ones, i.e. every trial once)."""

    summaries: Mapping[str, pd.DataFrame]
    metrics: Mapping[str, pd.DataFrame | Callable[[], pd.DataFrame]] = field(default_factory=dict)
    dataset: str = "mnist"
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    # test images each experiment was scored on (absent: no test-set sampling floor)
    test_images: Mapping[str, int] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # shared by reweightings

    def summary(self, key: str) -> pd.DataFrame | None:
        return self.summaries.get(key)

    def long(self, key: str) -> pd.DataFrame | None:
        """The long metrics DataFrame of ``key`` (loaded once on first use)."""
        if ("long", key) not in self._cache:
            src = self.metrics.get(key)
            if src is None:
                return None
            self._cache[("long", key)] = src() if callable(src) else src
        return self._cache[("long", key)]

    def seeds(self, key: str) -> tuple[int, ...]:
        """The trials (seeds) stored for ``key``, sorted."""
        s = self.summary(key)
        if s is None or s.empty:
            return ()
        return tuple(sorted(int(x) for x in s["seed"].unique())) if "seed" in s else (0,)

    def trial_weights(self, key: str) -> np.ndarray:
        w = self.weights.get(key)
        return np.ones((1, max(len(self.seeds(key)), 1))) if w is None else w

    def reweighted(self, weights: Mapping[str, np.ndarray]) -> Evidence:
        """The same evidence with other trial weights (the tables' cache is shared)."""
        return replace(self, weights=dict(weights))

    def table(self, key: str, metric: str, variant: str) -> tuple[pd.Series, np.ndarray]:
        """Per level of ``variant``: mean Pm (Series indexed by level, Pm descending) and the
        per-trial mean of ``metric`` over replicates, shape (levels, trials)."""
        ck = ("table", key, metric, variant)
        if ck not in self._cache:
            s = self.summary(key)
            if s is None or s.empty or metric not in s:
                self._cache[ck] = (pd.Series(dtype=float), np.empty((0, 0)))
            else:
                rows = s[s["variant"] == variant]
                if "seed" not in rows:
                    rows = rows.assign(seed=0)
                pm = rows.groupby("level")["pm"].mean().sort_values(ascending=False)
                per = rows.groupby(["level", "seed"])[metric].mean().unstack("seed")
                per = per.reindex(index=pm.index, columns=list(self.seeds(key)))
                self._cache[ck] = (pm, per.to_numpy(dtype=float))
        return self._cache[ck]

    def curves(self, key: str, level: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ticket test-accuracy curves at ``level``: iterations and per-trial values,
        shape (iterations, trials)."""
        ck = ("curves", key, level)
        if ck not in self._cache:
            m = self.long(key)
            t = m[(m["variant"] == "ticket") & (m["level"] == level)]
            if "seed" not in t:
                t = t.assign(seed=0)
            per = t.groupby(["iteration", "seed"])["test_acc"].mean().unstack("seed")
            per = per.reindex(columns=list(self.seeds(key))).sort_index()
            self._cache[ck] = (per.index.to_numpy(), per.to_numpy(dtype=float))
        return self._cache[ck]


def level_values(ev: Evidence, need: Need, metric: str, variant: str = "ticket"
                 ) -> tuple[pd.Series, np.ndarray]:
    """Per level of ``variant``: Pm (descending) and the trial-weighted mean of ``metric``,
    shape (levels, k)."""
    key = need_key(need)
    pm, per = ev.table(key, metric, variant)
    if pm.empty:
        return pm, np.empty((0, 1))
    return pm, weighted_mean(per, ev.trial_weights(key))


def value_at(ev: Evidence, need: Need, metric: str, pm: float, variant: str = "ticket",
             rel: float = PM_REL_TOL) -> Values | None:
    """Trial-weighted mean ``metric`` of ``variant`` at the stored level nearest ``pm``."""
    pms, vals = level_values(ev, need, metric, variant)
    lvl = nearest_level(pms, pm, rel)
    return None if lvl is None else vals[pms.index.get_loc(lvl)]


def in_range(pms: pd.Series, hi: float, lo: float, slack: float = RANGE_SLACK) -> np.ndarray:
    """Boolean mask of the levels with ``hi >= Pm >= lo`` (each bound widened by ``slack``)."""
    return ((pms <= hi * (1 + slack)) & (pms >= lo * (1 - slack))).to_numpy()


def per_trial(need: Need, fn: Callable[[pd.DataFrame], float]
              ) -> Callable[[Evidence], Values | None]:
    """A claim value computed trial by trial: ``fn`` maps one trial's summary rows to a
    number; the claim's value is the trial-weighted mean of those numbers."""
    def compute(ev: Evidence) -> Values | None:
        key = need_key(need)
        s = ev.summary(key)
        if s is None or s.empty:
            return None
        seeds = ev.seeds(key)
        per = np.array([fn(s[s["seed"] == sd]) if "seed" in s else fn(s) for sd in seeds],
                       dtype=float)
        return weighted_mean(per, ev.trial_weights(key))
    return compute


def difference(a: Values | None, b: Values | None, scale: float = 1.0) -> Values | None:
    """``scale * (a - b)``, None when either side is missing."""
    return None if a is None or b is None else scale * (a - b)


def quotient(a: Values | None, b: Values | None) -> Values | None:
    """``a / b`` (NaN where b is 0), None when either side is missing."""
    if a is None or b is None:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


# --- measurements used by several claims -----------------------------------------------------

ES, ES_ACC, ES_TRAIN = "early_stop_iteration", "early_stop_test_acc", "early_stop_train_acc"
FINAL_ACC, FINAL_TRAIN = "final_test_acc", "final_train_acc"
IMP, ONESHOT = ("imp", "lenet"), ("oneshot", "lenet")
FIG8: Mapping[str, Need] = MappingProxyType(
    {s: ("global-imp", "resnet18", s) for s in ("lr0.1", "lr0.01", "lr0.03-warmup")})


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
                  scale: float = 100.0, flip: bool = False
                  ) -> Callable[[Evidence], LevelValues | None]:
    """Per pruned ticket level with ``hi >= Pm >= lo``: the ticket minus ``against`` (a
    variant at the same level, or "dense"), times ``scale``; ``flip`` takes ``against``
    minus the ticket (for iterations, where lower is better). Levels lacking the other
    side are dropped."""
    def compute(ev: Evidence) -> LevelValues | None:
        pms, vals = level_values(ev, need, metric)
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


def best_ticket(need: Need, metric: str, hi: float, lo: float, scale: float = 100.0
                ) -> Callable[[Evidence], Values | None]:
    """The best level mean of the tickets with ``hi >= Pm >= lo``."""
    def compute(ev: Evidence) -> Values | None:
        pms, vals = level_values(ev, need, metric)
        keep = in_range(pms, hi, lo)
        return scale * np.nanmax(vals[keep], axis=0) if keep.any() else None
    return compute


def worst_level(need: Need, metric: str, pm_min: float, variants: tuple[str, ...] = ("ticket",),
                scale: float = 100.0) -> Callable[[Evidence], Values | None]:
    """The smallest level mean of ``metric`` over levels of ``variants`` with Pm >= ``pm_min``."""
    def compute(ev: Evidence) -> Values | None:
        parts = [vals[(pms >= pm_min).to_numpy()] for v in variants
                 for pms, vals in [level_values(ev, need, metric, v)] if len(pms)]
        parts = [p for p in parts if len(p)]
        return scale * np.nanmin(np.concatenate(parts), axis=0) if parts else None
    return compute


def rank_corr_random(need: Need, metric: str) -> Callable[[Evidence], Values | None]:
    """Spearman correlation of Pm with the random sparse networks' level means of
    ``metric`` (the dense network included as Pm 100%); needs 3 levels."""
    def compute(ev: Evidence) -> Values | None:
        pms, vals = level_values(ev, need, metric, "random")
        pms = list(pms)
        dense = value_at(ev, need, metric, 1.0)
        if dense is not None and not any(p >= 1.0 for p in pms):
            pms, vals = pms + [1.0], np.vstack([vals, dense[None, :]])
        return spearman(np.array(pms), vals) if len(pms) >= 3 else None
    return compute


def iterative_vs_oneshot(metric: str, better: str, pm_max: float = 0.10
                         ) -> Callable[[Evidence], LevelValues | None]:
    """Per one-shot level with Pm <= ``pm_max``: how much better the iterative ticket at the
    nearest iterative level is (one-shot minus iterative for ``better="lower"``, iterations;
    iterative minus one-shot in pp for "higher"). The same seeds run both experiments, so
    the bootstrap pairs them."""
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
def _curve(ev: Evidence, pm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Iterations and the trial-weighted mean ticket curve at ``pm``, shape (its, k)."""
    key = need_key(IMP)
    m = ev.long(key)
    if m is None or m.empty:
        return None
    t = m[m["variant"] == "ticket"]
    lvl = nearest_level(t.groupby("level")["pm"].mean(), pm)
    if lvl is None:
        return None
    its, per = ev.curves(key, lvl)
    return its, weighted_mean(per, ev.trial_weights(key))


def learning_advantage(ev: Evidence, pm: float) -> Values | None:
    """Mean test-accuracy lead (pp) of the ticket at ``pm`` over the dense network during
    the dense network's learning phase (evaluations 0 < iteration <= its early stop)."""
    c, d = _curve(ev, pm), _curve(ev, 1.0)
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


def peak_gain(ev: Evidence, pm: float) -> Values | None:
    """Peak of the ticket's mean test-accuracy curve minus the dense network's peak, pp."""
    c, d = _curve(ev, pm), _curve(ev, 1.0)
    return None if c is None or d is None else 100 * (np.nanmax(c[1], axis=0)
                                                      - np.nanmax(d[1], axis=0))


PP, IT = "pp", "iterations"  # units printed in rules

Sampling = Callable[[Evidence, int], float | None]  # (evidence, trials) -> standard error


def sampling_floor(needs: Sequence[Need], networks: int = 2,
                   levels: tuple[float, float] | None = None, scale: float = 100.0
                   ) -> Sampling:
    """The standard error that the test set's sampling alone puts on a claim's number (in
    pp with the default ``scale``): ``networks`` final test accuracies per trial (1 for an
    accuracy, 2 for a gap between two networks), averaged over the trials and, with
    ``levels`` (hi, lo), over the pruned levels of ``needs[0]`` in that Pm range. None when
    an experiment's test-set size is unknown."""
    def se(ev: Evidence, trials: int) -> float | None:
        keys = [need_key(n) for n in needs]
        images = [ev.test_images.get(k) for k in keys]
        sums = [ev.summary(k) for k in keys]
        if not all(images) or any(s is None or FINAL_ACC not in s for s in sums):
            return None
        acc = float(np.mean([s[FINAL_ACC].mean() for s in sums]))
        cells = max(trials, 1)
        if levels is not None:
            pms = ev.table(keys[0], FINAL_ACC, "ticket")[0]
            cells *= max(int((in_range(pms, *levels) & (pms < 1.0).to_numpy()).sum()), 1)
        return scale * sampling_se(acc, min(images), networks, cells)
    return se


def trial_values(ev: Evidence, need: Need, metric: str, pm: float,
                 variants: Sequence[str] = ("ticket", "reinit")) -> pd.DataFrame:
    """One row per trial (seed): ``metric`` of each variant at the stored level nearest
    ``pm`` (mean over replicates). These rows are what the bootstrap draws."""
    key = need_key(need)
    cols = {}
    for v in variants:
        pms, per = ev.table(key, metric, v)
        lvl = nearest_level(pms, pm)  # as value_at finds it
        if lvl is not None:
            cols[v] = per[pms.index.get_loc(lvl)]
    return pd.DataFrame(cols, index=pd.Index(ev.seeds(key), name="seed"))

"""The evidence a claim is measured on: stored summaries and curves by experiment, each trial
with a weight, and the measurements the claims ledger is built from (:mod:`lthlib.report.claims.paper_claims`).

Every measurement returns one value per row of the trial weights: all-ones weights give the
claim's number over all trials, leave-one-out weights the recomputations its jackknife
interval is built from (:mod:`lthlib.report.claims.intervals`). Means are over trials of per-trial means over replicates,
so a level stored with one re-initialisation per trial and one with three weigh trials
alike.

Pm levels are looked up as the nearest stored level within a relative tolerance of
:data:`PM_REL_TOL` (15%): our one-shot targets and the paper's plotted points differ
slightly, and a level further away than that is a different network, so the claim is "not
run" rather than measured at the wrong point. A claimed range of Pm ("67.5% >= Pm >=
17.6%") is applied as printed (up to the rounding of its bounds, :data:`RANGE_SLACK`), so no
level judged lies outside the range a claim names. Accuracy differences are in percentage points.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from lthlib.config.paper import check_choice
from lthlib.report.analysis import PM_REL_TOL, nearest_level
from lthlib.report.claims.intervals import sampling_se, weighted_mean

TEST_IMAGES = 10_000  # MNIST, FashionMNIST and CIFAR-10 all hold out 10,000 test images
# Pm ranges ("67.5% >= Pm >= 17.6%") are applied as the claim prints them, up to that print's
# rounding: half a unit of the bound's third significant digit (0.5%), so the level printed
# as the bound (11.8%) is inside and none beyond it (16.8% for 17.6%) is
RANGE_SLACK = 0.005

Need = tuple[str, ...]  # (experiment, arch) or (experiment, arch, lr setting)
Values = np.ndarray  # one value per row of the trial weights, shape (k,)


@dataclass(frozen=True)
class LevelValues:
    """A per-level quantity: Pm of each level and its values, shape (levels, k); ``labels``
    name a level where Pm alone does not (two variants at one Pm)."""

    pms: tuple[float, ...]
    values: np.ndarray
    labels: tuple[str, ...] | None = None

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
    leave-one-out recomputation (absent: one row of ones, i.e. every trial once)."""

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

    def curves(self, key: str, level: Any, variant: str = "ticket"
               ) -> tuple[np.ndarray, np.ndarray]:
        """Test-accuracy curves of ``variant`` at ``level``: iterations and per-trial
        values, shape (iterations, trials)."""
        ck = ("curves", key, level, variant)
        if ck not in self._cache:
            m = self.long(key)
            t = m[(m["variant"] == variant) & (m["level"] == level)]
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


PP, IT = "pp", "iterations"  # units printed in rules

@dataclass(frozen=True)
class SamplingFloor:
    """The standard error that the test set's sampling alone puts on a claim's number (in
    pp with the default ``scale``): ``networks`` final test accuracies per trial (1 for an
    accuracy, 2 for a gap between two networks, 4 for a difference of two gaps), averaged
    over the trials and, with ``levels`` (hi, lo), over the pruned levels of ``needs[0]`` in
    that Pm range: sqrt(k p (1 - p) / (N c)) for k networks at mean accuracy p on N test
    images, c cells averaged. None when an experiment's test-set size is unknown."""

    needs: tuple[Need, ...]
    networks: int = 2
    levels: tuple[float, float] | None = None
    scale: float = 100.0

    def terms(self, ev: Evidence, trials: int) -> tuple[float, int, int] | None:
        """(p, N, c) of the formula, or None."""
        keys = [need_key(n) for n in self.needs]
        images = [ev.test_images.get(k) for k in keys]
        sums = [ev.summary(k) for k in keys]
        if not all(images) or any(s is None or FINAL_ACC not in s for s in sums):
            return None
        acc = float(np.mean([s[FINAL_ACC].mean() for s in sums]))
        cells = max(trials, 1)
        if self.levels is not None:
            pms = ev.table(keys[0], FINAL_ACC, "ticket")[0]
            cells *= max(int((in_range(pms, *self.levels) & (pms < 1.0).to_numpy()).sum()), 1)
        return acc, int(min(images)), cells

    def __call__(self, ev: Evidence, trials: int) -> float | None:
        t = self.terms(ev, trials)
        return None if t is None else self.scale * sampling_se(t[0], t[1], self.networks, t[2])

    def formula(self, ev: Evidence, trials: int) -> str:
        """The floor's formula with this claim's numbers, for the rule column."""
        t = self.terms(ev, trials)
        if t is None:
            return ""
        return (f"√(k p(1−p)/(N c)) with k = {self.networks} networks, p = {t[0]:.3f}, "
                f"N = {t[1]:,} test images, c = {t[2]} cells averaged")


Sampling = SamplingFloor


def sampling_floor(needs: Sequence[Need], networks: int = 2,
                   levels: tuple[float, float] | None = None, scale: float = 100.0
                   ) -> SamplingFloor:
    """A :class:`SamplingFloor` for ``needs``."""
    return SamplingFloor(tuple(needs), networks, levels, scale)


def network_se(needs: Sequence[Need], metric: str = FINAL_ACC, scale: float = 100.0
               ) -> Callable[[Evidence], float | None]:
    """One network's test-set sampling error (pp with the default ``scale``) on the
    evidence's dataset: sqrt(p (1 - p) / N) at the mean ``metric`` p of the dense networks
    of ``needs`` on N test images; None when the test-set size is unknown."""
    def se(ev: Evidence) -> float | None:
        accs, images = [], []
        for n in needs:
            key = need_key(n)
            v = value_at(ev, n, metric, 1.0) if ev.summary(key) is not None else None
            if v is None or not ev.test_images.get(key):
                return None
            accs.append(float(v[0]))
            images.append(int(ev.test_images[key]))
        acc = float(np.mean(accs))
        return scale * sampling_se(acc, min(images), 1, 1) if 0 <= acc <= 1 else None
    return se


def contrast(a: Callable[[Evidence], Values | None], b: Callable[[Evidence], Values | None]
             ) -> Callable[[Evidence], Values | None]:
    """``a`` minus ``b`` computed on the same trial weights: paired by seed when both
    settings hold the same seeds (the judge then draws them together)."""
    return lambda ev: difference(a(ev), b(ev))


def trial_values(ev: Evidence, need: Need, metric: str, pm: float,
                 variants: Sequence[str] = ("ticket", "reinit")) -> pd.DataFrame:
    """One row per trial (seed): ``metric`` of each variant at the stored level nearest
    ``pm`` (mean over replicates). The interval leaves these rows out one at a time."""
    key = need_key(need)
    cols = {}
    for v in variants:
        pms, per = ev.table(key, metric, v)
        lvl = nearest_level(pms, pm)  # as value_at finds it
        if lvl is not None:
            cols[v] = per[pms.index.get_loc(lvl)]
    return pd.DataFrame(cols, index=pd.Index(ev.seeds(key), name="seed"))

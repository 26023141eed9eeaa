"""The claims ledger: every numeric claim of the paper's Figures 1, 3, 4a, 4b/12, 4c and 8 as
data, with the function that measures it on our results and the rule that turns the
measurement into a verdict. No verdict is typed by hand: :func:`evaluate_claims` computes
each one from the ``runs/`` store, and :func:`write_claims_csv` writes ``runs/claims.csv``.

Verdicts are ``reproduced``, ``partly``, ``not reproduced`` and ``not run`` (the experiment,
the Pm level, or the dataset a claim needs is missing). Pm levels are looked up as the
nearest stored level within a relative tolerance of :data:`PM_REL_TOL` (15%): our one-shot
targets and the paper's plotted points differ slightly, and a level further away than that
is a different network, so the claim is "not run" rather than measured at the wrong point.

Numbers are means over every stored network of a point (trials x re-initialisations), as the
paper's plots are; accuracy differences are in percentage points (pp).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import (PROFILE_ORDER, PROFILES, ExperimentConfig, check_choice,
                     experiment_from_dict)
from .store import RunStore, atomic_write_text, df_to_csv_text, resolve_runs_dir

VERDICTS = ("reproduced", "partly", "not reproduced", "not run")
CSV_COLUMNS = ("claim", "statement", "paper", "ours", "verdict", "profile", "trials", "dataset",
               "levels")
PM_REL_TOL = 0.15  # nearest stored Pm level must lie within 15% (relative) of the asked one
RANGE_SLACK = 0.05  # Pm ranges ("67.5% >= Pm >= 17.6%") are widened by 5% at both ends

Need = tuple[str, ...]  # (experiment, arch) or (experiment, arch, lr setting)
Number = float | None


# --- verdict rules: (ours, target, tolerance) -> verdict ------------------------------------

def at_least(ours: float, target: float, tol: float) -> str:
    """Reproduced if ours >= target; partly if ours >= target - tol; else not reproduced."""
    return "reproduced" if ours >= target else "partly" if ours >= target - tol \
        else "not reproduced"


def at_most(ours: float, target: float, tol: float) -> str:
    """Reproduced if ours <= target; partly if ours <= target + tol; else not reproduced."""
    return "reproduced" if ours <= target else "partly" if ours <= target + tol \
        else "not reproduced"


def near(ours: float, target: float, tol: float) -> str:
    """Reproduced if |ours - target| <= tol; partly if <= 2 tol; else not reproduced."""
    gap = abs(ours - target)
    return "reproduced" if gap <= tol else "partly" if gap <= 2 * tol else "not reproduced"


def near_same_sign(ours: float, target: float, tol: float) -> str:
    """Reproduced if |ours - target| <= tol; partly if the effect has the paper's sign but
    another size; else not reproduced (for "X% earlier", "+0.5 pp" style claims)."""
    if abs(ours - target) <= tol:
        return "reproduced"
    return "partly" if ours * target > 0 else "not reproduced"


def ratio_near(ours: float, target: float, tol: float) -> str:
    """Reproduced if ours is within a factor (1 + tol) of target; partly if it is on the same
    side of 1 as target (the effect exists, with another size); else not reproduced."""
    if ours > 0 and abs(math.log(ours / target)) <= math.log1p(tol):
        return "reproduced"
    return "partly" if (ours - 1) * (target - 1) > 0 else "not reproduced"


def share(ours: float, target: float, tol: float) -> str:
    """``ours`` is the share of Pm levels where the claimed ordering holds: reproduced if
    ours >= target - tol; partly if ours >= 0.5 (it holds at most levels); else not."""
    return "reproduced" if ours >= target - tol else "partly" if ours >= 0.5 \
        else "not reproduced"


RULE_TEXT: dict[Callable[..., str], str] = {
    at_least: "reproduced if ours >= {t:g}; partly if >= {lo:g}",
    at_most: "reproduced if ours <= {t:g}; partly if <= {hi:g}",
    near: "reproduced if |ours - {t:g}| <= {tol:g}; partly if <= {tol2:g}",
    near_same_sign: "reproduced if |ours - {t:g}| <= {tol:g}; partly if same sign as {t:g}",
    ratio_near: "reproduced if ours is within a factor {f:g} of {t:g}; partly if on the "
                "same side of 1",
    share: "reproduced if share >= {lo:g}; partly if >= 0.5",
}


@dataclass(frozen=True)
class Claim:
    """One numeric claim: what the paper says and how we measure and judge it."""

    id: str
    figure: str
    statement: str
    paper: str  # the paper's value as printed in the ledger
    needs: tuple[Need, ...]
    compute: Callable[[Evidence], Number]  # our number, None when a level is missing
    tolerance: float
    rule: Callable[[float, float, float], str]
    target: float = 0.0  # the paper's value as a number (the rule's threshold)
    datasets: tuple[str, ...] | None = None  # None: any dataset; else only these
    reaches: float | None = None  # smallest Pm the statement covers (judged on needs[0])

    def verdict(self, ours: Number) -> str:
        """The rule applied to ``ours``; "not run" when ours is missing or not finite."""
        if ours is None or not math.isfinite(ours):
            return "not run"
        return self.rule(float(ours), self.target, self.tolerance)

    def criterion(self) -> str:
        """The verdict rule in words, with this claim's numbers filled in."""
        t, tol = self.target, self.tolerance
        text = RULE_TEXT[self.rule].format(t=t, tol=tol, tol2=2 * tol, lo=t - tol, hi=t + tol,
                                           f=1 + tol)
        if self.reaches is not None:
            text += (f"; at most partly while the stored tickets stop short of Pm "
                     f"{100 * self.reaches:.3g}% by more than one 20% round")
        return text


# --- the evidence a claim is computed from ---------------------------------------------------

def need_key(need: Need) -> str:
    """``("global-imp", "resnet18", "lr0.1") -> "global-imp/resnet18/lr0.1"``."""
    return "/".join(need)


@dataclass
class Evidence:
    """Summaries (and, lazily, long metrics) of the experiments a claim needs, by need key."""

    summaries: Mapping[str, pd.DataFrame]
    metrics: Mapping[str, pd.DataFrame | Callable[[], pd.DataFrame]] = field(default_factory=dict)
    dataset: str = "mnist"
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def summary(self, key: str) -> pd.DataFrame | None:
        return self.summaries.get(key)

    def long(self, key: str) -> pd.DataFrame | None:
        """The long metrics DataFrame of ``key`` (loaded once on first use)."""
        if key not in self._cache:
            src = self.metrics.get(key)
            if src is None:
                return None
            self._cache[key] = src() if callable(src) else src
        return self._cache[key]


def nearest_level(levels: pd.Series, pm: float, rel: float = PM_REL_TOL) -> Any:
    """Index label of ``levels`` (a Pm Series) nearest to ``pm``, or None beyond ``rel``."""
    if levels.empty:
        return None
    dist = (levels - pm).abs() / pm
    best = dist.idxmin()
    return best if dist[best] <= rel else None


def level_means(summary: pd.DataFrame | None, metric: str, variant: str = "ticket"
                ) -> pd.DataFrame:
    """Per level of ``variant``: mean Pm and mean ``metric``, sorted by Pm (descending)."""
    if summary is None or summary.empty or metric not in summary:
        return pd.DataFrame(columns=["pm", "value"])
    rows = summary[summary["variant"] == variant]
    out = rows.groupby("level").agg(pm=("pm", "mean"), value=(metric, "mean"))
    return out.sort_values("pm", ascending=False)


def value_at(summary: pd.DataFrame | None, metric: str, pm: float, variant: str = "ticket",
             rel: float = PM_REL_TOL) -> Number:
    """Mean ``metric`` of ``variant`` at the stored level nearest ``pm`` (None if none)."""
    means = level_means(summary, metric, variant)
    lvl = nearest_level(means["pm"], pm, rel)
    return None if lvl is None else float(means.loc[lvl, "value"])


def in_range(means: pd.DataFrame, hi: float, lo: float, slack: float = RANGE_SLACK
             ) -> pd.DataFrame:
    """Rows of ``means`` with ``hi >= Pm >= lo`` (each bound widened by ``slack``)."""
    return means[(means["pm"] <= hi * (1 + slack)) & (means["pm"] >= lo * (1 - slack))]


def _sub(a: Number, b: Number, scale: float = 1.0) -> Number:
    return None if a is None or b is None else scale * (a - b)


def _ratio(a: Number, b: Number) -> Number:
    return None if a is None or b is None or b == 0 else a / b


def _rank_corr(x: Sequence[float], y: Sequence[float]) -> Number:
    """Spearman rank correlation (no scipy): Pearson correlation of the ranks; 0 (no trend)
    when either side is constant; None with fewer than 3 points."""
    if len(x) < 3:
        return None
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _share(flags: Sequence[bool]) -> Number:
    return None if len(flags) == 0 else float(np.mean(flags))


# --- measurements used by several claims -----------------------------------------------------

ES, ES_ACC, ES_TRAIN = "early_stop_iteration", "early_stop_test_acc", "early_stop_train_acc"
FINAL_ACC, FINAL_TRAIN = "final_test_acc", "final_train_acc"
IMP, ONESHOT = ("imp", "lenet"), ("oneshot", "lenet")
FIG8 = {s: ("global-imp", "resnet18", s) for s in ("lr0.1", "lr0.01", "lr0.03-warmup")}


def _s(ev: Evidence, need: Need) -> pd.DataFrame | None:
    return ev.summary(need_key(need))


def ticket_vs_dense(need: Need, metric: str, pm: float, variant: str = "ticket",
                    scale: float = 1.0) -> Callable[[Evidence], Number]:
    """``variant`` at ``pm`` minus the dense network (level 0 ticket), times ``scale``."""
    return lambda ev: _sub(value_at(_s(ev, need), metric, pm, variant),
                           value_at(_s(ev, need), metric, 1.0), scale)


def ratio_to_dense(need: Need, metric: str, pm: float, variant: str = "ticket"
                   ) -> Callable[[Evidence], Number]:
    return lambda ev: _ratio(value_at(_s(ev, need), metric, pm, variant),
                             value_at(_s(ev, need), metric, 1.0))


def shares_vs(need: Need, metric: str, hi: float, lo: float, better: str,
              against: str = "dense") -> Callable[[Evidence], Number]:
    """Share of ticket levels in [lo, hi] beating ``against`` ("dense" or a variant) on
    ``metric``; ``better`` is "lower" (iterations) or "higher" (accuracy)."""
    def compute(ev: Evidence) -> Number:
        s = _s(ev, need)
        means = in_range(level_means(s, metric), hi, lo)
        means = means[means["pm"] < 1.0]
        flags = []
        for pm, val in zip(means["pm"], means["value"]):
            ref = value_at(s, metric, 1.0) if against == "dense" else \
                value_at(s, metric, pm, against, rel=0.01)
            if ref is not None:
                flags.append(val < ref if better == "lower" else val > ref)
        return _share(flags)
    return compute


def gap_vs(need: Need, metric: str, hi: float, lo: float, how: str = "mean",
           against: str = "reinit") -> Callable[[Evidence], Number]:
    """Ticket minus ``against`` (a variant at the same level, or "dense") in pp over the
    pruned levels in [lo, hi], reduced by ``how`` ("mean", "min" or "max")."""
    def compute(ev: Evidence) -> Number:
        s = _s(ev, need)
        means = in_range(level_means(s, metric), hi, lo)
        gaps = [_sub(v, value_at(s, metric, 1.0) if against == "dense"
                     else value_at(s, metric, pm, against, rel=0.01), 100.0)
                for pm, v in zip(means["pm"], means["value"]) if pm < 1.0]
        gaps = [g for g in gaps if g is not None]
        return float(getattr(np, how)(gaps)) if gaps else None
    return compute


def variant_gap(need: Need, metric: str, pm: float, a: str = "ticket", b: str = "reinit"
                ) -> Callable[[Evidence], Number]:
    """``a`` minus ``b`` at the level nearest ``pm``, in pp."""
    return lambda ev: _sub(value_at(_s(ev, need), metric, pm, a),
                           value_at(_s(ev, need), metric, pm, b), 100.0)


def pct_at(need: Need, metric: str, pm: float) -> Callable[[Evidence], Number]:
    """The ticket's mean ``metric`` at ``pm``, in percent."""
    return lambda ev: _sub(value_at(_s(ev, need), metric, pm), 0.0, 100.0)


def best_ticket(need: Need, metric: str, hi: float, lo: float, scale: float = 100.0
                ) -> Callable[[Evidence], Number]:
    def compute(ev: Evidence) -> Number:
        means = in_range(level_means(_s(ev, need), metric), hi, lo)
        return float(scale * means["value"].max()) if len(means) else None
    return compute


def worst_level(need: Need, metric: str, pm_min: float, variants: tuple[str, ...] = ("ticket",),
                scale: float = 100.0) -> Callable[[Evidence], Number]:
    """The smallest mean ``metric`` over levels of ``variants`` with Pm >= ``pm_min``."""
    def compute(ev: Evidence) -> Number:
        vals = [m.loc[m["pm"] >= pm_min, "value"] for v in variants
                for m in [level_means(_s(ev, need), metric, v)]]
        vals = pd.concat(vals) if vals else pd.Series(dtype=float)
        return float(scale * vals.min()) if len(vals) else None
    return compute


def rank_corr_random(need: Need, metric: str) -> Callable[[Evidence], Number]:
    """Rank correlation of Pm with ``metric`` for random sparse networks (dense included)."""
    def compute(ev: Evidence) -> Number:
        s = _s(ev, need)
        means = level_means(s, metric, "random")
        dense = value_at(s, metric, 1.0)
        pms, vals = list(means["pm"]), list(means["value"])
        if dense is not None and not any(p >= 1.0 for p in pms):
            pms, vals = pms + [1.0], vals + [dense]
        return _rank_corr(pms, vals)
    return compute


def iterative_vs_oneshot(metric: str, better: str, pm_max: float = 0.10
                         ) -> Callable[[Evidence], Number]:
    """Share of one-shot levels with Pm <= ``pm_max`` where the iterative ticket at the
    nearest iterative level is better (lower iterations / higher accuracy)."""
    def compute(ev: Evidence) -> Number:
        one = level_means(_s(ev, ONESHOT), metric)
        it = _s(ev, IMP)
        flags = []
        for pm, val in zip(one["pm"], one["value"]):
            other = value_at(it, metric, pm) if pm <= pm_max * (1 + RANGE_SLACK) else None
            if other is not None:
                flags.append(other < val if better == "lower" else other > val)
        return _share(flags)
    return compute


# Figure 3: test-accuracy curves of iterative tickets.
def _curve(ev: Evidence, pm: float) -> pd.Series | None:
    m = ev.long(need_key(IMP))
    if m is None or m.empty:
        return None
    t = m[m["variant"] == "ticket"]
    lvl = nearest_level(t.groupby("level")["pm"].mean(), pm)
    return None if lvl is None else t[t["level"] == lvl].groupby("iteration")["test_acc"].mean()


def learning_advantage(ev: Evidence, pm: float) -> Number:
    """Mean test-accuracy lead (pp) of the ticket at ``pm`` over the dense network during
    the dense network's learning phase (evaluations 0 < iteration <= its early stop)."""
    c, d = _curve(ev, pm), _curve(ev, 1.0)
    stop = value_at(_s(ev, IMP), ES, 1.0)
    if c is None or d is None or stop is None:
        return None
    idx = d.index[(d.index > 0) & (d.index <= stop)].intersection(c.index)
    return float(100 * (c[idx] - d[idx]).mean()) if len(idx) else None


def peak_gain(ev: Evidence, pm: float) -> Number:
    """Peak of the ticket's mean test-accuracy curve minus the dense network's peak, pp."""
    c, d = _curve(ev, pm), _curve(ev, 1.0)
    return None if c is None or d is None else float(100 * (c.max() - d.max()))


def _c(id: str, figure: str, statement: str, paper: str, needs: tuple[Need, ...],
       compute: Callable[[Evidence], Number], rule: Callable[..., str], target: float,
       tolerance: float, datasets: tuple[str, ...] | None = None,
       reaches: float | None = None) -> Claim:
    return Claim(id, figure, statement, paper, needs, compute, tolerance, rule, target,
                 datasets, reaches)


# --- the ledger ------------------------------------------------------------------------------

CLAIMS: tuple[Claim, ...] = (
    # Figure 1: one-shot tickets against randomly sampled sparse networks.
    _c("fig1-random-slower-when-sparser", "1",
       "Random sparse networks reach early stop later the sparser they are "
       "(rank correlation of Pm with early-stop iteration).", "-1 (monotone)", (ONESHOT,),
       rank_corr_random(ONESHOT, ES), at_most, -0.5, 0.45),
    _c("fig1-random-less-accurate-when-sparser", "1",
       "Random sparse networks lose test accuracy the sparser they are "
       "(rank correlation of Pm with test accuracy at early stop).", "+1 (monotone)",
       (ONESHOT,), rank_corr_random(ONESHOT, ES_ACC), at_least, 0.5, 0.45),
    _c("fig1-ticket-faster-than-random", "1",
       "Tickets reach early stop before random sparse networks of the same Pm "
       "(share of levels).", "all levels", (ONESHOT,),
       shares_vs(ONESHOT, ES, 1.0, 0.0, "lower", "random"), share, 1.0, 0.2),
    _c("fig1-ticket-more-accurate-than-random", "1",
       "Tickets are more accurate at early stop than random sparse networks of the same Pm "
       "(share of levels).", "all levels", (ONESHOT,),
       shares_vs(ONESHOT, ES_ACC, 1.0, 0.0, "higher", "random"), share, 1.0, 0.2),
    # Figure 3: iterative tickets' test accuracy over training.
    _c("fig3-51pct-learns-faster", "3",
       "At Pm 51.3% the ticket leads the dense network while the latter learns "
       "(mean test-accuracy lead, pp).", "> 0 pp", (IMP,),
       lambda ev: learning_advantage(ev, 0.513), at_least, 0.0, 0.1),
    _c("fig3-51pct-higher-accuracy", "3",
       "At Pm 51.3% the ticket's peak test accuracy beats the dense network's (pp).",
       "> 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.513), at_least, 0.0, 0.1),
    _c("fig3-21pct-faster-still", "3",
       "At Pm 21.1% the ticket learns faster still: its lead over the dense network exceeds "
       "the 51.3% ticket's (pp).", "> 0 pp", (IMP,),
       lambda ev: _sub(learning_advantage(ev, 0.211), learning_advantage(ev, 0.513)),
       at_least, 0.0, 0.1),
    _c("fig3-below-21pct-slows", "3",
       "Below 21.1% learning slows: the 7.0% ticket's lead is smaller than the 21.1% "
       "ticket's (pp).", "> 0 pp", (IMP,),
       lambda ev: _sub(learning_advantage(ev, 0.211), learning_advantage(ev, 0.07)),
       at_least, 0.0, 0.1),
    _c("fig3-3.6pct-regresses-to-dense", "3",
       "At Pm 3.6% the ticket's peak test accuracy is back at the dense network's (pp).",
       "≈ 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.036), near, 0.0, 0.3),
    # Figure 4a: iterative pruning, early stop.
    _c("fig4a-early-stop-38pct-earlier", "4a",
       "At Pm 21.1% tickets reach early stop 38% earlier than the dense network "
       "(1 - ES(21.1%) / ES(100%)).", "0.38", (IMP,),
       lambda ev: _sub(1.0, ratio_to_dense(IMP, ES, 0.211)(ev)), near_same_sign, 0.38, 0.15),
    _c("fig4a-early-stop-back-at-3.6pct", "4a",
       "At Pm 3.6% tickets' early stop is back at the dense network's (ES(3.6%) / ES(100%)).",
       "≈ 1.0", (IMP,), ratio_to_dense(IMP, ES, 0.036), near, 1.0, 0.25),
    _c("fig4a-test-acc-gain-13.5pct", "4a",
       "At Pm 13.5% tickets' test accuracy at early stop beats the dense network's by more "
       "than 0.3 pp.", "> 0.3 pp", (IMP,), ticket_vs_dense(IMP, ES_ACC, 0.135, scale=100),
       at_least, 0.3, 0.3),
    _c("fig4a-test-acc-back-at-3.6pct", "4a",
       "At Pm 3.6% tickets' test accuracy at early stop is back at the dense level (pp).",
       "≈ 0 pp", (IMP,), ticket_vs_dense(IMP, ES_ACC, 0.036, scale=100), near, 0.0, 0.3),
    _c("fig4a-ticket-holds-to-3.6pct", "4a",
       "Tickets' test accuracy at early stop does not drop below the dense network's before "
       "Pm 2.9% (worst gap over pruned levels with Pm >= 3.3%, pp).", ">= 0 pp", (IMP,),
       gap_vs(IMP, ES_ACC, 1.0, 0.033, "min", "dense"), at_least, -0.1, 0.3),
    _c("fig4a-train-acc-gain-13.5pct", "4a",
       "Training accuracy at early stop follows the test accuracy: the 13.5% ticket beats the "
       "dense network (pp).", "> 0 pp", (IMP,),
       ticket_vs_dense(IMP, ES_TRAIN, 0.135, scale=100), at_least, 0.0, 0.3),
    _c("fig4a-reinit-slower-than-dense", "4a",
       "Re-initialised networks learn slower than the dense network (ES reinit 21.1% / "
       "ES dense).", "> 1", (IMP,), ratio_to_dense(IMP, ES, 0.211, "reinit"),
       at_least, 1.0, 0.1),
    _c("fig4a-reinit-below-dense-at-21pct", "4a",
       "At Pm 21.1% re-initialised networks are less accurate at early stop than the dense "
       "network (pp).", "< 0 pp", (IMP,),
       ticket_vs_dense(IMP, ES_ACC, 0.211, "reinit", scale=100), at_most, 0.0, 0.2),
    _c("fig4a-ticket-2.51x-faster-than-reinit", "4a",
       "At Pm 21.1% tickets reach minimum validation loss 2.51x faster than when "
       "re-initialised (ES reinit / ES ticket).", "2.51x", (IMP,),
       lambda ev: _ratio(value_at(_s(ev, IMP), ES, 0.211, "reinit"),
                         value_at(_s(ev, IMP), ES, 0.211)), ratio_near, 2.51, 0.5),
    _c("fig4a-ticket-0.5pp-more-accurate-than-reinit", "4a",
       "At Pm 21.1% tickets are 0.5 pp more accurate at early stop than re-initialised ones.",
       "+0.5 pp", (IMP,), variant_gap(IMP, ES_ACC, 0.211), near_same_sign, 0.5, 0.3),
    # Figure 4b / 12: end of training.
    _c("fig4b-final-acc-gain-up-to-0.35pp", "4b",
       "At the end of training iterative tickets still beat the dense network's test "
       "accuracy, by up to 0.35 pp (best pruned level, pp).", "+0.35 pp", (IMP,),
       gap_vs(IMP, FINAL_ACC, 1.0, 0.0, "max", "dense"), near_same_sign, 0.35, 0.25),
    _c("fig12-train-acc-100-pm-ge-2pct", "12",
       "Iterative tickets reach ≈100% training accuracy at the end of training for Pm >= 2% "
       "(lowest level mean, %).", "≈ 100%", (IMP,), worst_level(IMP, FINAL_TRAIN, 0.02),
       at_least, 99.5, 0.5),
    _c("fig12-all-train-acc-100-pm-ge-5pct", "12",
       "Tickets and re-initialised networks all reach ≈100% training accuracy for Pm >= 5% "
       "(lowest level mean, %).", "≈ 100%", (IMP,),
       worst_level(IMP, FINAL_TRAIN, 0.05, ("ticket", "reinit")), at_least, 99.5, 0.5),
    # Figure 4c: one-shot pruning.
    _c("fig4c-oneshot-earlier-67.5-17.6", "4c",
       "One-shot tickets reach early stop before the dense network for 67.5% >= Pm >= 17.6% "
       "(share of levels).", "all levels", (ONESHOT,),
       shares_vs(ONESHOT, ES, 0.675, 0.176, "lower"), share, 1.0, 0.2),
    _c("fig4c-oneshot-more-accurate-95-5.17", "4c",
       "One-shot tickets are more accurate at early stop than the dense network for "
       "95% >= Pm >= 5.17% (share of levels).", "all levels", (ONESHOT,),
       shares_vs(ONESHOT, ES_ACC, 0.95, 0.0517, "higher"), share, 1.0, 0.2),
    _c("fig4c-iterative-faster-at-small-pm", "4c",
       "At small sizes (Pm <= 10%) iterative tickets reach early stop before one-shot ones "
       "(share of levels).", "all levels", (IMP, ONESHOT),
       iterative_vs_oneshot(ES, "lower"), share, 1.0, 0.25),
    _c("fig4c-iterative-more-accurate-at-small-pm", "4c",
       "At small sizes (Pm <= 10%) iterative tickets are more accurate at early stop than "
       "one-shot ones (share of levels).", "all levels", (IMP, ONESHOT),
       iterative_vs_oneshot(ES_ACC, "higher"), share, 1.0, 0.25),
    # Figure 8: ResNet-18, global iterative pruning, test accuracy at the end of training.
    _c("fig8-lr0.1-dense-90.5pct", "8",
       "The unpruned ResNet-18 at lr 0.1 reaches 90.5% test accuracy (CIFAR-10 only).",
       "90.5%", (FIG8["lr0.1"],), pct_at(FIG8["lr0.1"], FINAL_ACC, 1.0),
       near, 90.5, 1.0, ("cifar10",)),
    _c("fig8-lr0.1-no-winning-tickets", "8",
       "At lr 0.1 there are no winning tickets: tickets do no better than re-initialised "
       "networks (mean gap for Pm >= 11.8%, pp).", "≈ 0 pp", (FIG8["lr0.1"],),
       gap_vs(FIG8["lr0.1"], FINAL_ACC, 0.999, 0.118), at_most, 1.0, 1.0, reaches=0.118),
    _c("fig8-lr0.01-best-ticket-89.5pct", "8",
       "At lr 0.01 the best ticket reaches 89.5% for 41.7% >= Pm >= 21.9% (CIFAR-10 only).",
       "89.5%", (FIG8["lr0.01"],), best_ticket(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219),
       near, 89.5, 1.0, ("cifar10",), reaches=0.219),
    _c("fig8-lr0.01-ticket-beats-reinit", "8",
       "At lr 0.01 tickets beat re-initialised networks for 41.7% >= Pm >= 21.9% "
       "(mean gap, pp).", "> 0 pp", (FIG8["lr0.01"],),
       gap_vs(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219), at_least, 0.5, 0.5, reaches=0.219),
    _c("fig8-lr0.01-short-of-dense-lr0.1", "8",
       "At lr 0.01 the best ticket (41.7% >= Pm >= 21.9%) stays short of the unpruned network "
       "at lr 0.1 (pp).", "-1.0 pp (89.5 vs 90.5)", (FIG8["lr0.01"], FIG8["lr0.1"]),
       lambda ev: _sub(best_ticket(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219)(ev),
                       pct_at(FIG8["lr0.1"], FINAL_ACC, 1.0)(ev)),
       at_most, 0.0, 0.3, reaches=0.219),
    _c("fig8-warmup-90.5pct-at-27.1pct", "8",
       "With warmup (lr 0.03) the ticket at Pm 27.1% reaches 90.5% (CIFAR-10 only).", "90.5%",
       (FIG8["lr0.03-warmup"],),
       pct_at(FIG8["lr0.03-warmup"], FINAL_ACC, 0.271),
       near, 90.5, 1.0, ("cifar10",)),
    _c("fig8-warmup-matches-dense-lr0.1", "8",
       "With warmup the ticket at Pm 27.1% matches the unpruned network at lr 0.1 (pp).",
       "0 pp (90.5 vs 90.5)", (FIG8["lr0.03-warmup"], FIG8["lr0.1"]),
       lambda ev: _sub(value_at(_s(ev, FIG8["lr0.03-warmup"]), FINAL_ACC, 0.271),
                       value_at(_s(ev, FIG8["lr0.1"]), FINAL_ACC, 1.0), 100.0),
       at_least, -0.3, 0.5, reaches=0.271),
    _c("fig8-warmup-winning-to-11.8pct", "8",
       "With warmup tickets still beat re-initialised networks for Pm >= 11.8% "
       "(share of levels).", "all levels", (FIG8["lr0.03-warmup"],),
       shares_vs(FIG8["lr0.03-warmup"], FINAL_ACC, 0.999, 0.118, "higher", "reinit"),
       share, 1.0, 0.2, reaches=0.118),
)


def get_claim(claim_id: str) -> Claim:
    """The claim called ``claim_id`` (ValueError naming the known ids)."""
    ids = tuple(c.id for c in CLAIMS)
    return CLAIMS[ids.index(check_choice("claim", claim_id, ids))]


def claims_table(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """The ledger's definitions for the book: id, figure, statement, paper, needs, rule."""
    return pd.DataFrame([{"claim": c.id, "figure": c.figure, "statement": c.statement,
                          "paper": c.paper, "needs": ", ".join(map(need_key, c.needs)),
                          "verdict rule": c.criterion()} for c in claims])


def assess(claim: Claim, evidence: Evidence) -> tuple[Number, str]:
    """(our number, verdict) of ``claim`` on ``evidence``; "not run" if anything is missing
    or the claim is restricted to other datasets."""
    if claim.datasets is not None and evidence.dataset not in claim.datasets:
        return None, "not run"
    if any(evidence.summary(need_key(n)) is None for n in claim.needs):
        return None, "not run"
    ours = claim.compute(evidence)
    ours = None if ours is None or not math.isfinite(ours) else float(ours)
    verdict = claim.verdict(ours)
    if verdict == "reproduced" and not reaches_depth(claim, evidence):
        verdict = "partly"  # the run stops above the sizes the statement is about
    return ours, verdict


def reaches_depth(claim: Claim, evidence: Evidence) -> bool:
    """Whether the stored tickets of the claim's first need get down to ``claim.reaches``
    (within one 20% pruning round, i.e. the deepest Pm is at most 1.25 times it)."""
    if claim.reaches is None:
        return True
    means = level_means(_s(evidence, claim.needs[0]), "pm")
    return bool(len(means)) and float(means["pm"].min()) <= 1.25 * claim.reaches


# --- reading the store -----------------------------------------------------------------------

GroupKey = tuple[str, str, str, str, str]  # experiment, arch, dataset, lr setting, profile


def store_inventory(runs_dir: str | Path | None = None) -> dict[GroupKey, ExperimentConfig]:
    """For each (experiment, arch, dataset, lr setting, profile) with finished trials, the
    multi-trial config covering them (the config variant with the most finished trials)."""
    store = RunStore(runs_dir)
    listing = store.list()
    if listing.empty or "status" not in listing:
        return {}
    groups: dict[GroupKey, dict[str, list[ExperimentConfig]]] = {}
    for rel in listing.loc[listing["status"] == "finished", "path"]:
        cfg = experiment_from_dict(json.loads((store.root / rel / "config.json").read_text()))
        key = (cfg.experiment, cfg.model.arch, cfg.data.dataset, cfg.lr_setting, cfg.profile)
        groups.setdefault(key, {}).setdefault(cfg.variant_id(), []).append(cfg)
    out = {}
    for key, variants in groups.items():
        # most trials, then most rounds; at a tie, fewer re-inits: the chapters' default
        # configs, so the ledger judges what the chapters plot (extensions are shown beside)
        cfgs = max(variants.values(),
                   key=lambda cs: (len(cs), cs[0].prune.rounds, -cs[0].reinits))
        seeds = sorted(c.seed for c in cfgs)
        out[key] = replace(cfgs[0], seed=seeds[0], trials=seeds[-1] - seeds[0] + 1)
    return out


def _group_key(need: Need, dataset: str, profile: str) -> GroupKey:
    return (need[0], need[1], dataset, need[2] if len(need) > 2 else "", profile)


def evaluate_claims(runs_dir: str | Path | None = None,
                    datasets: Sequence[str] = ("mnist", "fashionmnist", "cifar10"),
                    profile: str | None = None, claims: Sequence[Claim] = CLAIMS
                    ) -> pd.DataFrame:
    """The ledger: one row per claim and dataset with columns :data:`CSV_COLUMNS`.

    Each claim uses the largest profile (paper > quick > mini > smoke) at which every
    experiment it needs has finished trials in the store (or ``profile`` when given);
    ``trials`` is the smallest trial count among those experiments and ``levels`` the smallest
    number of sparsity levels (dense included) among them, so a verdict from a deeper run
    (e.g. 7 global-IMP rounds beside 2) says so. Nothing is trained.
    """
    from .experiments import run_experiment  # lazy: keeps this module light to import

    profiles = (check_choice("profile", profile, PROFILES),) if profile else PROFILE_ORDER
    inventory = store_inventory(runs_dir)
    loaded: dict[GroupKey, Any] = {}

    def load(key: GroupKey) -> Any:
        if key not in loaded:
            loaded[key] = run_experiment(inventory[key], runs_dir, progress=False, allow=True,
                                         compute=False)
        return loaded[key]

    rows = []
    for ds in datasets:
        ds = check_choice("dataset", ds, ("mnist", "fashionmnist", "cifar10"))
        for c in claims:
            row = {"claim": c.id, "statement": c.statement, "paper": c.paper, "ours": None,
                   "verdict": "not run", "profile": "", "trials": None, "dataset": ds,
                   "levels": None}
            prof = next((p for p in profiles if all(_group_key(n, ds, p) in inventory
                                                    for n in c.needs)), None)
            if prof is not None and (c.datasets is None or ds in c.datasets):
                results = {need_key(n): load(_group_key(n, ds, prof)) for n in c.needs}
                results = {k: r for k, r in results.items() if r.trials}
                ev = Evidence({k: r.summary for k, r in results.items()},
                              {k: r.metrics for k, r in results.items()}, ds)
                ours, verdict = assess(c, ev)
                row.update(ours=None if ours is None else round(ours, 4), verdict=verdict)
                if results:
                    row.update(profile=prof,
                               trials=min(len(r.trials) for r in results.values()),
                               levels=min(r.summary["level"].nunique()
                                          for r in results.values()))
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    df["ours"] = df["ours"].astype("Float64")
    df["trials"] = df["trials"].astype("Int64")
    df["levels"] = df["levels"].astype("Int64")
    return df


def write_claims_csv(runs_dir: str | Path | None = None, path: str | Path | None = None,
                     **kwargs: Any) -> Path:
    """Evaluate the ledger and write it atomically (default ``<runs>/claims.csv``)."""
    df = evaluate_claims(runs_dir, **kwargs)
    out = Path(path) if path is not None else resolve_runs_dir(runs_dir) / "claims.csv"
    atomic_write_text(out, df_to_csv_text(df))
    return out


def ledger_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per dataset (columns in :data:`VERDICTS` order, plus a total)."""
    counts = pd.crosstab(df["dataset"], df["verdict"])
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts.columns.name = None
    return counts

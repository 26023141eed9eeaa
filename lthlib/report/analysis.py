"""Per-level statistics of stored results: the one place where a summary's rows are grouped
by pruning level and averaged.

Claims, figures and chapter prose all read their level means, gaps and nearest levels from
here, so a number in a sentence, a point in a figure and a row of the ledger agree.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lthlib.report.text import pct

PM_REL_TOL = 0.15  # nearest stored Pm level must lie within 15% (relative) of the asked one
FIGURE3_PM = (1.0, 0.513, 0.211, 0.070, 0.036, 0.019)  # the sizes of the paper's Figure 3
TICKET_PM = 0.211  # the ticket size the paper's Figure 4a numbers (2.51x, 38%) are given at


def nearest_level(levels: pd.Series, pm: float, rel: float = PM_REL_TOL) -> Any:
    """Index label of ``levels`` (a Pm Series) nearest to ``pm``, or None beyond ``rel``."""
    if levels.empty:
        return None
    dist = (levels - pm).abs() / pm
    best = dist.idxmin()
    return best if dist[best] <= rel else None


def aggregate(summary: pd.DataFrame, metric: str,
              by: Sequence[str] = ("variant", "level")) -> pd.DataFrame:
    """Per group: pm (mean), mean, min, max and n of ``metric``, sorted by Pm descending
    (the points and error bars of the figures)."""
    if metric not in summary:
        raise ValueError(f"unknown metric {metric!r}; allowed: "
                         f"{', '.join(c for c in summary.columns if c not in by)}")
    out = summary.groupby(list(by), sort=True).agg(
        pm=("pm", "mean"), mean=(metric, "mean"), min=(metric, "min"), max=(metric, "max"),
        n=(metric, "count")).reset_index()
    return out.sort_values("pm", ascending=False, kind="stable").reset_index(drop=True)


def level_means(summary: pd.DataFrame, variant: str = "ticket") -> pd.DataFrame:
    """Per level of ``variant`` (index = level): mean Pm, early-stop iteration (``es``), test
    and training accuracy at early stop, final test accuracy and the number of networks."""
    rows = summary[summary["variant"] == variant]
    out = rows.groupby("level").agg(
        pm=("pm", "mean"), es=("early_stop_iteration", "mean"),
        test_acc=("early_stop_test_acc", "mean"), train_acc=("early_stop_train_acc", "mean"),
        final_test_acc=("final_test_acc", "mean"), n=("pm", "size"))
    return out.sort_values("pm", ascending=False)


def compare_levels(summary: pd.DataFrame, variants: tuple[str, ...] = ("ticket", "reinit"),
                   metrics: tuple[str, ...] = ("es", "test_acc")) -> pd.DataFrame:
    """A readable table: one row per level, ``metrics`` of each variant side by side (the
    dense network, level 0, fills the controls' first row as in the paper's plots)."""
    labels = {"es": "early stop", "test_acc": "test acc.", "train_acc": "train acc.",
              "final_test_acc": "final test acc."}
    means = {v: level_means(summary, v) for v in variants}
    base = means[variants[0]]
    out = pd.DataFrame({"Pm": [pct(p) for p in base["pm"]]}, index=base.index)
    for metric in metrics:
        for v in variants:
            col = means[v][metric].reindex(base.index)
            if 0 in base.index and pd.isna(col.get(0)):
                col.loc[0] = base.loc[0, metric]
            fmt = (lambda x: f"{x:,.0f}") if metric == "es" else (lambda x: pct(x, 2))
            out[f"{labels[metric]} ({v})"] = [("-" if pd.isna(x) else fmt(x)) for x in col]
    return out.reset_index(drop=True)


def ticket_gaps(summary: pd.DataFrame, metric: str = "final_test_acc",
                control: str = "reinit") -> pd.DataFrame:
    """Ticket minus ``control`` ``metric`` at each pruned level, one column per trial (seed;
    a trial's controls of a level are averaged first) plus ``mean``: the mean over all tickets
    minus the mean over all controls of the level, pooled as in :func:`level_means` and the
    ledger. Levels without a control are dropped."""
    if "seed" not in summary.columns:
        summary = summary.assign(seed=0)
    rows = summary[summary["variant"].isin(("ticket", control))]
    table = rows.pivot_table(index="level", columns=["variant", "seed"], values=metric,
                             aggfunc="mean")
    if control not in table.columns.get_level_values(0):
        return pd.DataFrame(columns=["mean"], dtype=float)
    per_seed = (table["ticket"] - table[control]).dropna(how="all")
    per_seed.columns = [int(s) for s in per_seed.columns]
    means = summary.groupby(["variant", "level"])[metric].mean()
    per_seed["mean"] = [means[("ticket", lv)] - means[(control, lv)] for lv in per_seed.index]
    return per_seed


def gaps_by_trial(results: Mapping[str, Any], metric: str = "final_test_acc") -> pd.DataFrame:
    """One row per setting (key of ``results``, each an ExperimentResult or a summary): each
    trial's mean ticket-minus-re-init gap over the pruned levels (pp) and in how many of those
    levels that trial's ticket won; with several trials, also the gap of the trial means."""
    out = []
    for name, res in results.items():
        gaps = ticket_gaps(getattr(res, "summary", res), metric)
        row: dict[str, Any] = {"setting": name}
        seeds = [c for c in gaps.columns if c != "mean"]
        for s in seeds:
            g = gaps[s].dropna()
            row[f"trial {s} gap"] = f"{100 * g.mean():+.2f} pp"
            row[f"trial {s} wins"] = f"{int((g > 0).sum())} of {len(g)}"
        if len(seeds) > 1:
            row["all trials gap"] = f"{100 * gaps['mean'].mean():+.2f} pp"
        out.append(row)
    return pd.DataFrame(out).fillna("-")  # "-": a setting without that trial


def smallest_gap_by_trial(results: Mapping[str, Any], metric: str = "final_test_acc"
                          ) -> dict[int, str]:
    """For each trial (seed) present in every setting: the setting whose ticket advantage
    (mean gap over pruned levels) is smallest. Figure 8 expects lr0.1 everywhere."""
    gaps = {name: ticket_gaps(getattr(res, "summary", res), metric)
            for name, res in results.items()}
    seeds = sorted(set.intersection(*({c for c in g.columns if c != "mean"}
                                      for g in gaps.values()))) if gaps else []
    return {s: min(gaps, key=lambda name: float(gaps[name][s].mean())) for s in seeds}



def closest_level(levels: pd.Series, pm: float) -> Any:
    """Index label of ``levels`` (a Pm Series) nearest to ``pm``, however far away: the
    level a discussion names when the store has no level within :data:`PM_REL_TOL`."""
    return (levels - pm).abs().idxmin()

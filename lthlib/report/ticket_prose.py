"""The sentences and tables of the chapter that looks inside the tickets (connectivity,
survivors' initial values, overlap across seeds, stability to SGD noise), every number
computed from the tables of :mod:`lthlib.experiments.tickets` and the measurements of :mod:`lthlib.studies.lmc`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lthlib.store.run_store import TrialRecord
from lthlib.experiments.tickets import reinit_mask_matches, theta0
from lthlib.report.analysis import TICKET_PM, closest_level
from lthlib.report.text import DATASET_NAMES, describe_record_hardware, format_duration, pct

TOL = 0.10  # "above"/"below" chance: more than 10% away from it, else "at"


def mask_trials_table(dataset: str, trials: Sequence[TrialRecord]) -> pd.DataFrame:
    """One row per IMP trial read: its run, levels, mask files, and the two checks that make
    it usable here (θ0 regenerates; the re-init control trained with the ticket's masks)."""
    return pd.DataFrame([
        {"dataset": DATASET_NAMES[dataset], "seed": tr.config.seed, "run": tr.record["run_id"],
         "levels": tr.record["levels"],
         "mask files": sum(n.endswith(".mask.json") for n in tr.record["sha256"]),
         "θ0 regenerates": theta0(tr) is not None,
         "re-init used the ticket's masks": all(reinit_mask_matches(tr).values())}
        for tr in trials])


def mask_trials_text(dataset: str, trials: Sequence[TrialRecord], profile: str) -> str:
    """How many trials, their training time and hardware, and the masks' size on disk."""
    walls = [tr.record["wall_time_s"] for tr in trials]
    size = sum((tr.path / n).stat().st_size for tr in trials for n in tr.record["sha256"]
               if n.endswith(".mask.json"))
    return (f"**{DATASET_NAMES[dataset]}:** {len(trials)} IMP trial(s) at profile `{profile}`, "
            f"{format_duration(sum(walls))} of training in all "
            f"({describe_record_hardware(trials[0].record)}); their mask files take "
            f"{size / 1e6:.2f} MB on disk.")


def _ratio(a: float, b: float) -> float:
    return a / max(b, 1e-12)


def connectivity_text(dataset: str, table: pd.DataFrame) -> str:
    """Border and centre pixels' kept connections near the paper's 21.1% ticket, ticket
    against random mask, and the centre/border ratio at the smallest size."""
    row = table.loc[closest_level(table["pm"], TICKET_PM)]
    last = table.iloc[-1]
    return (f"**{DATASET_NAMES[dataset]}:** at Pm = {pct(row.pm)} a border pixel keeps "
            f"{pct(row.ticket_border)} of its connections and a centre pixel "
            f"{pct(row.ticket_centre)}; a random mask of the same density keeps "
            f"{pct(row.random_border)} and {pct(row.random_centre)}. At "
            f"Pm = {pct(last.pm)} the ratio centre/border is "
            f"{_ratio(last.ticket_centre, last.ticket_border):.1f} for the ticket against "
            f"{_ratio(last.random_centre, last.random_border):.1f} for the random mask.")


def survivors_text(dataset: str, table: pd.DataFrame) -> str:
    """At the smallest size: each layer's share of survivors from the smallest quarter of
    initial magnitudes and their mean |θ0| against the layer's."""
    small = table[table.pm == table.pm.min()]
    parts = ", ".join(f"{r.layer} {pct(r.small_share)}" for r in small.itertuples())
    ratio = ", ".join(f"{r.layer} {r.magnitude_ratio:.2f}" for r in small.itertuples())
    return (f"**{DATASET_NAMES[dataset]}:** at Pm = {pct(small.pm.iloc[0])}, the share of "
            f"survivors from the smallest quarter of initial magnitudes is {parts} "
            f"(25% without selection); their mean |θ0| is {ratio} times the layer's mean.")


def overlap_text(dataset: str, overlap: pd.DataFrame, connectivity: pd.DataFrame) -> str:
    """At the smallest size: how much more the seeds' masks overlap than chance, beside the
    correlation of their connectivity pictures."""
    smallest = overlap[overlap.pm == overlap.pm.min()].set_index("layer")
    c = connectivity.iloc[-1]
    return (f"**{DATASET_NAMES[dataset]}:** at Pm = {pct(smallest.pm.iloc[0])} the masks of "
            f"different seeds overlap {smallest.loc['all', 'ratio']:.2f} times as much as "
            f"chance over all layers (fc1 {smallest.loc['fc1', 'ratio']:.2f}, fc2 "
            f"{smallest.loc['fc2', 'ratio']:.2f}, fc3 {smallest.loc['fc3', 'ratio']:.2f}), "
            f"while their per-pixel connectivity pictures correlate at "
            f"{c.map_correlation:.2f}.")


def stability_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per variant and level: mean and largest instability, endpoint error, trials."""
    return (summary.groupby(["variant", "level", "pm"])
            .agg(instability_mean=("instability", "mean"),
                 instability_max=("instability", "max"),
                 endpoint_error=("error_a", "mean"), trials=("seed", "nunique"))
            .reset_index().sort_values(["level", "variant"]))


def lmc_runs_text(dataset: str, records: Sequence[dict[str, Any]], points: int) -> str:
    """How many measurements, of how many networks, and how long they took where."""
    wall = sum(r["wall_time_s"] for r in records)
    return (f"**{DATASET_NAMES[dataset]}:** {len(records)} measurement(s), "
            f"{records[0]['networks']} networks each trained for "
            f"{records[0]['train_iterations']:,} iterations, {points} points per line; "
            f"{format_duration(wall)} in all on {describe_record_hardware(records[0])}.")


def _size_means(summary: pd.DataFrame, variant: str) -> pd.Series:
    """Instability per pruned size: the mean over trials (the one statistic this chapter
    quotes for a size)."""
    rows = summary[(summary.variant == variant) & (summary.level > 0)]
    return rows.groupby("pm").instability.mean()


def stability_text(dataset: str, summary: pd.DataFrame) -> str:
    """The dense network's instability and the largest of the tickets' and the controls'
    per-size values, every one a mean over trials."""
    dense = summary[(summary.variant == "ticket") & (summary.level == 0)]["instability"]
    tk, rn = _size_means(summary, "ticket"), _size_means(summary, "reinit")
    text = (f"**Ours, {DATASET_NAMES[dataset]}** (instability as the mean over trials at "
            f"each size, in pp of test error): the dense network {100 * dense.mean():.2f} pp "
            f"({len(dense)} trial(s)); over the pruned sizes, the ticket at most "
            f"{100 * tk.max():.2f} pp")
    if not rn.empty:
        text += (f" and the re-initialised control at most {100 * rn.max():.2f} pp (averaged "
                 f"over the sizes: {100 * rn.mean():.2f} pp against {100 * tk.mean():.2f} pp "
                 f"for the ticket)")
    return text + "."


def _versus(a: float, b: float, tol: float = TOL) -> str:
    return "above" if a > b * (1 + tol) else ("below" if a < b * (1 - tol) else "at")


def _connectivity_line(c: pd.Series) -> str:
    t_ratio = _ratio(c.ticket_centre, c.ticket_border)
    r_ratio = _ratio(c.random_centre, c.random_border)
    where = ("keeps the centre of the image and drops the border faster"
             if t_ratio > r_ratio * 1.05 else
             "keeps the border more than the centre" if t_ratio < r_ratio * 0.95 else
             "does not favour the centre over the border")
    return (f"- *Connectivity.* At the smallest size shown (Pm = {pct(c.pm)}) the ticket "
            f"{where} (centre/border {t_ratio:.2f}, random mask {r_ratio:.2f}); the pictures "
            f"of different seeds correlate at {c.map_correlation:.2f}"
            + (", so the spatial pattern is a property of the data and the procedure, not of "
               "one initialisation." if c.map_correlation > 0.5 else
               ", too little for a pattern shared across initialisations."))


def _survivors_line(surv: pd.DataFrame) -> str:
    t = surv[surv.pm == surv.pm.min()]
    low = t.small_share.max()
    return (f"- *Initial values.* Survivors from the smallest quarter of |θ0| make up at most "
            f"{pct(low)} of a layer at Pm = {pct(t.pm.iloc[0])}, against 25% without "
            f"selection"
            + (": pruning the trained weights by magnitude removes mostly weights that "
               "started small, which carves the gap into the histograms. The re-initialised "
               "control keeps the mask but not these values." if low < 0.2 else
               ", so survival here hardly depends on the initial magnitude."))


def _overlap_line(over: pd.DataFrame) -> str:
    o = over[over.pm == over.pm.min()].set_index("layer")
    per = ", ".join(f"{layer} {_versus(o.loc[layer, 'jaccard'], o.loc[layer, 'chance'])} "
                    f"chance ({o.loc[layer, 'ratio']:.2f}x)" for layer in o.index
                    if layer != "all")
    first_most = (o.drop(index="all").ratio.idxmax() == "fc1"
                  and _versus(o.loc["fc1", "jaccard"], o.loc["fc1", "chance"]) == "above")
    return (f"- *Overlap.* At Pm = {pct(o.pm.iloc[0])} the seeds' masks are {per}. Only the "
            f"first layer is tied to fixed positions (the pixels); hidden units have no "
            f"identity across seeds"
            + (", and the first layer is where the seeds agree most: what they share is "
               "mainly which inputs to keep." if first_most else
               ", yet the first layer is not where the seeds agree most."))


def _stability_line(summ: pd.DataFrame) -> str:
    dense = summ[(summ.variant == "ticket") & (summ.level == 0)].instability.mean()
    tk, rn = _size_means(summ, "ticket"), _size_means(summ, "reinit")
    common = tk.index.intersection(rn.index)
    more = int((rn[common] > tk[common]).sum())
    return (f"- *Stability* (instability as the mean over trials at each size). The dense "
            f"network's is {100 * dense:.2f} pp; the ticket's stays between "
            f"{100 * tk.min():.2f} and {100 * tk.max():.2f} pp over the pruned sizes shown; "
            f"the re-initialised control is less stable than the ticket at {more} of "
            f"{len(common)} pruned sizes (at most {100 * rn.max():.2f} pp).")


def discussion(dataset: str, connectivity: pd.DataFrame | None = None,
               survivors: pd.DataFrame | None = None, overlap: pd.DataFrame | None = None,
               stability: pd.DataFrame | None = None) -> str:
    """The chapter's discussion for one dataset: one line per section whose table exists."""
    lines = []
    if connectivity is not None:
        lines.append(_connectivity_line(connectivity.iloc[-1]))
    if survivors is not None:
        lines.append(_survivors_line(survivors))
    if overlap is not None:
        lines.append(_overlap_line(overlap))
    if stability is not None:
        lines.append(_stability_line(stability))
    return f"**{DATASET_NAMES[dataset]}**\n\n" + "\n".join(lines)

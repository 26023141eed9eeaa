"""What the chapter "A ticket in your own network" shows: its budgets and data, the ticket
against its re-initialisation, the time it took, and the sparse-inference bench record.

The chapter (``book/beyond_own_network.ipynb``) defines its own network and calls
:func:`lthlib.experiments.find_ticket`; everything it computes from the results is here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from torch.utils.data import Subset

from lthlib.data.datasets import get_datasets
from lthlib.experiments.find_ticket import TicketResult
from lthlib.util.paths import runs_dir as resolve_runs_dir

__all__ = ["BUDGETS", "bench_record", "bench_table", "budget_text", "chapter_data",
           "find_settings", "plot_ticket_vs_reinit", "sparse_pays_text", "ticket_table", "ticket_vs_reinit",
           "verdict_text"]

# find_ticket settings and data sizes per chapter budget ("cpu": the chapter's default,
# "smoke": seconds, for the tests); size 0 = the whole split
BUDGETS: Mapping[str, Mapping[str, int | float | str]] = MappingProxyType({
    "cpu": MappingProxyType({"iterations": 1200, "eval_every": 300, "rounds": 4, "rate": 0.5,
                             "scope": "global",
                             "train_size": 0, "val_size": 2000, "test_size": 5000,
                             "train_eval_size": 1000}),
    "smoke": MappingProxyType({"iterations": 20, "eval_every": 10, "rounds": 3, "rate": 0.5,
                               "scope": "global",
                               "train_size": 600, "val_size": 200, "test_size": 200,
                               "train_eval_size": 100}),
})
SIZE_KEYS = ("train_size", "val_size", "test_size")


def _budget(name: str) -> Mapping[str, int | float | str]:
    if name not in BUDGETS:
        raise ValueError(f"budget {name!r} is not known; allowed: {', '.join(BUDGETS)}")
    return BUDGETS[name]


def chapter_data(budget: str, root: str | Path | None = None) -> tuple[Any, Any, Any]:
    """FashionMNIST's (train, val, test) with the paper's split, cut to the budget's sizes."""
    sizes = _budget(budget)
    splits = get_datasets("fashionmnist", root=root, seed=0)
    return tuple(Subset(ds, range(int(sizes[key]))) if sizes[key] else ds
                 for ds, key in zip(splits, SIZE_KEYS))  # type: ignore[return-value]


def find_settings(budget: str) -> dict[str, Any]:
    """The :func:`lthlib.experiments.find_ticket` keywords of a budget."""
    return {k: v for k, v in _budget(budget).items() if k not in SIZE_KEYS}


def ticket_vs_reinit(result: TicketResult) -> pd.DataFrame:
    """Per level: Pm, early-stop test accuracy of the ticket and of its re-init (means over
    trials, in %), their paired difference and its range over trials."""
    s = result.summary
    acc = s.pivot_table(index=["seed", "level"], columns="variant",
                        values="early_stop_test_acc").reset_index()
    pm = s.groupby("level")["pm"].mean()
    rows = []
    for level, part in acc.groupby("level"):
        ticket = 100 * part["ticket"]
        row = {"level": int(level), "Pm (%)": round(100 * pm[level], 1),
               "ticket acc (%)": round(ticket.mean(), 2)}
        if "reinit" in part and part["reinit"].notna().all():
            diff = ticket - 100 * part["reinit"]
            row.update({"re-init acc (%)": round(100 * part["reinit"].mean(), 2),
                        "ticket - re-init (pp)": round(diff.mean(), 2),
                        "range over trials (pp)": f"{diff.min():+.2f} .. {diff.max():+.2f}"})
        rows.append(row)
    return pd.DataFrame(rows)


def ticket_table(result: TicketResult) -> pd.DataFrame:
    """:func:`ticket_vs_reinit` for display: the dense level's empty control columns blank."""
    return ticket_vs_reinit(result).astype(object).fillna("")


def plot_ticket_vs_reinit(result: TicketResult) -> plt.Figure:
    """Early-stop test accuracy against Pm: every trial's ticket and re-init, and the means."""
    s = result.summary
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for variant, style in (("ticket", "-o"), ("reinit", "--s")):
        part = s[s["variant"] == variant]
        if part.empty:
            continue
        if variant == "reinit":  # the dense network is both lines' starting point
            part = pd.concat([s[(s["variant"] == "ticket") & (s["level"] == 0)], part])
        mean = part.groupby("level").agg(pm=("pm", "mean"), acc=("early_stop_test_acc", "mean"))
        ax.plot(100 * mean["pm"], 100 * mean["acc"], style,
                label="winning ticket (θ0)" if variant == "ticket" else "re-initialised")
        ax.scatter(100 * part["pm"], 100 * part["early_stop_test_acc"], s=10, alpha=0.4,
                   color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ticks = sorted({round(100 * v, 1) for v in s.groupby("level")["pm"].mean()})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining, Pm (%)")
    ax.set_ylabel("early-stop test accuracy (%)")
    ax.set_title(f"{result.name}: {len(result.trials)} trials")
    ax.legend()
    fig.tight_layout()
    return fig


def budget_text(result: TicketResult, budget: str) -> str:
    """How many networks were trained and how long they took (from the trial records)."""
    sizes = _budget(budget)
    nets = int(result.summary.shape[0])
    wall = sum(float(t.record.get("wall_time_s", 0.0)) for t in result.trials)
    cpu = sum(float(t.record.get("cpu_time_s", 0.0)) for t in result.trials)
    threads = sorted({json.dumps(t.record.get("hardware", {}).get("threads"))
                      for t in result.trials})
    return (f"Budget `{budget}`: {nets} networks of {int(sizes['iterations']):,} iterations "
            f"each ({len(result.trials)} trials, {int(sizes['rounds'])} pruning rounds). "
            f"Training and evaluation took {wall / 60:.1f} minutes of wall time and "
            f"{cpu / 60:.1f} minutes of CPU time (torch threads per record: "
            f"{', '.join(threads)}), as the trials' records state.")


def bench_record(path: str | Path | None = None,
                 runs_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The committed sparse-inference record (the newest ``cpu-sparse-inference-*.json``
    under ``runs/bench/`` unless ``path`` names one), or None when there is none."""
    if path is None:
        found = sorted((resolve_runs_dir(runs_dir) / "bench").glob(
            "cpu-sparse-inference-*.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            return None
        path = found[-1]
    record = json.loads(Path(path).read_text())
    record["file"] = Path(path).name
    return record


def bench_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """Ratios per network and Pm: speed ratios above 1 and memory or file ratios below 1
    favour the sparse network."""
    rows = []
    for r in record["ratios"]:
        rows.append({"network": r["arch"], "Pm (%)": round(100 * r["pm"], 1),
                     "batch-1 latency: dense / sparse": r["latency_speedup"],
                     "batch-1000 throughput: sparse / dense": r["throughput_speedup"],
                     "peak memory: sparse / dense": r["peak_memory_ratio"],
                     "file: sparse / dense": r["size_ratio"]})
    return pd.DataFrame(rows)


def sparse_pays_text(record: Mapping[str, Any]) -> str:
    """Where sparse inference was faster in the record, and where it was not."""
    ratios = record["ratios"]

    def where(key: str, what: str) -> str:
        won = [f"{r['arch']} at Pm {100 * r['pm']:.1f}%" for r in ratios if r[key] > 1]
        if not won:
            return f"The CSR copy was never faster than the dense network for {what}."
        return f"The CSR copy was faster than the dense network for {what} only for " \
               f"{', '.join(won)}."

    smallest = min(ratios, key=lambda r: r["size_ratio"])
    load = record.get("load_avg_at_start")
    return (f"Measured on {record.get('cpu', 'an unknown CPU')} at {record['threads']} thread "
            f"({record.get('date', '')}; load average {load} at the start: other work shared "
            f"the cores, so each number is the best of a time box). "
            f"{where('latency_speedup', 'a single image')} "
            f"{where('throughput_speedup', 'batches of 1,000')} The sparse file shrinks with "
            f"the ticket, down to {100 * smallest['size_ratio']:.1f}% of the dense "
            f"`state_dict` for {smallest['arch']} at Pm {100 * smallest['pm']:.1f}%. "
            f"{_memory_text(record)}")


def _memory_text(record: Mapping[str, Any]) -> str:
    """Peak memory in words: per network, whether the sparse forward needed more or less."""
    parts = []
    for arch in dict.fromkeys(r["arch"] for r in record["ratios"]):
        rows = [r for r in record["rows"] if r["arch"] == arch and
                r["peak_extra_mib_b1000"] is not None]
        peaks = [r["peak_extra_mib_b1000"] for r in rows]
        ratios = [r["peak_memory_ratio"] for r in record["ratios"]
                  if r["arch"] == arch and r["peak_memory_ratio"] is not None]
        if not peaks or not ratios:
            continue
        more = "more" if min(ratios) > 1 else "less" if max(ratios) < 1 else "more or less"
        parts.append(f"a batch-1,000 forward of {arch} added {min(peaks):.1f} to "
                     f"{max(peaks):.1f} MiB at its peak, the sparse one {more} than the dense")
    return ("Peak memory: " + "; ".join(parts) + ".") if parts else ""


def verdict_text(result: TicketResult) -> str:
    """What the table says, in words: where the ticket beat its re-init in every trial."""
    table = ticket_vs_reinit(result)
    pruned = table[table["level"] > 0]
    if pruned.empty or "ticket - re-init (pp)" not in pruned:
        return "No pruned level with a re-initialised control is stored."
    trials = len(result.trials)
    every = [f"{pm}%" for pm, rng in zip(pruned["Pm (%)"], pruned["range over trials (pp)"])
             if float(rng.split(" .. ")[0]) > 0]
    dense = float(table.loc[table["level"] == 0, "ticket acc (%)"].iloc[0])
    best = pruned.loc[pruned["ticket - re-init (pp)"].idxmax()]
    at_dense = [f"{pm}%" for pm, acc in zip(pruned["Pm (%)"], pruned["ticket acc (%)"])
                if acc >= dense]
    return (f"Over {trials} trial(s), the ticket beat its re-initialisation in every trial at "
            f"Pm {', '.join(every) if every else 'no level'}; the largest mean gap is "
            f"{best['ticket - re-init (pp)']:+.2f} pp at Pm {best['Pm (%)']}%. The ticket "
            f"matched or beat the dense network's {dense:.2f}% at Pm "
            f"{', '.join(at_dense) if at_dense else 'no level'}. The range column shows how far "
            f"single trials differ: a mean gap inside that range is not a finding at this "
            f"budget.")

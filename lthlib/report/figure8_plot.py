"""Figure 8 drawn: ResNet-18's test accuracy at a third, two thirds and all of the training
budget against Pm, tickets solid and re-initialised networks dashed, one panel per
learning-rate setting in a 2x2 grid that shares its y axis, so the settings compare at a
glance; the legend sits below the grid, outside the data.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from lthlib.report.analysis import aggregate
from lthlib.report.plots import (LINESTYLES, MARKERS, METRIC_LABELS, RESNET_TICKS, _metrics,
                                 _with_dense, format_pm_axis, style)

LR_TITLES = {"lr0.1": "lr 0.1", "lr0.01": "lr 0.01", "lr0.03-warmup": "lr 0.03, warmup"}
BUDGET_FRACTIONS = (1 / 3, 2 / 3, 1.0)  # the paper's 10K, 20K and 30K of 30K iterations


def accuracy_at(metrics: Any, iterations: Sequence[int], column: str = "test_acc"
                ) -> pd.DataFrame:
    """``column`` of every network at the evaluated iterations nearest ``iterations``
    (one row per network and iteration; ``iteration`` holds the evaluated one)."""
    m = _metrics(metrics)
    evaluated = np.sort(m["iteration"].unique())
    picked = list(dict.fromkeys(int(evaluated[np.abs(evaluated - it).argmin()])
                                for it in iterations))
    keys = [k for k in ("variant", "level", "replicate", "seed", "pm", "iteration") if k in m]
    return m.loc[m["iteration"].isin(picked), keys + [column]].reset_index(drop=True)


def default_iterations(metrics: Any, fractions: Sequence[float] = BUDGET_FRACTIONS
                       ) -> list[int]:
    """The profile's equivalents of Figure 8's 10K/20K/30K: fractions of the final iteration."""
    last = int(_metrics(metrics)["iteration"].max())
    return [round(f * last) for f in fractions]


def iteration_label(it: int) -> str:
    """10K for the paper's round thousands, else the count itself (1,287)."""
    return f"{it // 1000}K" if it >= 1000 and it % 1000 == 0 else f"{it:,}"


def budget_label(it: int, last: int) -> str:
    """Where ``it`` lies in a budget of ``last`` iterations, as the caption names it:
    "end of training (2,145 it.)", else its share of the budget, "40% of the budget
    (858 it.)" (the evaluated iteration nearest the wanted fraction)."""
    if it >= last:
        return f"end of training ({iteration_label(it)} it.)"
    return f"{100 * it / last:.0f}% of the budget ({iteration_label(it)} it.)"


def _draw_setting(ax: Any, res: Any, iterations: Sequence[int] | None, column: str) -> None:
    m = _metrics(res)
    its = iterations if iterations is not None else default_iterations(m)
    at = accuracy_at(m, its, column)
    last = int(m["iteration"].max())
    picked = sorted(at["iteration"].unique())
    palette = sns.color_palette("mako_r", n_colors=len(picked) + 1)[1:]
    for colour, it in zip(palette, picked):
        part = at[at["iteration"] == it]
        for variant in ("ticket", "reinit"):
            if not (part["variant"] == variant).any():
                continue
            agg = aggregate(_with_dense(part, variant), column)
            x, y = 100 * agg["pm"], 100 * agg["mean"]
            ax.errorbar(x, y, yerr=[y - 100 * agg["min"], 100 * agg["max"] - y],
                        color=colour, linestyle=LINESTYLES[variant], marker=MARKERS[variant],
                        capsize=2, elinewidth=0.8,
                        label=f"{variant}, {budget_label(int(it), last)}")
    format_pm_axis(ax, list(100 * m["pm"].unique()), preferred=RESNET_TICKS)


def figure_8(results: Mapping[str, Any], iterations: Sequence[int] | None = None,
             column: str = "test_acc", title: str | None = None) -> Figure:
    """Figure 8: test accuracy at fixed iterations vs Pm, ticket (solid) vs reinit (dashed),
    one panel per learning-rate setting, two per row, one shared y axis. ``results`` maps
    the lr setting to its long metrics (or ExperimentResult), None for a setting without a
    finished trial; ``iterations`` default to thirds of the training budget."""
    n = max(len(results), 1)
    cols = min(n, 2)
    rows = -(-n // cols)
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows + 1.2),
                                 squeeze=False, sharey=True, layout="constrained")
        flat = list(axes.flat)
        for ax, (setting, res) in zip(flat, results.items()):
            ax.set_title(LR_TITLES.get(setting, setting.replace(" (", "\n(")))
            if res is None:
                ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
                ax.set_xticks([])
                continue
            _draw_setting(ax, res, iterations, column)
        for ax in flat[len(results):]:
            ax.set_visible(False)
        for row in axes:
            row[0].set_ylabel(METRIC_LABELS.get(column, column))
        drawn = [ax for ax in flat if ax.containers]
        if drawn:
            handles, labels = drawn[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", ncol=2,
                       fontsize="small")
        if title:
            fig.suptitle(title)
    return fig

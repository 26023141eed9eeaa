"""Figures in the paper's form, styled alike in every chapter.

Against Pm the x axis is the percent of weights remaining on a log scale, decreasing from
left to right (100 -> 1), with ticks at stored levels; each point is the mean over every
network of that level (trials x re-initialisations) with min/max error bars, as in the paper.
Winning tickets are solid lines, controls (re-initialised, random sparse) dashed, and each
method/variant keeps one colour across chapters (:data:`COLORS`).

Every function takes DataFrames from the store (``ExperimentResult.summary`` or
``.metrics()``; the result object itself is accepted too) and returns matplotlib objects;
nothing calls ``plt.show``, so the module works under the Agg backend.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from lthlib.util.atomic import atomic_save
from lthlib.report.analysis import FIGURE3_PM, PM_REL_TOL, aggregate, nearest_level

# Pm (percent) values the paper labels on its LeNet axes: preferred ticks when present.
PAPER_TICKS = (100.0, 51.3, 21.1, 7.0, 3.6, 1.9)
RESNET_TICKS = (100.0, 41.7, 21.9, 11.8)  # the ResNet-18 levels Section 4 names
METHOD_LABELS = {"iterative": "iterative", "oneshot": "one-shot", "random": "random sparse"}
VARIANT_LABELS = {"ticket": "ticket", "reinit": "reinit", "random": "random sparse"}
COLORS = {  # one colour per method/variant, in every chapter
    ("iterative", "ticket"): "#1f77b4", ("iterative", "reinit"): "#ff7f0e",
    ("oneshot", "ticket"): "#2ca02c", ("oneshot", "reinit"): "#d62728",
    ("oneshot", "random"): "#7f7f7f", ("iterative", "random"): "#7f7f7f",
    ("random", "random"): "#7f7f7f",
}
LINESTYLES = {"ticket": "-", "reinit": "--", "random": "--"}
MARKERS = {"ticket": "o", "reinit": "s", "random": "^"}
LINEAR_TICK_GAP = 0.08  # least distance of two ticks on a linear Pm axis, share of its range
# Figure 3's sizes: colours that stay apart (Dark2) and a line style each, so that curves
# can be told apart in print and by readers with a colour-vision deficiency
SIZE_COLOURS = ("#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#1b9e77", "#a6761d")
SIZE_STYLES = ("-", "--", "-.", ":")
MAX_PANELS_PER_ROW = 2  # legible at the book's content width
METRIC_LABELS = {
    "early_stop_iteration": "early-stop iteration",
    "early_stop_test_acc": "test accuracy at early stop (%)",
    "early_stop_train_acc": "training accuracy at early stop (%)",
    "early_stop_val_acc": "validation accuracy at early stop (%)",
    "early_stop_val_loss": "minimum validation loss",
    "final_test_acc": "test accuracy at end of training (%)",
    "final_train_acc": "training accuracy at end of training (%)",
    "test_acc": "test accuracy (%)",
}
_METHOD_ALIASES = {"iterative": "iterative", "imp": "iterative", "global-imp": "iterative",
                   "oneshot": "oneshot", "one-shot": "oneshot", "random": "random",
                   "random-sparse": "random"}


def _theme() -> dict[str, Any]:
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.9)}
    rc.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
               "legend.frameon": False, "axes.titleweight": "bold", "lines.markersize": 4})
    return rc


def set_style() -> None:
    """Apply the book's plotting style globally (idempotent; call once per notebook)."""
    plt.rcParams.update(_theme())


@contextmanager
def style() -> Iterator[None]:
    """The book's style for the figures created inside the block, without global changes."""
    with plt.rc_context(_theme()):
        yield


def savefig(fig: Figure, path: str | os.PathLike, dpi: int = 150, **kwargs: Any) -> Path:
    """Save ``fig`` atomically (a reader never sees half a file); format from the suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_save(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, **kwargs),
                suffix=f".{fmt}")
    return path


# --- data helpers ----------------------------------------------------------------------------

def _summary(x: Any) -> pd.DataFrame | None:
    """A summary DataFrame from a DataFrame or an ExperimentResult (None passes through)."""
    return x if x is None or isinstance(x, pd.DataFrame) else x.summary


def _metrics(x: Any) -> pd.DataFrame:
    return x if isinstance(x, pd.DataFrame) else x.metrics()


def _method(name: str) -> str:
    key = str(name).lower()
    if key not in _METHOD_ALIASES:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(_METHOD_ALIASES)}")
    return _METHOD_ALIASES[key]


def _with_dense(summary: pd.DataFrame, variant: str) -> pd.DataFrame:
    """Rows of ``variant``, starting from the dense network (level-0 ticket) when the variant
    has no dense point of its own: the paper's control curves start at Pm = 100% too."""
    rows = summary[summary["variant"] == variant]
    dense = summary[(summary["variant"] == "ticket") & (summary["level"] == 0)]
    if variant != "ticket" and not rows.empty and not (rows["pm"] >= 1.0).any():
        rows = pd.concat([dense.assign(variant=variant), rows], ignore_index=True)
    return rows


def pm_ticks(pms: Sequence[float], preferred: Sequence[float] = PAPER_TICKS,
             min_ratio: float = 1.8) -> list[float]:
    """Tick positions (percent) among the stored levels ``pms`` (percent): the paper's
    labels where a level matches them, then other levels far enough apart to stay legible."""
    levels = sorted({round(float(p), 6) for p in pms if p > 0}, reverse=True)
    if not levels:
        return []
    s = pd.Series(levels)
    chosen = {levels[nearest_level(s, p, PM_REL_TOL)] for p in preferred
              if nearest_level(s, p, PM_REL_TOL) is not None}
    for p in levels:
        if all(max(p, c) / min(p, c) >= min_ratio for c in chosen):
            chosen.add(p)
    return sorted(chosen, reverse=True)


def format_pm(p: float) -> str:
    """Percent label: ``100``, ``51.3``, ``7.0``."""
    return "100" if p >= 99.95 else f"{p:.1f}"


def format_pm_axis(ax: Axes, pms: Sequence[float], log: bool = True,
                   preferred: Sequence[float] = PAPER_TICKS) -> None:
    """Percent-remaining axis: log scale (or linear), decreasing left to right, ticks at
    stored levels (``preferred`` ones first)."""
    pms = [p for p in pms if p > 0]
    if not pms:
        return
    hi, lo = max(pms), min(pms)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(hi * 1.15, lo / 1.15)
    else:
        pad = 0.04 * (hi - lo or 1.0)
        ax.set_xlim(hi + pad, lo - pad)
    ticks = pm_ticks(pms, preferred)
    if not log:  # on a linear axis the small levels crowd together: keep ticks apart
        kept: list[float] = []
        for t in ticks:
            if all(abs(t - k) >= LINEAR_TICK_GAP * (hi - lo or 1.0) for k in kept):
                kept.append(t)
        ticks = kept
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([format_pm(t) for t in ticks])
    ax.set_xlabel("percent of weights remaining")


# --- curves against Pm -----------------------------------------------------------------------

def plot_vs_pm(ax: Axes, summary: Any, metric: str, variants: Sequence[str] | None = None,
               label_prefix: str = "", linestyle_map: Mapping[str, str] | None = None,
               scale: float | None = None, method: str = "iterative",
               anchor_dense: bool = True, log: bool = True) -> list[Any]:
    """Mean of ``metric`` vs Pm with min/max error bars, one curve per variant present.

    ``scale`` defaults to 100 for accuracies (plotted in percent). Missing variants are
    skipped. Returns the errorbar containers (one per curve).
    """
    summary = _summary(summary)
    if summary is None or summary.empty:
        return []
    method = _method(method)
    scale = (100.0 if metric.endswith("_acc") else 1.0) if scale is None else scale
    styles = {**LINESTYLES, **(linestyle_map or {})}
    present = list(dict.fromkeys(summary["variant"]))
    out = []
    for variant in (variants or sorted(present, key=list(VARIANT_LABELS).index)):
        if variant not in present:
            continue
        rows = _with_dense(summary, variant) if anchor_dense else \
            summary[summary["variant"] == variant]
        agg = aggregate(rows, metric)
        x, y = 100 * agg["pm"].to_numpy(), scale * agg["mean"].to_numpy()
        yerr = np.vstack([y - scale * agg["min"].to_numpy(), scale * agg["max"].to_numpy() - y])
        out.append(ax.errorbar(
            x, y, yerr=yerr, label=f"{label_prefix}{VARIANT_LABELS.get(variant, variant)}",
            color=COLORS.get((method, variant)), linestyle=styles.get(variant, "-"),
            marker=MARKERS.get(variant, "o"), capsize=2, elinewidth=0.8, linewidth=1.4))
    drawn = [x for c in ax.containers if isinstance(c, ErrorbarContainer)
             and c.lines[0] is not None for x in c.lines[0].get_xdata()]
    format_pm_axis(ax, drawn or list(100 * summary["pm"]), log=log)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    return out


def figure_vs_pm(results: Mapping[str, Any], metrics: Sequence[str],
                 variants: Sequence[str] | None = None, log: bool = True,
                 title: str | None = None, panel_width: float = 4.6) -> Figure:
    """One panel per metric, at most two per row; one curve per (method, variant).
    ``results`` maps a method ("iterative"/"imp", "oneshot", "random") to its summary;
    missing methods are skipped. The legend sits below the panels, outside the data."""
    cols = min(len(metrics), MAX_PANELS_PER_ROW)
    rows = -(-len(metrics) // cols)
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(panel_width * cols, 3.4 * rows + 0.9),
                                 squeeze=False, layout="constrained")
        flat = list(axes.flat)
        for ax, metric in zip(flat, metrics):
            for name, res in results.items():
                if res is None:
                    continue
                method = _method(name)
                plot_vs_pm(ax, res, metric, variants, f"{METHOD_LABELS[method]} ", method=method,
                           log=log)
            ax.set_title(METRIC_LABELS.get(metric, metric).split(" (")[0].capitalize())
        for ax in flat[len(metrics):]:
            ax.set_visible(False)
        handles, labels = flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center",
                       ncol=min(len(labels), 4))
        if title:
            fig.suptitle(title)
    return fig


def figure_4a(results: Mapping[str, Any], title: str | None = None) -> Figure:
    """Figure 4a: early-stop iteration, test and training accuracy at early stop vs Pm for
    iterative/one-shot tickets and their re-initialised controls."""
    return figure_vs_pm(results, ("early_stop_iteration", "early_stop_test_acc",
                                  "early_stop_train_acc"), ("ticket", "reinit"), title=title)


def figure_4b(results: Mapping[str, Any], title: str | None = None) -> Figure:
    """Figure 4b with Figure 12: test and training accuracy at the end of training."""
    return figure_vs_pm(results, ("final_test_acc", "final_train_acc"), ("ticket", "reinit"),
                        title=title)


def figure_4c(oneshot: Any, title: str | None = None) -> Figure:
    """Figure 4c: one-shot tickets and controls on a linear Pm axis (as the paper draws it)."""
    return figure_vs_pm({"oneshot": oneshot}, ("early_stop_iteration", "early_stop_test_acc"),
                        ("ticket", "reinit"), log=False, title=title)


def figure_1(oneshot: Any, imp: Any = None, title: str | None = None) -> Figure:
    """Figure 1: early-stop iteration and test accuracy at early stop of one-shot tickets,
    iterative tickets (when ``imp`` is given, for comparison) and the one-shot run's randomly
    sampled sparse networks (dashed)."""
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
        for ax, metric in zip(axes, ("early_stop_iteration", "early_stop_test_acc")):
            plot_vs_pm(ax, oneshot, metric, ["ticket"], "one-shot ", method="oneshot")
            if imp is not None:
                plot_vs_pm(ax, imp, metric, ["ticket"], "iterative ")
            plot_vs_pm(ax, oneshot, metric, ["random"], method="random")
            ax.set_title(METRIC_LABELS[metric].split(" (")[0].capitalize())
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
        if title:
            fig.suptitle(title)
    return fig


# --- curves over training --------------------------------------------------------------------

def _curves(metrics: pd.DataFrame, level: Any, variant: str, column: str) -> pd.DataFrame:
    rows = metrics[(metrics["variant"] == variant) & (metrics["level"] == level)]
    return rows.groupby("iteration")[column].agg(["mean", "min", "max"])


def figure_3(metrics: Any, pms: Sequence[float] = FIGURE3_PM,
             groups: Sequence[Sequence[float]] | None = None, variant: str = "ticket",
             column: str = "test_acc", title: str | None = None,
             ylim: tuple[float, float] | None = None) -> Figure:
    """Figure 3: test accuracy over training for the tickets at the stored levels nearest
    ``pms`` (mean over trials, min/max band). ``groups`` makes one panel per group of Pm;
    the y range spans the curves and bands after the first 10% of training unless ``ylim``."""
    m = _metrics(metrics)
    rows = m[m["variant"] == variant]
    levels = rows.groupby("level")["pm"].mean()
    panels = [list(g) for g in groups] if groups else [list(pms)]
    every = sorted({round(p, 6) for p in [*pms, *(p for g in panels for p in g)] if p < 1.0},
                   reverse=True)
    colour = {p: SIZE_COLOURS[i % len(SIZE_COLOURS)] for i, p in enumerate(every)}
    dash = {p: SIZE_STYLES[i % len(SIZE_STYLES)] for i, p in enumerate(every)}
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.0),
                                 squeeze=False, layout="constrained")
        for ax, group in zip(axes[0], panels):
            lows, highs, seen = [], [], set()
            for p in group:
                lvl = nearest_level(levels, p)
                if lvl is None or lvl in seen:
                    continue
                seen.add(lvl)
                c = _curves(rows, lvl, variant, column) * 100
                col = "black" if p >= 1.0 else colour[round(p, 6)]
                ls = "-" if p >= 1.0 else dash[round(p, 6)]
                ax.plot(c.index, c["mean"], color=col, lw=1.6, linestyle=ls,
                        label=f"Pm = {format_pm(100 * levels[lvl])}%")
                ax.fill_between(c.index, c["min"], c["max"], color=col, alpha=0.15, lw=0)
                late = c.index >= 0.1 * c.index.max()
                lows.append(c.loc[late, "mean"].min())
                highs.append(c.loc[late, "max"].max())
            if ylim is not None:
                ax.set_ylim(*ylim)
            elif lows:
                ax.set_ylim(max(0.0, min(lows) - 0.5), min(100.5, max(highs) + 0.3))
            if lows:  # below the panel, outside the curves
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
                          fontsize="small")
            ax.set_xlabel("training iteration")
            ax.set_ylabel(METRIC_LABELS.get(column, column))
        if title:
            fig.suptitle(title)
    return fig


# --- a pruned layer ---------------------------------------------------------------------------

def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=float)
    return a.reshape(a.shape[0], -1) if a.ndim > 2 else np.atleast_2d(a)


def layer_heatmap(ax: Axes, weight: Any, mask: Any = None, crop: tuple[int, int] | None = None,
                  vmax: float | None = None, cmap: str = "RdBu_r") -> Any:
    """Heatmap of a layer's weights (rows = output units; conv kernels flattened per output
    channel). Pruned entries (mask 0, or exactly zero without a mask) are drawn grey."""
    w = _array(weight)
    pruned = (_array(mask) == 0).reshape(w.shape) if mask is not None else (w == 0)
    if crop is not None:
        w, pruned = w[:crop[0], :crop[1]], pruned[:crop[0], :crop[1]]
    vmax = vmax or float(np.abs(w[~pruned]).max(initial=0.0)) or 1.0
    colours = plt.get_cmap(cmap).with_extremes(bad="#cfcfcf")
    im = ax.imshow(np.ma.masked_where(pruned, w), cmap=colours, vmin=-vmax, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_xlabel("input")
    ax.set_ylabel("output unit")
    return im


def figure_pruned_layer(weight_before: Any, weight_after: Any, mask: Any = None,
                        crop: tuple[int, int] | None = (24, 48),
                        titles: tuple[str, str] = ("before pruning", "after pruning")) -> Figure:
    """Side-by-side heatmaps of a layer before and after pruning, on one colour scale;
    grey cells are pruned weights. ``crop`` shows the top-left corner (None: whole layer)."""
    before, after = _array(weight_before), _array(weight_after)
    vmax = float(np.abs(before).max(initial=0.0)) or 1.0
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
        layer_heatmap(axes[0], before, None if mask is None else np.ones_like(before), crop,
                      vmax)
        im = layer_heatmap(axes[1], after, mask, crop, vmax)
        kept = 1.0 - (_array(mask) == 0).mean() if mask is not None else (after != 0).mean()
        axes[0].set_title(titles[0])
        axes[1].set_title(f"{titles[1]} ({100 * kept:.1f}% remaining)")
        axes[1].set_ylabel("")
        fig.colorbar(im, ax=list(axes), shrink=0.9, label="weight")
        if crop is not None and (before.shape[0] > crop[0] or before.shape[1] > crop[1]):
            fig.suptitle(f"top-left {min(crop[0], before.shape[0])} x "
                         f"{min(crop[1], before.shape[1])} corner of a {before.shape[0]} x "
                         f"{before.shape[1]} weight matrix; grey = pruned", fontsize="small")
    return fig

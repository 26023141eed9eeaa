"""Figures of the chapter that examines the tickets (masks, θ0 of survivors, stability)."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lthlib.store.run_store import TrialRecord
from lthlib.experiments.tickets import (input_connectivity, level_pm, random_masks_like,
                                        reinit_mask_matches, survivor_values, theta0, ticket_masks)

def _pm_axis(ax: plt.Axes, pms: Sequence[float]) -> None:
    """Log Pm axis, largest on the left, ticks at the plotted sizes."""
    ticks = sorted({round(100 * float(p), 1) for p in pms})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(max(ticks) * 1.15, min(ticks) / 1.15)
    ax.set_xlabel("Pm (% of weights remaining)")


VARIANT_STYLE = {"ticket": dict(color="tab:blue", marker="o"),
                 "reinit": dict(color="tab:orange", marker="s", linestyle="--")}


def connectivity_figure(trials: Sequence[TrialRecord], levels: Sequence[int],
                        layer: str = "fc1", title: str = "") -> plt.Figure:
    """Rows: ticket, its re-init's mask, a random mask of equal density; columns: levels.
    Each picture is the share of a pixel's first-layer connections that survive, averaged
    over the trials."""
    rows = ("ticket", "re-init", "random")
    fig, axes = plt.subplots(len(rows), len(levels), figsize=(2.1 * len(levels), 6.6),
                             squeeze=False)
    for j, level in enumerate(levels):
        pics: dict[str, list[np.ndarray]] = {r: [] for r in rows}
        for tr in trials:
            m = ticket_masks(tr, level)[layer]
            same = level == 0 or reinit_mask_matches(tr).get(level, False)
            pics["ticket"].append(input_connectivity(m) / m.shape[0])
            if same:  # the re-init trained with this very mask (digests equal)
                pics["re-init"].append(input_connectivity(m) / m.shape[0])
            r = random_masks_like({layer: m}, seed=tr.config.seed * 1000 + level)[layer]
            pics["random"].append(input_connectivity(r) / r.shape[0])
        vmax = max(float(np.mean(p, axis=0).max()) for p in pics.values() if p)
        for i, row in enumerate(rows):
            ax = axes[i][j]
            if pics[row]:
                im = ax.imshow(np.mean(pics[row], axis=0), cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"Pm = {100 * level_pm(trials[0])[level]:.1f}%", fontsize=9)
            if j == 0:
                ax.set_ylabel(row)
        fig.colorbar(im, ax=list(axes[:, j]), shrink=0.6, location="bottom", pad=0.03)
    if title:
        fig.suptitle(title)
    return fig


def survivor_histograms(trial: TrialRecord, levels: Sequence[int],
                        title: str = "") -> plt.Figure:
    """θ0 of all weights (grey) and of the survivors (blue) per layer (rows) and level, each
    normalised to unit area so the shapes compare."""
    init = theta0(trial)
    layers = sorted(ticket_masks(trial, levels[0]))
    fig, axes = plt.subplots(len(layers), len(levels), figsize=(2.4 * len(levels),
                                                                  1.9 * len(layers)),
                             squeeze=False)
    for j, level in enumerate(levels):
        masks = ticket_masks(trial, level)
        for i, layer in enumerate(layers):
            all_w, kept = survivor_values(init, masks, layer)
            bins = np.linspace(all_w.min(), all_w.max(), 41)
            ax = axes[i][j]
            # densities: at small Pm the survivors are too few to see on a count scale
            ax.hist(all_w, bins=bins, color="0.7", density=True, label="all weights")
            ax.hist(kept, bins=bins, color="tab:blue", alpha=0.7, density=True,
                    label="survivors")
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"Pm = {100 * level_pm(trial)[level]:.1f}%", fontsize=9)
            if j == 0:
                ax.set_ylabel(layer)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("initial value θ0")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlap_figure(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Mean pairwise Jaccard of masks across trials against Pm, with chance (dashed)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k, (layer, df) in enumerate(table.groupby("layer", sort=True)):
        df = df.sort_values("pm")
        color = f"C{k}"
        ax.plot(100 * df["pm"], df["jaccard"], marker="o", color=color, label=f"{layer}")
        ax.plot(100 * df["pm"], df["chance"], linestyle=":", color=color)
    _pm_axis(ax, table["pm"])
    ax.set_ylabel("Jaccard across seeds")
    ax.legend(title="measured (dotted: chance)", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def instability_figure(summary: pd.DataFrame, paths: pd.DataFrame,
                       title: str = "") -> plt.Figure:
    """Left: instability against Pm, ticket vs re-init (mean, min/max over trials).
    Right: test error along the path at each level (mean over trials)."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.9))
    for variant, df in summary.groupby("variant"):
        g = df.groupby("pm")["instability"].agg(["mean", "min", "max"]).sort_index()
        ax.errorbar(100 * g.index, 100 * g["mean"],
                    yerr=[100 * (g["mean"] - g["min"]), 100 * (g["max"] - g["mean"])],
                    capsize=3, label=variant, **VARIANT_STYLE.get(variant, {}))
    _pm_axis(ax, summary["pm"])
    ax.set_ylabel("instability (pp of test error)")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.legend()
    ax.grid(alpha=0.3)
    levels = sorted(paths["pm"].unique(), reverse=True)
    cmap = plt.get_cmap("viridis")
    for k, pm in enumerate(levels):
        for variant, df in paths[paths["pm"] == pm].groupby("variant"):
            g = df.groupby("alpha")["test_error"].mean()
            ax2.plot(g.index, 100 * g.values, color=cmap(k / max(1, len(levels) - 1)),
                     linestyle="-" if variant == "ticket" else "--",
                     label=f"{100 * pm:.1f}%" if variant == "ticket" else None)
    ax2.set_xlabel("position on the line between the two copies")
    ax2.set_ylabel("test error (%)")
    ax2.legend(title="Pm (solid ticket, dashed re-init)", fontsize=7, ncol=2)
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

"""Figures on synthetic summaries: axis form (log, decreasing), curves, error bars, missing
variants, atomic saving."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from lthlib.report import figure8_plot, plots
from test_claims import fig8_rows, metrics_rows, oneshot_rows, summary_rows  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def imp():
    return summary_rows()


def assert_pm_axis(ax):
    lo, hi = ax.get_xlim()
    assert ax.get_xscale() == "log" and lo > hi  # decreasing: 100 on the left
    assert lo >= 100 and hi <= 1.9


def visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def columns(fig) -> int:
    """Panels side by side in the figure's first row."""
    tops = [round(ax.get_position().y1, 3) for ax in visible(fig)]
    return tops.count(max(tops))


def bars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_aggregate(imp):
    agg = plots.aggregate(imp, "early_stop_iteration")
    assert list(agg.columns) == ["variant", "level", "pm", "mean", "min", "max", "n"]
    assert agg["pm"].is_monotonic_decreasing
    dense = agg[(agg.variant == "ticket") & (agg.level == 0)].iloc[0]
    assert dense["mean"] == 5000 and dense["min"] == 4950 and dense["max"] == 5050
    assert dense["n"] == 2
    with pytest.raises(ValueError, match="early_stop_iteration"):
        plots.aggregate(imp, "no_such_metric")


def test_plot_vs_pm_axis_lines_and_error_bars(imp):
    fig, ax = plt.subplots()
    out = plots.plot_vs_pm(ax, imp, "early_stop_test_acc")
    assert len(out) == len(bars(ax)) == 2
    assert_pm_axis(ax)
    ticket, reinit = out
    x, y = ticket.lines[0].get_data()
    assert x[0] == pytest.approx(100) and y[0] == pytest.approx(98.0)  # percent
    assert ticket.has_yerr and ticket.lines[2]  # error bars drawn
    assert ticket.lines[0].get_linestyle() == "-" and reinit.lines[0].get_linestyle() == "--"
    assert reinit.lines[0].get_xdata()[0] == pytest.approx(100)  # reinit starts at dense
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert {"100", "51.3", "21.1", "7.0", "3.6", "1.9"} <= set(labels)
    assert ticket.lines[0].get_color() != reinit.lines[0].get_color()


def test_pm_ticks_use_paper_labels_then_spread():
    ticks = plots.pm_ticks([100 * p for p in (1.0, .8, .64, .513, .41, .328, .262, .211, .168,
                                              .135, .107, .086, .07, .055, .044, .036, .029,
                                              .023, .019)])
    assert ticks[0] == 100 and ticks[-1] == pytest.approx(1.9)
    assert all(a / b >= 1.3 for a, b in zip(ticks, ticks[1:]))
    assert plots.pm_ticks([]) == []
    assert plots.format_pm(100.0) == "100" and plots.format_pm(7.0) == "7.0"


def test_figure_4a_four_methods_three_panels(imp):
    one = oneshot_rows()
    fig = plots.figure_4a({"iterative": imp, "oneshot": one})
    axes = visible(fig)
    assert len(axes) == 3 and columns(fig) == 2  # at most two panels per row
    for ax in axes:
        assert_pm_axis(ax)
        assert len(bars(ax)) == 4
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["iterative ticket", "iterative reinit", "one-shot ticket",
                      "one-shot reinit"]
    assert "random" not in " ".join(labels)  # Figure 4a shows no random sparse networks


def test_figure_4a_missing_method_and_variant(imp):
    fig = plots.figure_4a({"imp": imp[imp.variant == "ticket"], "oneshot": None})
    assert [len(bars(ax)) for ax in visible(fig)] == [1, 1, 1]
    fig = plots.figure_4a({})
    assert len(visible(fig)) == 3 and not fig.legends


def test_figure_4b_and_4c(imp):
    fig = plots.figure_4b({"iterative": imp})
    assert len(fig.axes) == 2 and all(len(bars(ax)) == 2 for ax in fig.axes)
    fig = plots.figure_4c(oneshot_rows())
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] > ax.get_xlim()[1]
    ticks = sorted(ax.get_xticks())  # no two labels crowd together on the linear axis
    span = abs(ax.get_xlim()[0] - ax.get_xlim()[1])
    assert all(b - a >= 0.07 * span for a, b in zip(ticks, ticks[1:]))


def test_figure_1(imp):
    """One-shot tickets solid, random sparse networks dashed from the dense network at 100%;
    iterative tickets join when given."""
    fig = plots.figure_1(oneshot_rows())
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]
        ticket, rand = bars(ax)
        assert rand.lines[0].get_linestyle() == "--"
        assert rand.lines[0].get_xdata()[0] == pytest.approx(100)  # from the dense net
    fig = plots.figure_1(oneshot_rows(), imp, title="t")
    assert all(len(bars(ax)) == 3 for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]  # outside the panels
    assert labels[:2] == ["one-shot ticket", "iterative ticket"]


def test_figure_3(imp):
    m = metrics_rows(imp[imp.variant == "ticket"], step=500)
    fig = plots.figure_3(m)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 6 and len(ax.collections) == 6  # curves and min/max bands
    assert ax.get_legend().get_texts()[1].get_text() == "Pm = 51.3%"
    colours = [line.get_color() for line in ax.get_lines()]
    assert len(set(colours)) == len(colours)  # every size its own colour
    styles = [line.get_linestyle() for line in ax.get_lines()[1:]]
    assert len(set(styles)) >= min(4, len(styles))  # and its own dash pattern
    lo, hi = ax.get_ylim()  # zoomed on the late curves: all inside, no empty band on top
    late = [y for line in ax.get_lines() for x, y in zip(*line.get_data())
            if x >= 0.1 * max(line.get_xdata())]
    assert lo <= min(late) and max(late) <= hi <= min(100.5, max(late) + 1.0 + 0.3)
    fig = plots.figure_3(m, groups=[(1.0, .513, .211), (1.0, .211, .07, .036, .019)])
    assert [len(a.get_lines()) for a in fig.axes] == [3, 5]
    fig = plots.figure_3(m[m.level.isin([0, 3])])  # missing levels are skipped
    assert len(fig.axes[0].get_lines()) == 2


def test_accuracy_at_and_figure_8():
    m = {s: metrics_rows(fig8_rows(gain), step=1000, last=30_000)
         for s, gain in (("lr0.1", 0.0), ("lr0.01", 0.02), ("lr0.03-warmup", 0.02))}
    assert figure8_plot.default_iterations(m["lr0.1"]) == [10_000, 20_000, 30_000]
    at = figure8_plot.accuracy_at(m["lr0.1"], [9_700, 30_000])
    assert sorted(at["iteration"].unique()) == [10_000, 30_000]
    fig = figure8_plot.figure_8({**m, "late": m["lr0.1"]})
    axes = visible(fig)
    assert len(axes) == 4 and columns(fig) == 2  # a 2x2 grid
    assert len({ax.get_ylim() for ax in axes}) == 1  # one shared y axis
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]
        assert len(bars(ax)) == 6  # ticket and reinit at three iterations
        assert ax.get_legend() is None  # the legend is outside the data
    assert axes[2].get_title() == "lr 0.03, warmup"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["ticket, 33% of the budget (10K it.)",
                          "reinit, 33% of the budget (10K it.)"]
    assert labels[-1] == "reinit, end of training (30K it.)"
    fig = figure8_plot.figure_8({"lr0.1": m["lr0.1"], "lr0.01": None}, iterations=[30_000])
    assert [len(bars(ax)) for ax in visible(fig)] == [2, 0]


def test_layer_heatmap_and_pruned_layer_figure():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(30, 60))
    mask = (np.abs(before) > 0.5).astype(float)
    fig, ax = plt.subplots()
    im = plots.layer_heatmap(ax, before * mask, crop=(10, 20))
    assert im.get_array().shape == (10, 20)
    assert im.get_array().mask.sum() == (mask[:10, :20] == 0).sum()
    conv = rng.normal(size=(4, 3, 3, 3))
    im = plots.layer_heatmap(ax, conv)
    assert im.get_array().shape == (4, 27)
    fig = plots.figure_pruned_layer(before, before * mask, mask, crop=None)
    assert "remaining" in fig.axes[1].get_title()


def test_savefig_is_atomic(tmp_path, imp):
    fig = plots.figure_4b({"iterative": imp})
    out = plots.savefig(fig, tmp_path / "figs" / "fig4b.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in out.parent.iterdir()] == ["fig4b.png"]
    plots.savefig(fig, tmp_path / "figs" / "fig4b.svg")
    assert (tmp_path / "figs" / "fig4b.svg").read_text().lstrip().startswith("<?xml")


def test_set_style_and_bad_method(imp):
    plots.set_style()
    assert plt.rcParams["axes.grid"]
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="oneshot"):
        plots.plot_vs_pm(ax, imp, "early_stop_iteration", method="magic")
    assert plots.plot_vs_pm(ax, pd.DataFrame(), "early_stop_iteration") == []

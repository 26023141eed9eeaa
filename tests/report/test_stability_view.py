"""Chapter 7.7's stability map, cost plan and opening answer, read from the committed store."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from lthlib.report import stability_view as sv
from lthlib.studies.stability import stability_results


def test_table_and_figure_show_every_finished_pair():
    sums, paths = stability_results()
    table = sv.stability_table()
    assert len(sums) >= 1 and table["seeds"].sum() == len(sums)
    assert (paths.groupby(["regime", "label", "seed"]).size() == 11).all()  # 11 points per path
    assert not table[table["k"] > 0]["start"].str.contains("θ0").any()
    one = table[table["seeds"] == 1]
    assert (one["95% CI (pp)"] == "– (one seed)").all()
    fig = sv.stability_figure()
    assert fig is not None and len(fig.axes) == 2
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])


def test_progress_and_cost_plan_follow_the_records():
    prog = sv.map_progress()
    assert len(prog) == 30 and prog["done"].sum() == len(stability_results()[0])
    plan = sv.cost_plan()
    hours = plan[[c for c in plan.columns if c.startswith("core-hours")]]
    assert len(plan) == 3 and (hours >= 0).all().all() and (hours.iloc[2] > 0).all()
    left = plan["network-equivalents still to run"].tolist()
    assert left[0] == 2 * (~prog["done"]).sum()
    plat = sv.plateau_plan.plan_progress()
    assert left[1] == plat.loc[~plat["complete"], "epochs"].sum() / 5
    given = sv.cost_plan(fig8_epochs=10)
    assert given["network-equivalents still to run"].iloc[2] == 81 * 10 / 5
    assert "(given)" in given["work"].iloc[2]


def test_opening_answer_reads_the_ledger():
    ledger = pd.read_csv(sv.resolve_runs_dir() / "claims.csv")
    text = sv.figure8_answer(ledger)
    gap = ledger[(ledger["claim"] == "fig8-lr0.1-no-winning-tickets")
                 & (ledger["dataset"] == "fashionmnist")].iloc[0]
    assert f"{float(gap['ours']):+.2f} pp" in text
    assert "not trained out" in text
    done = int(sv.plateau_plan.plan_progress()["complete"].sum())
    assert f"{done} of 18 augmented plateau curves are complete" in text
    assert text.count("\n\n") == 2 + bool(sv.dense_sentence() and sv.ticket_reinit_sentence())


def test_ticket_reinit_sentence_states_each_setting_and_lr01s_extremes(tmp_path):
    sums, _ = stability_results()
    at0 = sums[(sums["rewind_iteration"] == 0) & ~sums["regime"].str.endswith("-augment")]
    text = sv.ticket_reinit_sentence()
    for (setting, start), g in at0[at0["start"].isin(["ticket", "reinit"])].groupby(
            ["setting", "start"]):
        name = "ticket" if start == "ticket" else "re-init"
        assert f"{name} {(100 * g['instability']).mean():.2f} pp ({len(g)} seed" in text
    lr01 = at0[at0["setting"] == "lr0.1"]
    worst = 100 * lr01[lr01["start"] == "ticket"]["instability"].max()
    best = 100 * lr01[lr01["start"] == "reinit"]["instability"].min()
    assert (f"at most {worst:.2f} pp" in text) == (worst < best)
    assert sv.ticket_reinit_sentence(tmp_path) == ""  # an empty store says nothing


def test_dense_sentence_states_what_is_measured_and_only_that(tmp_path):
    sums, _ = stability_results()
    dense = sums[sums["start"] == "dense"]
    text = sv.dense_sentence()
    plain = dense[(dense["rewind_iteration"] == 0) & ~dense["regime"].str.endswith("-augment")]
    for setting, g in plain.groupby("setting"):
        assert f"{(100 * g['instability']).mean():.2f} pp ({len(g)} seed" in text
    assert ("highest at" in text) == (plain["setting"].nunique() == 3)
    late = dense[dense["rewind_iteration"] > 0]
    assert ("from θk" in text) == (not late.empty)
    for k in late["rewind_iteration"].unique():
        assert f"k = {k} (" in text
    assert ("augmentation" in text) == dense["regime"].str.endswith("-augment").any()
    assert sv.dense_sentence(tmp_path) == ""

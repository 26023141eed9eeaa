"""Chapter 7.7's stability map and cost plan, read from ``runs/lmc`` and ``runs/bench``.

The map is the analogue of Frankle et al. (2020)'s instability figures for the substitute
regime (ResNet-18 on FashionMNIST, 5 epochs): per learning-rate setting the dense network
from θ0 (with and without the paper's augmentation), the IMP ticket and its re-init at Pm
27.1%, and at lr 0.1 the dense network from θk at small k. Nothing here trains.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lthlib.studies import plateau_plan
from lthlib.studies.plateau import read_plateau
from lthlib.studies.stability import load_pair, pair_dir, stability_results
from lthlib.studies.stability_map import MAP_REWINDS, SETTINGS, map_plan
from lthlib.store.run_store import resolve_runs_dir
from lthlib.report.claims.intervals import t_quantile

# what each bar of the map is, in the order it is drawn
KINDS = (("dense", False, "dense from θ0"), ("dense", True, "dense from θ0, augmented"),
         ("ticket", False, "IMP ticket, Pm 27.1%"), ("reinit", False, "its re-init"))
KIND_COLOURS = ("#4C72B0", "#8172B3", "#C44E52", "#999999")
BUDGET_ITERATIONS = 2145  # the regime's T: 5 epochs of 429 iterations


def _kind(row: pd.Series) -> str:
    for start, aug, label in KINDS:
        if row["start"] == start and row["regime"].endswith("-augment") == aug:
            return label
    return row["start"]


def stability_table(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per setting, start and k: instability in pp per seed, mean and a 95% t-interval
    (only where two seeds or more exist), and the endpoints' mean test error."""
    sums, _ = stability_results(runs_dir)
    if sums.empty:
        return pd.DataFrame()
    sums = sums.assign(kind=sums.apply(_kind, axis=1))
    rows = []
    for (setting, kind, k), g in sums.groupby(["setting", "kind", "rewind_iteration"],
                                             sort=False):
        v = 100 * g["instability"].to_numpy()
        n = len(v)
        half = t_quantile(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n) if n > 1 else None
        rows.append({"setting": setting, "start": kind, "k": int(k), "seeds": n,
                     "per seed (pp)": ", ".join(f"{x:.2f}" for x in v),
                     "mean (pp)": round(float(v.mean()), 2),
                     "95% CI (pp)": ("– (one seed)" if half is None else
                                     f"[{v.mean() - half:.2f}, {v.mean() + half:.2f}]"),
                     "end error (%)": round(float(100 * (g["error_a"] + g["error_b"]).mean()
                                                  / 2), 2)})
    out = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(SETTINGS)}
    kinds = {label: i for i, (_, _, label) in enumerate(KINDS)}
    out = out.sort_values(["k", "setting", "start"], key=lambda c: c.map(
        order if c.name == "setting" else kinds if c.name == "start" else lambda x: x)
    ).reset_index(drop=True)
    late = out["k"] > 0  # a rewound pair starts from θk, not θ0
    out.loc[late, "start"] = out.loc[late, "start"].str.replace("θ0", "θk")
    return out


def stability_figure(runs_dir: str | Path | None = None) -> plt.Figure | None:
    """(a) instability per setting and start at θ0; (b) lr 0.1's dense network against k.
    Dots are seeds, bars and the line their mean; one shared y-axis."""
    sums, _ = stability_results(runs_dir)
    if sums.empty:
        return None
    sums = sums.assign(kind=sums.apply(_kind, axis=1), pp=100 * sums["instability"])
    with plt.rc_context({"font.size": 12}):
        return _draw_map(sums)


def _draw_map(sums: pd.DataFrame) -> plt.Figure:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 4.6), sharey=True,
                                 gridspec_kw={"width_ratios": [3, 2]})
    at0 = sums[sums["rewind_iteration"] == 0]
    width = 0.2
    for j, ((_, _, label), colour) in enumerate(zip(KINDS, KIND_COLOURS)):
        for i, setting in enumerate(SETTINGS):
            v = at0[(at0["setting"] == setting) & (at0["kind"] == label)]["pp"].to_numpy()
            x = i + (j - 1.5) * width
            if v.size:
                ax.bar(x, v.mean(), width * 0.9, color=colour, alpha=0.55)
                ax.scatter(np.full(v.size, x), v, color=colour, s=18, zorder=3)
            else:
                ax.text(x, 0.15, "not run", rotation=90, ha="center", va="bottom",
                        fontsize=9, color="#666666")
        ax.bar(np.nan, np.nan, color=colour, alpha=0.55, label=label)  # legend entry
    ax.set_xticks(range(len(SETTINGS)), ["lr 0.1", "lr 0.01", "lr 0.03 + warmup"])
    ax.set_ylabel("instability (pp of test error)")
    ax.set_title("(a) from θ0, by setting")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False,
              fontsize=10)
    dense = sums[(sums["setting"] == "lr0.1") & (sums["kind"] == KINDS[0][2])]
    ks = [0, *MAP_REWINDS]
    means = [dense[dense["rewind_iteration"] == k]["pp"].mean() for k in ks]
    pos = range(len(ks))  # evenly spaced: k = 21 and 43 would crowd k = 0 on a linear axis
    for x, k in zip(pos, ks):
        v = dense[dense["rewind_iteration"] == k]["pp"].to_numpy()
        bx.scatter(np.full(v.size, x), v, color=KIND_COLOURS[0], s=18, zorder=3)
        if not v.size:
            bx.text(x, 0.15, "not run", rotation=90, ha="center", va="bottom", fontsize=9,
                    color="#666666")
    bx.plot(list(pos), means, color=KIND_COLOURS[0], marker="o", label="dense, lr 0.1")
    bx.set_xticks(list(pos), [f"{k}\n({100 * k / BUDGET_ITERATIONS:.0f}%)" for k in ks])
    bx.set_xlim(-0.5, len(ks) - 0.5)
    bx.set_xlabel("rewind iteration k (share of T)")
    bx.set_title("(b) lr 0.1, dense from θk")
    for a in (ax, bx):
        a.grid(axis="y", alpha=0.3)
        a.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def map_progress(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """The map's plan: each of its 30 pairs, done or not, with its measured wall time."""
    rows = []
    for cfg in map_plan(runs_dir=runs_dir):
        pair = load_pair(pair_dir(cfg, runs_dir))
        rec = pair[1] if pair is not None else {}
        hw = rec.get("hardware", {})
        cpu = hw.get("cpu")
        if cpu and "native_bf16" in hw:
            cpu += " with native bf16" if hw["native_bf16"] else " without native bf16"
        rows.append({"regime": cfg.regime, "pair": cfg.label, "seed": cfg.seed,
                     "done": bool(rec), "train_wall_time_s": rec.get("train_wall_time_s"),
                     "cpu": cpu})
    return pd.DataFrame(rows)


def _bench_seconds(runs_dir: Path) -> dict[str, float]:
    """Seconds per 2,145-iteration float32 network on one core, from the stored conv bench
    (two single-threaded processes side by side: ``conv_it_s`` is their sum)."""
    out = {}
    for name, kind in (("cpu-conv-amd-epyc.json", "AMD AVX2 (bench)"),
                       ("cpu-conv-intel-xeon.json", "Intel AMX (bench)")):
        f = runs_dir / "bench" / name
        if f.is_file():
            rec = json.loads(f.read_text())
            per_process = rec["conv_it_s"] / rec["side_by_side_processes"]
            out[kind] = BUDGET_ITERATIONS / per_process
    return out


def cost_plan(runs_dir: str | Path | None = None, fig8_epochs: int | None = None
              ) -> pd.DataFrame:
    """Core-hours of the Figure 8 work still to run, on each CPU kind: network-equivalents
    (one 2,145-iteration float32 ResNet-18) times measured seconds per network. The stability
    pairs' own seconds come from their records (under whatever load they ran). Figure 8's
    budget is ``fig8_epochs``, else the one the plateau curves chose, else 20 (assumed)."""
    root = resolve_runs_dir(runs_dir)
    secs = _bench_seconds(root)
    prog = map_progress(runs_dir)
    plat = plateau_plan.plan_progress(runs_dir)
    done = prog[prog["done"]]
    if not done.empty:
        measured = (done["train_wall_time_s"] / 2).median()
        secs[f"{done['cpu'].iloc[0]} (pairs, measured)"] = float(measured)
    chosen = plateau_plan.chosen_budget(runs_dir)[0]
    epochs = fig8_epochs or chosen or 20
    how = ("given" if fig8_epochs else "chosen by the plateau" if chosen
           else "assumed until the plateau chooses")
    # a partial curve resumes only where its gitignored checkpoint is: count it whole
    plat_left = plat.loc[~plat["complete"], "epochs"].sum()
    work = [("stability map: 30 pairs, 2 networks each", 2.0 * int((~prog["done"]).sum()),
             f"{int((~prog['done']).sum())} of {len(prog)} pairs still to run"),
            ("plateau: 3 settings x 2 seeds x budgets of 10, 20 and 30 epochs, augmented",
             float(plat_left) / 5,
             f"{int((~plat['complete']).sum())} of {len(plat)} curves still to run; picks "
             "the budget"),
            (f"Figure 8 at {epochs} epochs ({how}): 4 settings x 3 trials x 7 networks "
             f"(dense, 3 tickets, 3 re-inits; rewinding reuses lr 0.1's dense network)",
             (4 * 3 * 7 - 3) * epochs / 5, "3 pruned levels, Pm 64/41/27%")]
    rows = []
    for what, nets, note in work:
        row: dict[str, Any] = {"work": what, "network-equivalents still to run": nets,
                               "note": note}
        for kind, s in secs.items():
            row[f"core-hours, {kind}"] = round(nets * s / 3600, 1)
        rows.append(row)
    return pd.DataFrame(rows)


# Fixed before any IMP result at the trained-out budget is read (chapter 7.7 states it):
FAILURE_RULE = (
    "IMP counts as failing at lr 0.1 at the trained-out budget when both hold: (1) at every "
    "pruned level (Pm 64, 41, 27%) the 95% t-interval of the lr 0.1 ticket's advantage over "
    "its re-init, over 3 trials, includes 0 or lies inside ±1.96 test-set sampling errors of "
    "that gap; and (2) the advantage at lr 0.01 and with warmup each exceeds lr 0.1's, judged "
    "as a paired contrast across settings by seed, with the interval above 0. If (1) holds and "
    "(2) does not, the verdict is 'no winning tickets anywhere', not the paper's contrast.")


# --- the chapter's opening answer ------------------------------------------------------------

def _row(ledger: pd.DataFrame, claim: str) -> pd.Series | None:
    got = ledger[(ledger["claim"] == claim) & (ledger["dataset"] == "fashionmnist")]
    return None if got.empty else got.iloc[0]


def _est(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["ours"]):
        return "not run"
    return (f"{float(row['ours']):+.2f} pp, 95% CI [{float(row['ci_low']):+.2f}, "
            f"{float(row['ci_high']):+.2f}], {row['verdict']}")


def plateau_gap(runs_dir: str | Path | None = None) -> tuple[float, float] | None:
    """Final dense test accuracy (%) of the stored lr 0.1 curves at 5 and at 20 epochs."""
    root = resolve_runs_dir(runs_dir) / "plateau"
    acc = {}
    for ep in (5, 20):
        try:
            curve, _ = read_plateau(root / f"resnet18-fashionmnist-lr0.1-{ep}ep-bf16-seed0")
        except FileNotFoundError:
            return None
        acc[ep] = 100 * float(curve["test_acc"].iloc[-1])
    return acc[5], acc[20]


def _mean_pp(rows: pd.DataFrame) -> str:
    v = 100 * rows["instability"]
    return f"{v.mean():.2f} pp ({len(v)} seed{'s' if len(v) > 1 else ''})"


def dense_sentence(runs_dir: str | Path | None = None) -> str:
    """What the map says about the dense network: its instability from θ0 per setting (and
    which setting's is the highest), with the paper's augmentation,
    and at lr 0.1 from θk. Only what is measured; empty until a dense pair exists."""
    sums, _ = stability_results(runs_dir)
    if sums.empty:
        return ""
    dense = sums[sums["start"] == "dense"]
    augmented = dense["regime"].str.endswith("-augment")
    names = {"lr0.1": "lr 0.1", "lr0.01": "lr 0.01", "lr0.03-warmup": "lr 0.03 with warmup"}
    out = []
    for aug, lead in ((False, "The dense network from θ0"),
                      (True, "With the paper's augmentation (flip, pad-4 crop) it measures")):
        here = dense[(dense["rewind_iteration"] == 0) & (augmented == aug)]
        means = {st: 100 * here[here["setting"] == st]["instability"].mean()
                 for st in SETTINGS if (here["setting"] == st).any()}
        if not means:
            continue
        parts = ", ".join(f"{names[st]} {_mean_pp(here[here['setting'] == st])}"
                          for st in means)
        order = ""
        if len(means) == len(SETTINGS):
            top = max(means, key=means.get)
            order = f", highest at {names[top]}"
        out.append(f"{lead}: {parts}{order}.")
    late = dense[(dense["rewind_iteration"] > 0) & ~augmented & (dense["setting"] == "lr0.1")]
    if not late.empty:
        parts = ", ".join(
            f"k = {k} ({100 * k / BUDGET_ITERATIONS:.0f}% of T): {_mean_pp(g)}"
            for k, g in late.groupby("rewind_iteration"))
        out.append(f"At lr 0.1 from θk: {parts}.")
    return " ".join(out)


def ticket_reinit_sentence(runs_dir: str | Path | None = None) -> str:
    """What the map says about tickets against their re-inits at θ0, setting by setting (mean
    instability and seeds), and, where lr 0.1 has both, whether its ticket is stable where
    its re-init is not. Empty until a ticket or re-init pair exists."""
    sums, _ = stability_results(runs_dir)
    if sums.empty:
        return ""
    at0 = sums[(sums["rewind_iteration"] == 0) & ~sums["regime"].str.endswith("-augment")]
    at0 = at0[at0["start"].isin(["ticket", "reinit"])]
    if at0.empty:
        return ""
    parts = []
    for setting in [s for s in SETTINGS if s in set(at0["setting"])]:
        here = []
        for start, name in (("ticket", "ticket"), ("reinit", "re-init")):
            v = 100 * at0[(at0["setting"] == setting) & (at0["start"] == start)]["instability"]
            here.append(f"{name} {v.mean():.2f} pp ({len(v)} seed{'s' if len(v) > 1 else ''})"
                        if len(v) else f"{name} not yet measured")
        parts.append(f"{setting}: " + ", ".join(here))
    text = ("Instability at Pm 27.1% from θ0, mean over seeds: " + "; ".join(parts) + ".")
    lr01 = at0[at0["setting"] == "lr0.1"]
    tickets, reinits = lr01[lr01["start"] == "ticket"], lr01[lr01["start"] == "reinit"]
    if len(tickets) and len(reinits):
        worst, best = 100 * tickets["instability"].max(), 100 * reinits["instability"].min()
        if worst < best:
            text += (f" At lr 0.1 every ticket seed (at most {worst:.2f} pp) is stable where "
                     f"every re-init seed (at least {best:.2f} pp) is not. By Frankle et al.'s "
                     "account an IMP ticket that is stable from θ0 can train to full accuracy, "
                     "so on this substitute the lr 0.1 ticket is expected to win, as measured; "
                     "the paper's failure at lr 0.1 would need it unstable.")
        else:
            text += (f" At lr 0.1 tickets (up to {worst:.2f} pp) and re-inits (from "
                     f"{best:.2f} pp) overlap.")
    return text


def figure8_answer(ledger: pd.DataFrame, runs_dir: str | Path | None = None) -> str:
    """The paragraph chapter 7.7 opens with, every number read from the ledger and the store."""
    fails = _row(ledger, "fig8-lr0.1-no-winning-tickets")
    lr001 = _row(ledger, "fig8-lr0.01-advantage-exceeds-lr0.1")
    warm = _row(ledger, "fig8-warmup-advantage-exceeds-lr0.1")
    contrast_shown = all(r is not None and r["verdict"] == "reproduced" for r in (lr001, warm))
    head = ("**Reproduced**" if contrast_shown else
            "**Not reproduced at the budget we could afford, and not yet testable at one that "
            "is trained out.**")
    text = [f"{head} The paper's Figure 8 says that IMP finds winning tickets in ResNet-18 "
            "at lr 0.01 or with warmup, but not at lr 0.1. On our substitute (ResNet-18 on "
            "FashionMNIST for 5 epochs, no augmentation"
            + (f", {int(fails['trials'])} trials per setting" if fails is not None
               and not pd.isna(fails["trials"]) else "")
            + ") tickets beat their re-initialised copies at every setting, lr 0.1 included "
            f"(mean gap at lr 0.1: {_est(fails)} against the claim's ±0.5 pp band of 'no "
            "winning tickets'). The learning-rate contrast itself is not established: lr 0.01 "
            f"minus lr 0.1: {_est(lr001)}; warmup minus lr 0.1: {_est(warm)}."]
    gap = plateau_gap(runs_dir)
    if gap is not None:
        text.append(f"The 5-epoch budget is not trained out: the dense lr 0.1 network reaches "
                    f"{gap[0]:.2f}% test accuracy after 5 epochs against {gap[1]:.2f}% after "
                    f"20 (one seed), a difference about as large as the effects being judged.")
    sentence = ticket_reinit_sentence(runs_dir)
    table = stability_table(runs_dir)
    dense_part = dense_sentence(runs_dir) if sentence else ""
    if sentence:
        text.insert(1, "Why, from the stability map (stability to SGD noise, the explanation "
                    "Frankle et al. (2020) give for Figure 8): " + sentence[0].lower()
                    + sentence[1:] + " The other candidate is the short budget.")
    elif not table.empty:
        at0 = table[table["k"] == 0]
        parts = [f"{r['start']} at {r['setting']}: {r['mean (pp)']:.1f} pp "
                 f"({r['seeds']} seed{'s' if r['seeds'] > 1 else ''})"
                 for _, r in at0.iterrows()]
        text.append("Stability to SGD noise, the explanation Frankle et al. (2020) give for "
                    "Figure 8, measured so far (instability of test error on the path between "
                    "two copies): " + "; ".join(parts) + ".")
    prog = map_progress(runs_dir)
    plat = plateau_plan.plan_progress(runs_dir)
    n_plat = int(plat["complete"].sum())
    budget, final = plateau_plan.chosen_budget(runs_dir)
    chosen = ("no budget is chosen yet" if budget is None else
              f"they choose {budget} epochs ({'final' if final else 'provisional'})")
    text.append(f"The stability map has {int(prog['done'].sum())} of {len(prog)} pairs. The "
                f"trained-out budget: {n_plat} of {len(plat)} augmented plateau curves are "
                f"complete and {chosen}; IMP at that budget has not been run (plan and cost "
                "below).")
    # the answer and its evidence first, then why, the dense network, then what is still to run
    parts = [text[0], " ".join(text[1:-1]), text[-1]] if len(text) > 2 else text
    if dense_part:
        parts.insert(-1, dense_part)
    return "\n\n".join(parts)

"""Chapter 7.7's view of Figure 8: the paper's three learning-rate settings plus late
rewinding (beyond the paper), each read from the store with however many trials it has.

Figure 8's runs at the ``converged-cpu`` profile take more than an hour of one CPU
core per trial and setting, so the eight trials outlast one sitting. The chapter shows every setting with
its finished trials, says which are still missing, and judges the paper's ordering only on
the settings that have trials.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.config.paper import RESNET_LR_SETTINGS
from lthlib.config.experiment import ExperimentConfig
from lthlib.store.run_store import ExperimentResult, RunStore
from lthlib.studies import plateau_plan
from lthlib.report.analysis import level_means, smallest_gap_by_trial, ticket_gaps
from lthlib.report.chapters import Need
from lthlib.report.context import Context
from lthlib.report.claims.evidence import TEST_IMAGES
from lthlib.report.text import format_wall_time, pct
from lthlib.report.claims.intervals import sampling_se


def late_rewind_label(iteration: int, schedule: str = "from-k") -> str:
    """Panel and table name of the late-rewinding setting ("restart": the survivors train
    the whole budget again from θ_k, as the trials stored before "from-k" did)."""
    how = ", schedule restarted" if schedule == "restart" else ""
    return f"lr0.1, rewind to it. {iteration}{how} (beyond the paper)"


def late_rewind_config(ctx: Context, iteration: int) -> ExperimentConfig | None:
    """The config of IMP at lr 0.1 with survivors reset to θ_k (k = ``iteration``) at the
    chapter's profile, trials and rounds; None when ``iteration`` is 0 (no such panel).
    Where the store holds no trial that resumes the schedule at k ("from-k") but holds
    trials that restarted it, those are shown rather than trained again."""
    if not iteration:
        return None
    need = Need("global-imp", "resnet18", "lr0.1", iteration)
    cfg = need.config(ctx.dataset, ctx.profile, ctx.trials, ctx.rounds)
    store = RunStore(ctx.runs_dir)
    if not store.results(cfg).trials:
        restarted = replace(cfg, rewind_schedule="restart")
        if store.results(restarted).trials:
            return restarted
    return cfg


def still_missing(ctx: Context, late: ExperimentConfig | None) -> list[ExperimentConfig]:
    """What the chapter would train: the settings of ``ctx.missing`` plus late rewinding when
    the store has fewer of its trials than the chapter shows."""
    todo = list(ctx.missing)
    if late is not None and len(RunStore(ctx.runs_dir).results(late).trials) < ctx.trials:
        todo.append(late)
    return todo


def settings(ctx: Context, late: ExperimentConfig | None) -> dict[str, ExperimentResult]:
    """Setting name -> its finished trials (possibly none), the paper's three first."""
    out = {s: ctx[f"global-imp/{s}"] for s in RESNET_LR_SETTINGS}
    if late is not None:
        out[late_rewind_label(late.rewind_iteration, late.rewind_schedule)] = \
            RunStore(ctx.runs_dir).results(late)
    return out


def with_trials(results: Mapping[str, ExperimentResult]) -> dict[str, ExperimentResult]:
    """Only the settings that have at least one finished trial."""
    return {k: r for k, r in results.items() if r.trials}


def for_figure(results: Mapping[str, ExperimentResult]) -> dict[str, ExperimentResult | None]:
    """Every setting, None where nothing is finished (its panel stays empty)."""
    return {k: (r if r.trials else None) for k, r in results.items()}


def status_table(results: Mapping[str, ExperimentResult]) -> pd.DataFrame:
    """One row per setting: finished trials (seeds), the sparsest level, the dense network's
    final test accuracy (mean over trials) and the training time the records hold."""
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {"setting": name, "finished trials": len(res.trials),
                               "seeds": ", ".join(str(t.config.seed) for t in res.trials)
                               or "none yet"}
        if res.trials:
            means = level_means(res.summary)
            row["sparsest Pm"] = pct(float(means.pm.min()))
            row["dense final test acc."] = pct(float(means.final_test_acc.iloc[0]), 2)
            row["training time"] = format_wall_time(
                res.wall_time_s, [t.record for t in res.trials])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


TARGET_TRIALS = 2  # the fewest trials per setting that show a seed-to-seed spread


def _seeds_wanted(res: ExperimentResult, trials: int) -> list[int]:
    have = {t.config.seed for t in res.trials}
    return [s for s in range(max(trials, TARGET_TRIALS)) if s not in have]


def resume_command(cfg: ExperimentConfig, seed: int) -> str:
    """The CLI line that trains (or resumes) trial ``seed`` of ``cfg``'s setting."""
    extra = f" --rewind-iter {cfg.rewind_iteration}" if cfg.rewind_iteration else ""
    return (f"python -m lthlib run {cfg.experiment} --arch {cfg.model.arch} --dataset "
            f"{cfg.data.dataset} --profile {cfg.profile} --rounds {cfg.prune.rounds} "
            f"--lr-setting {cfg.lr_setting} --seed {seed} --trials 1{extra}")


def missing_text(results: Mapping[str, ExperimentResult], trials: int) -> str:
    """The settings with fewer finished trials than the chapter shows or than
    :data:`TARGET_TRIALS`, each with the command that trains (or resumes) what is missing."""
    lines = [f"- {name}, seed {seed}: `{resume_command(res.config, seed)}`"
             for name, res in results.items() for seed in _seeds_wanted(res, trials)]
    if not lines:
        return f"Every setting has its {max(trials, TARGET_TRIALS)} trial(s)."
    return (f"Still missing for {max(trials, TARGET_TRIALS)} trials per setting (each command "
            "resumes from the stage files a trial has stored):\n\n" + "\n".join(lines))


def trial_gaps(res: ExperimentResult) -> pd.Series:
    """Each trial's (seed's) mean ticket-minus-re-init gap over the pruned levels."""
    gaps = ticket_gaps(res.summary)
    return pd.Series({s: float(gaps[s].dropna().mean()) for s in gaps.columns if s != "mean"},
                     dtype=float)


def gap_noise(res: ExperimentResult) -> tuple[float, str]:
    """Standard error of a setting's mean gap and where it comes from: the larger of the
    seed-to-seed spread of the trials' gaps (two or more trials) and the test set's sampling
    (each network's accuracy p on n images varies by sqrt(p(1-p)/n); a gap is two networks,
    averaged over the pruned levels and trials). The sampling error is a floor: a spread
    estimated from two or three trials can come out below it by chance."""
    per_trial = trial_gaps(res)
    p = float(res.summary["final_test_acc"].mean())
    cells = max(1, len(ticket_gaps(res.summary))) * max(1, len(per_trial))
    n = res.trials[0].config.data.eval_subset or TEST_IMAGES
    sampling = sampling_se(p, n, networks=2, cells=cells)
    if len(per_trial) >= 2:
        spread = float(per_trial.std(ddof=1) / len(per_trial) ** 0.5)
        if spread >= sampling:
            return spread, "trial-to-trial spread"
        return sampling, "test-set sampling (above the trials' spread)"
    return sampling, "test-set sampling only (a lower bound)"


def ordering_text(results: Mapping[str, ExperimentResult]) -> str:
    """The paper's ordering (the smallest ticket advantage at lr 0.1), judged against noise on
    the paper's settings that have trials; late rewinding is reported beside it, not in it.

    For each other setting, the difference of mean gaps (it minus lr 0.1) counts as the
    paper's ordering only when it exceeds twice its standard error, as reversed when below
    minus twice, and as not distinguishable otherwise."""
    paper = {k: r for k, r in with_trials(results).items() if k in RESNET_LR_SETTINGS}
    paper = {k: r for k, r in paper.items() if len(trial_gaps(r))}
    if "lr0.1" not in paper or len(paper) < 2:
        return ("The paper's ordering (the smallest ticket advantage at lr 0.1) needs lr 0.1 "
                "and at least one other setting with finished trials; it cannot be read yet.")
    mean = {k: float(trial_gaps(r).mean()) for k, r in paper.items()}
    noise = {k: gap_noise(r) for k, r in paper.items()}
    lines = []
    for k in paper:
        if k == "lr0.1":
            continue
        diff = mean[k] - mean["lr0.1"]
        se = (noise[k][0] ** 2 + noise["lr0.1"][0] ** 2) ** 0.5
        if diff > 2 * se:
            word = "larger than at lr 0.1, as in the paper"
        elif diff < -2 * se:
            word = "smaller than at lr 0.1, the reverse of the paper"
        else:
            word = "not distinguishable from lr 0.1's"
        source = noise[k][1] if noise[k][1] == noise["lr0.1"][1] else \
            f"{k}'s {noise[k][1]}, lr 0.1's {noise['lr0.1'][1]}"
        lines.append(f"- {k}: mean gap {100 * mean[k]:+.2f} pp against lr 0.1's "
                     f"{100 * mean['lr0.1']:+.2f} pp, a difference of {100 * diff:+.2f} ± "
                     f"{100 * se:.2f} pp (one standard error, from {source}): **{word}**.")
    return ("The paper's ordering, with the smallest ticket advantage at lr 0.1, judged "
            "against noise (a difference counts when it exceeds two standard errors):\n\n"
            + "\n".join(lines))


def plateau_table(runs_dir: str | Path) -> pd.DataFrame:
    """The dense budgets measured to choose the profile (``runs/plateau``), one row per
    setting and budget: seeds, seed-mean final test accuracy and each seed's, training
    accuracy, distance to the setting's plateau and wall time
    (:func:`lthlib.studies.plateau_plan.budget_table`)."""
    table = plateau_plan.budget_table(runs_dir)
    if table.empty:
        return table
    # narrow enough for the page: iterations are 429 per epoch, headers short
    return pd.DataFrame({
        "setting": table["setting"], "epochs": table["epochs"], "seeds": table["seeds"],
        "test (%)": table["test acc. (%)"].round(2),
        "per seed (%)": table["per seed (%)"],
        "train (%)": table["train acc. (%)"].round(2),
        "below best (pp)": table["below the plateau (pp)"].round(2),
        f"within {plateau_plan.TOLERANCE_PP} pp": table["within tolerance"].map(
            {True: "yes", False: "no"}),
        "min per run": table["wall time per run (min)"].round(0).astype(int)})


def budget_text(runs_dir: str | Path | None) -> str:
    """The budget each setting's plateau curves choose, and what is still to run, from the
    store (the rule: :mod:`lthlib.studies.plateau_plan`)."""
    table = plateau_plan.budget_table(runs_dir)
    choice = plateau_plan.budget_choice(table)
    lines = []
    for setting, (epochs, final) in choice.items():
        g = table[table["setting"] == setting]
        seeds = "/".join(str(int(n)) for n in g["seeds"])
        if epochs is None:
            lines.append(f"- {setting}: one budget measured ({int(g['epochs'].iloc[0])} "
                         "epochs), so no plateau yet.")
            continue
        measured = (f"budgets {', '.join(str(int(e)) for e in g['epochs'])} with {seeds} "
                    "seed(s)")
        status = "final." if final else "provisional: fewer than 2 seeds per budget."
        if epochs == int(g["epochs"].max()):
            lines.append(f"- {setting}: only the longest budget, **{epochs} epochs**, is within "
                         f"{plateau_plan.TOLERANCE_PP} pp of the best ({measured}), so these "
                         f"budgets do not show where the curve levels off; {status}")
            continue
        lines.append(f"- {setting}: the smallest budget within "
                     f"{plateau_plan.TOLERANCE_PP} pp of the plateau is **{epochs} epochs** "
                     f"({measured}); {status}")
    todo = plateau_plan.plan_progress(runs_dir)
    left = todo[~todo["complete"]]
    head = (f"Of the {len(todo)} planned augmented float32 curves "
            f"(`python -m lthlib.studies.plateau_plan --list`), **{len(todo) - len(left)}** "
            "are complete.")
    budget, final = plateau_plan.figure8_budget(choice)
    tail = ("Figure 8's trained-out budget is not chosen yet: every augmented setting needs "
            "its curves." if budget is None else
            f"Figure 8's budget, the largest of the three settings' choices: **{budget} "
            f"epochs** ({'final' if final else 'provisional'}).")
    return "\n".join([head, "", *lines, "", tail]) if lines else f"{head} {tail}"


def setting_lines(results: Mapping[str, ExperimentResult]) -> str:
    """7.7 (d), one line per setting with trials: the dense network, the best ticket and the
    ticket's lead over its re-initialised copies."""
    lines = []
    for name, res in with_trials(results).items():
        means, gaps = level_means(res.summary), ticket_gaps(res.summary)["mean"]
        best = means.final_test_acc.idxmax()
        wins = f"{int((gaps > 0).sum())} of {len(gaps)}" if len(gaps) else "none"
        lines.append(f"- **{name}** ({len(res.trials)} trial(s)): dense network "
                     f"{pct(means.final_test_acc.iloc[0], 2)}; the best ticket "
                     f"{pct(means.final_test_acc[best], 2)} at Pm = {pct(means.pm[best])}; "
                     f"tickets beat their re-initialised copies at {wins} pruned levels"
                     + (f" (mean gap {100 * gaps.mean():+.2f} pp)." if len(gaps) else "."))
    return "\n".join(lines) if lines else "No setting has a finished trial yet."


def trials_text(results: Mapping[str, ExperimentResult]) -> str:
    """In how many trials, among the paper's settings that have them, the smallest ticket
    advantage falls at lr 0.1."""
    paper = {k: r for k, r in with_trials(results).items() if k in RESNET_LR_SETTINGS}
    if "lr0.1" not in paper or len(paper) < 2:
        return "No trial has lr 0.1 and another setting finished yet, so no trial can be read."
    per_trial = smallest_gap_by_trial(paper)
    at_lr01 = sum(s == "lr0.1" for s in per_trial.values())
    return (f"The smallest ticket advantage falls at lr0.1 in **{at_lr01} of "
            f"{len(per_trial)}** trial(s) present in {', '.join(paper)} (smallest per trial: "
            + ", ".join(f"seed {k}: {v}" for k, v in per_trial.items()) + ").")

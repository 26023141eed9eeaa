"""The introduction's tables: every stored experiment with its hardware and training time,
and for every chapter the profile it shows and whether that is the paper's setting.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lthlib.config.paper import PROFILE_ORDER
from lthlib.store.run_store import RunStore
from lthlib.report.chapters import (CHAPTERS, Need, complete_profiles, finished_trials,
                                    resolve_trials)
from lthlib.report.text import (DATASET_NAMES, PAPER_TRIALS, describe_record_hardware,
                                format_duration, wall_time_partial)


def runs_overview(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per stored experiment (all seeds together): trials, hardware, wall time.

    Runs that differ in their number of sparsity levels (e.g. 2 against 7 IMP rounds) or of
    re-inits per level are different experiments, so ``levels`` and ``re-inits`` are part of
    the key and trials count distinct seeds."""
    store = RunStore(runs_dir)
    rows = []
    for rec_file in sorted(store.root.glob("*/*/*/record.json")):
        try:
            rec = json.loads(rec_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("status") != "finished":
            continue
        cfg_file = rec_file.with_name("config.json")
        cfg_doc = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        reinits = cfg_doc.get("reinits", 1)
        rewind = int(cfg_doc.get("rewind_iteration", 0) or 0)  # its own row, never pooled
        rows.append({"experiment": rec.get("experiment", ""), "network": rec.get("arch", ""),
                     "dataset": DATASET_NAMES.get(rec.get("dataset", ""), rec.get("dataset")),
                     "profile": rec.get("profile", ""), "lr": (rec.get("lr_setting") or "")
                     + (f", rewind to it. {rewind}" if rewind else ""),
                     "levels": int(rec.get("levels", 0)), "re-inits": int(reinits),
                     "seed": rec.get("seed"),
                     "hardware": describe_record_hardware(rec),
                     "wall_time_s": float(rec.get("wall_time_s", 0.0)),
                     "reused_s": float((rec.get("reused_from") or {}).get("wall_time_s") or 0),
                     "partial": wall_time_partial(rec)})
    cols = ["experiment", "network", "dataset", "profile", "lr", "levels", "re-inits", "trials",
            "hardware", "training time"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    keys = ["experiment", "network", "dataset", "profile", "lr", "levels", "re-inits"]
    out = df.groupby(keys, sort=True).agg(
        trials=("seed", "nunique"), hardware=("hardware", lambda s: "; ".join(sorted(set(s)))),
        wall=("wall_time_s", "sum"), reused=("reused_s", "sum"),
        partial=("partial", "any")).reset_index()
    # an extended trial's time includes the networks it reused (lthlib.store.extension): say how much,
    # so that adding up the rows does not count that training twice
    out["training time"] = [
        ("at least " if part else "") + format_duration(wall)
        + (f" (of which {format_duration(reused)} reused from a smaller run)" if reused else "")
        for wall, reused, part in zip(out.pop("wall"), out.pop("reused"), out.pop("partial"))]
    order = {p: i for i, p in enumerate(PROFILE_ORDER)}
    out = out.sort_values(["experiment", "network", "dataset", "lr", "profile", "levels",
                           "re-inits"],
                          key=lambda s: s.map(order) if s.name == "profile" else s)
    return out[cols].reset_index(drop=True)


def coverage_table(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """For every chapter and dataset it can show: the best stored profile and its trials,
    and whether that is the paper's setting (its iterations and its 5 trials)."""
    rows = []
    for chap in CHAPTERS:
        if not chap.needs:
            continue
        for dataset in chap.datasets:
            done = complete_profiles(chap.needs, dataset, runs_dir, chap.rounds)
            best = done[0] if done else ""
            n = resolve_trials(chap.needs, dataset, best, 0, runs_dir, chap.rounds) if best else 0
            started = [] if best else [
                k for k in (finished_trials(need, dataset, chap.fallback, runs_dir, chap.rounds)
                            for need in chap.needs) if k]
            if started:  # a chapter whose runs outlast one sitting shows what is finished
                best, n = chap.fallback, min(started)
                status = (f"partly run ({best} profile: {len(started)} of {len(chap.needs)} "
                          f"experiments)")
            elif not best:
                status = "not run"
            elif best == "paper" and n >= PAPER_TRIALS:
                status = "paper settings"
            elif best == "paper":
                status = f"paper settings, {n} of {PAPER_TRIALS} trials"
            else:
                status = f"reduced ({best} profile)"
            if best and chap.rounds is not None:
                status += f", {chap.rounds} pruning rounds"
            rows.append({"chapter": chap.label, "dataset": DATASET_NAMES[dataset],
                         "experiments": _experiments_text(chap.needs),
                         "profile shown": best or "-", "trials": n, "status": status})
    return pd.DataFrame(rows)


def _experiments_text(needs: tuple[Need, ...]) -> str:
    counts: dict[str, int] = {}
    for n in needs:
        counts[n.experiment] = counts.get(n.experiment, 0) + 1
    return ", ".join(e if k == 1 else f"{e} ({k} lr settings)" for e, k in counts.items())



def coverage_text(coverage: pd.DataFrame) -> str:
    """The coverage table in three sentences: which chapters (and datasets) ran at the
    paper's settings, which at reduced ones, and which not at all."""
    def named(rows: pd.DataFrame) -> str:
        return "; ".join(f"{r.chapter} ({r.dataset})" for r in rows.itertuples()) or "none"

    status = coverage.status
    return (f"**At the paper's settings:** {named(coverage[status.str.startswith('paper')])}."
            f"\n\n**At reduced settings:** "
            f"{named(coverage[status.str.startswith(('reduced', 'partly'))])}."
            f"\n\n**Not run:** {named(coverage[status == 'not run'])}. CIFAR-10 is not "
            f"available on our build machines, so the paper's CIFAR-10 experiment (Figure 8) "
            f"runs on an available dataset instead; the Figure 8 chapter explains the "
            f"substitution.")

"""Which dense budget is trained out: the plateau runs Figure 8 needs, and the rule that reads them.

Figure 8's contrast can only show where the dense network has stopped improving. The plan
trains the dense ResNet-18 of FashionMNIST with the paper's augmentation (flip + 4-pixel pad
and crop), in float32, at each of Figure 8's three settings, for budgets of 10, 20 and 30
epochs, with 2 seeds (18 curves of :mod:`lthlib.studies.plateau`). Five epochs is left out:
without augmentation it is already 0.8 pp below its plateau, and the stability map's augmented
dense copies give its accuracy at no extra cost.

The rule (:func:`budget_choice`): per setting, the *plateau* is the highest seed-mean final
test accuracy over the measured budgets (the conservative choice: a noisy high point makes a
budget harder to accept), and the chosen budget is the smallest whose seed mean is within
``tolerance_pp`` of it. Figure 8 needs one budget for all its settings, so its budget is the
largest of the three. A choice counts as final only when every budget of the setting has the
planned number of seeds.

    python -m lthlib.studies.plateau_plan --list
    python -m lthlib.studies.plateau_plan --runs 0 1      # in this order, one thread
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from lthlib.studies.plateau import PlateauConfig, plateau_curves, read_plateau, run_plateau
from lthlib.store.run_store import resolve_runs_dir
from lthlib.util.errors import CorruptRecordError

# Figure 8's settings as (lr, warmup fraction of the budget); the paper's warmup is 20K of
# 30K iterations, and for ResNet-18 this library's ramp ends at the first drop (2/3).
PLAN_SETTINGS: dict[str, tuple[float, float]] = {
    "lr0.1": (0.1, 0.0), "lr0.01": (0.01, 0.0), "lr0.03-warmup": (0.03, 0.667)}
PLAN_EPOCHS = (10, 20, 30)
PLAN_SEEDS = (0, 1)
TOLERANCE_PP = 0.3  # issue: "within 0.3 pp of its plateau"; about one test-set standard error


def plan_configs() -> list[PlateauConfig]:
    """The 18 planned curves, in the order that decides soonest: the longest budget of every
    setting (the plateau) and the shortest, seed by seed, then the middle budgets."""
    order = [(e, s) for s in PLAN_SEEDS for e in (PLAN_EPOCHS[-1], PLAN_EPOCHS[0])]
    order += [(e, s) for e in PLAN_EPOCHS[1:-1] for s in PLAN_SEEDS]
    return [PlateauConfig(epochs=e, lr=lr, warmup_fraction=wf, augment=True, seed=s)
            for e, s in order for lr, wf in PLAN_SETTINGS.values()]


def setting_label(cfg: dict[str, Any]) -> str:
    """A curve's setting, from its record's ``config``: learning rate, warmup, augmentation
    and precision (everything but the budget and the seed)."""
    parts = [f"lr {cfg['lr']:g}"]
    if cfg.get("warmup_fraction"):
        parts.append(f"warmup {cfg['warmup_fraction']:.3g}")
    parts.append("augmented" if cfg.get("augment") else "no augmentation")
    parts.append(cfg["precision"])
    return ", ".join(parts)


def plan_progress(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per planned curve: index, setting, budget, seed, epochs done, complete, wall
    time (s) and CPU of the stored curve."""
    rows = []
    for i, cfg in enumerate(plan_configs()):
        row = {"index": i, "setting": setting_label(asdict(cfg)), "epochs": cfg.epochs,
               "seed": cfg.seed, "epochs done": 0, "complete": False,
               "wall_time_s": float("nan"), "cpu": ""}
        try:
            _, rec = read_plateau(resolve_runs_dir(runs_dir) / "plateau" / cfg.name())
            row.update({"epochs done": int(rec.get("epochs_done", 0)),
                        "complete": bool(rec.get("complete")),
                        "wall_time_s": float(rec.get("wall_time_s", float("nan"))),
                        "cpu": rec.get("hardware", {}).get("cpu", "")})
        except (FileNotFoundError, CorruptRecordError):
            pass
        rows.append(row)
    return pd.DataFrame(rows)


def budget_table(runs_dir: str | Path | None = None,
                 tolerance_pp: float = TOLERANCE_PP) -> pd.DataFrame:
    """One row per (setting, budget) of the complete stored curves: seeds, the seed-mean final
    test accuracy (%), each seed's, the seed-mean final training accuracy (%), the distance to
    the setting's plateau (pp) and whether it is within ``tolerance_pp``."""
    rows = []
    for _, curve, rec in plateau_curves(runs_dir):
        if not rec.get("complete"):
            continue
        cfg = rec["config"]
        # the plan's settings first (augmented float32, lr 0.1 / 0.01 / warmup), then others
        order = (not cfg.get("augment"), cfg["precision"] != "fp32",
                 bool(cfg.get("warmup_fraction")), -float(cfg["lr"]))
        rows.append({"order": order, "setting": setting_label(cfg), "epochs": int(cfg["epochs"]),
                     "iterations": int(rec["train"]["iterations"]), "seed": int(cfg["seed"]),
                     "test": 100 * float(curve["test_acc"].iloc[-1]),
                     "train": 100 * float(curve["train_acc"].iloc[-1]),
                     "wall_s": float(rec["wall_time_s"])})
    if not rows:
        return pd.DataFrame()
    runs = pd.DataFrame(rows)
    out = []
    for (_, setting, epochs), g in runs.groupby(["order", "setting", "epochs"], sort=True):
        g = g.sort_values("seed")
        out.append({"setting": setting, "epochs": epochs, "iterations": g["iterations"].iloc[0],
                    "seeds": len(g), "test acc. (%)": g["test"].mean(),
                    "per seed (%)": ", ".join(f"{v:.2f}" for v in g["test"]),
                    "train acc. (%)": g["train"].mean(),
                    "wall time per run (min)": g["wall_s"].mean() / 60})
    table = pd.DataFrame(out)
    top = table.groupby("setting")["test acc. (%)"].transform("max")
    table["below the plateau (pp)"] = top - table["test acc. (%)"]
    table["within tolerance"] = table["below the plateau (pp)"] <= tolerance_pp
    return table


def budget_choice(table: pd.DataFrame, seeds: int = len(PLAN_SEEDS)
                  ) -> dict[str, tuple[int | None, bool]]:
    """Per setting of a :func:`budget_table`: (the smallest budget within tolerance, whether
    the choice is final). Final needs at least two budgets, each with ``seeds`` seeds; with one
    budget there is no plateau to be within, and the budget is None."""
    out: dict[str, tuple[int | None, bool]] = {}
    if table.empty:
        return out
    for setting, g in table.groupby("setting", sort=False):
        if len(g) < 2:
            out[setting] = (None, False)
            continue
        ok = g[g["within tolerance"]].sort_values("epochs")
        out[setting] = (int(ok["epochs"].iloc[0]), bool((g["seeds"] >= seeds).all()))
    return out


def figure8_budget(choice: dict[str, tuple[int | None, bool]],
                   settings: Iterable[str] | None = None) -> tuple[int | None, bool]:
    """One budget for all of Figure 8's augmented float32 settings: the largest chosen one,
    final only when every setting's choice is; (None, False) while any setting lacks one."""
    wanted = [setting_label(asdict(PlateauConfig(lr=lr, warmup_fraction=wf, augment=True)))
              for lr, wf in PLAN_SETTINGS.values()] if settings is None else list(settings)
    got = [choice.get(s, (None, False)) for s in wanted]
    if any(e is None for e, _ in got):
        return None, False
    return max(e for e, _ in got if e is not None), all(f for _, f in got)


def chosen_budget(runs_dir: str | Path | None = None) -> tuple[int | None, bool]:
    """Figure 8's budget from the stored curves: :func:`figure8_budget` of the store."""
    return figure8_budget(budget_choice(budget_table(runs_dir)))


def main(argv: list[str] | None = None) -> int:
    """``python -m lthlib.studies.plateau_plan --runs 0 1``: train those planned curves."""
    ap = argparse.ArgumentParser(prog="python -m lthlib.studies.plateau_plan",
                                 description="The plateau runs that choose Figure 8's budget "
                                             "(runs/plateau/)")
    ap.add_argument("--runs", type=int, nargs="+", default=None,
                    help="plan indices (see --list) to train, in this order")
    ap.add_argument("--list", action="store_true", help="print the plan and what is done")
    ap.add_argument("--runs-dir", default=None)
    args = ap.parse_args(argv)
    plan = plan_configs()
    if args.list or args.runs is None:
        print(plan_progress(args.runs_dir).to_string(index=False))
        return 0
    bad = [j for j in args.runs if not 0 <= j < len(plan)]
    if bad:
        raise SystemExit(f"--runs {bad}: allowed plan indices 0..{len(plan) - 1} (see --list)")
    torch.set_num_threads(1)
    for j in args.runs:
        print(run_plateau(plan[j], args.runs_dir, progress=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

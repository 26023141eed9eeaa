"""The stability map of Figure 8's substitute regime: which pairs, in which order, and the
command that measures the missing ones (``python -m lthlib.studies.stability_map --part 0/2``).

30 pairs (:mod:`lthlib.studies.stability`), seed by seed so that a partial map is balanced. Each part
of ``--part i/n`` takes every n-th pair, so n processes of one thread share the work;
``--pairs`` puts the pairs that answer the most first.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lthlib.config.experiment import make_experiment
from lthlib.data.datasets import load_tensors_for
from lthlib.studies.stability import (StabilityConfig, load_pair, pair_dir, regime_config,
                                      run_pair, source_trial)

SETTINGS = ("lr0.1", "lr0.01", "lr0.03-warmup")
MAP_LEVEL = 3  # Pm 27.1% at 36% per round
MAP_REWINDS = (21, 43, 107)  # about 1%, 2% and 5% of the 2,145-iteration budget


def map_plan(seeds: tuple[int, ...] = (0, 1), runs_dir: str | Path | None = None
             ) -> list[StabilityConfig]:
    """The 30 pairs of the map, seed by seed so a partial map is balanced: per seed the dense
    network at θ0 for the three settings, ticket and re-init at level 3, the augmented dense
    network, and the dense lr 0.1 network from θk at three small k."""
    plan = []
    for seed in seeds:
        plan += [regime_config(s, seed) for s in SETTINGS]
        for s in SETTINGS:
            src = source_trial(s, seed, runs_dir=runs_dir).record["run_id"]
            plan += [regime_config(s, seed, start=v, level=MAP_LEVEL, source_run_id=src)
                     for v in ("ticket", "reinit")]
        plan += [regime_config(s, seed, augment=True) for s in SETTINGS]
        plan += [regime_config("lr0.1", seed, rewind_iteration=k) for k in MAP_REWINDS]
    return plan


def main(argv: list[str] | None = None) -> int:
    """``python -m lthlib.studies.stability_map --part 0/2``: measure this part's missing pairs."""
    ap = argparse.ArgumentParser(prog="python -m lthlib.studies.stability_map",
                                 description="ResNet-18 stability map (runs/lmc/)")
    ap.add_argument("--part", default="0/1", help="i/n: every n-th pair from the i-th")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--pairs", type=int, nargs="+", default=None,
                    help="plan indices (see --list) to measure, in this order; default all")
    ap.add_argument("--list", action="store_true", help="print the plan and what is done")
    args = ap.parse_args(argv)
    i, n = (int(v) for v in args.part.split("/"))
    if not 0 <= i < n:
        raise SystemExit(f"--part {args.part!r}: allowed i/n with 0 <= i < n")
    torch.set_num_threads(1)
    plan = map_plan(tuple(args.seeds), args.runs_dir)
    order = list(range(len(plan))) if args.pairs is None else args.pairs
    bad = [j for j in order if not 0 <= j < len(plan)]
    if bad:
        raise SystemExit(f"--pairs {bad}: allowed plan indices 0..{len(plan) - 1} (see --list)")
    data = None
    for pos, j in enumerate(order):
        cfg = plan[j]
        done = load_pair(pair_dir(cfg, args.runs_dir)) is not None
        if args.list:
            print(f"{j:2d} {cfg.regime:24s} {cfg.label:28s} seed{cfg.seed} "
                  f"{'done' if done else 'todo'}")
            continue
        if pos % n != i or done:
            continue
        if data is None:
            data = load_tensors_for(make_experiment("global-imp", "resnet18", "fashionmnist",
                                                    "converged-cpu").data)
        out = run_pair(cfg, args.runs_dir, data=data, progress=True)
        rec = json.loads((out / "record.json").read_text())
        print(f"{cfg.label} seed{cfg.seed} {cfg.regime}: {rec['wall_time_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

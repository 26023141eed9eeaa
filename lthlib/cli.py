"""Command line: ``python -m lthlib run|runs|sweep ...`` (``--help`` everywhere).

Examples::

    python -m lthlib run imp --arch lenet --dataset mnist --profile quick --trials 2
    python -m lthlib runs ls --json
    python -m lthlib runs import /path/to/other/runs
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .config import ARCHS, DATASETS, EXPERIMENTS, PROFILES, RESNET_LR_SETTINGS, make_experiment


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="lenet", type=str.lower, choices=ARCHS)
    p.add_argument("--dataset", default="mnist", type=str.lower, choices=DATASETS)
    p.add_argument("--profile", default="quick", choices=PROFILES,
                   help="paper = exact settings; quick/smoke = documented reductions")
    p.add_argument("--trials", type=int, default=1, help="number of trials (seeds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    p.add_argument("--reinits", type=int, default=None,
                   help="random re-inits / random-sparse networks per trial and level")
    p.add_argument("--rounds", type=int, default=None, help="IMP rounds (default: profile's)")
    p.add_argument("--lr-setting", default=None, choices=tuple(RESNET_LR_SETTINGS),
                   help="Figure 8 learning-rate setting (resnet18)")
    p.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                   "or the repository's runs/)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: env LTH_DATA_DIR "
                   "or ../shared/data)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: env "
                   "LTH_DEVICE, else cuda when available)")
    p.add_argument("--allow", action="store_true",
                   help="allow combinations the paper never ran (e.g. global-imp on lenet)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lthlib", description=(
        "Lottery Ticket Hypothesis experiments with a resumable runs/ store."))
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) one experiment; finished trials are "
                         "read from the store, never recomputed")
    run.add_argument("experiment", type=str.lower, choices=EXPERIMENTS)
    _add_experiment_args(run)
    run.add_argument("--no-reuse", action="store_true",
                     help="train every network, even those a finished trial with fewer "
                     "rounds or re-inits already has (default: extend that trial)")

    runs = sub.add_parser("runs", help="inspect the runs/ store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    ls = runs_sub.add_parser("ls", help="list experiments in the store")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.add_argument("--runs-dir", default=None)
    imp = runs_sub.add_parser("import", help="copy the finished, verified trials of another "
                              "store (e.g. one brought back from a GPU machine) into this one; "
                              "trials already present are kept, never overwritten")
    imp.add_argument("source", help="the other store's root (the folder holding imp/, ...)")
    imp.add_argument("--runs-dir", default=None, help="destination (default: env "
                     "LTH_RUNS_DIR or the repository's runs/)")

    sweep = sub.add_parser("sweep", help="run a set of experiments (local or on Ray)")
    sweep.add_argument("--experiment", nargs="+", type=str.lower, choices=EXPERIMENTS,
                       default=["imp"])
    sweep.add_argument("--executor", choices=("local", "ray"), default="local")
    sweep.add_argument("--ray-address", default=None,
                       help="Ray cluster address ('auto' joins a running one); default: "
                       "start a local Ray instance")
    sweep.add_argument("--max-retries", type=int, default=2)
    sweep.add_argument("--threads", type=int, default=1,
                       help="torch threads per trial (results depend on it; default 1)")
    _add_experiment_args(sweep)
    sweep.set_defaults(datasets=None)
    return parser


def _configs(args: argparse.Namespace, experiments: list[str]) -> list[Any]:
    return [make_experiment(e, args.arch, args.dataset, args.profile, args.trials, args.seed,
                            reinits=args.reinits, lr_setting=args.lr_setting,
                            rounds=args.rounds) for e in experiments]


def list_experiments(runs_dir: str | None = None) -> list[dict[str, Any]]:
    """Group the store's trials into experiments (one row per config minus seed)."""
    from .config import experiment_from_dict
    from .store import RunStore
    store = RunStore(runs_dir)
    df = store.list()
    if df.empty:
        return []
    keys = ["experiment", "arch", "dataset", "profile", "lr_setting", "variant"]

    def variant(rel: str) -> str:  # the config without its seed: 2 and 7 rounds differ
        try:
            cfg = json.loads((store.root / rel / "config.json").read_text())
            return experiment_from_dict(cfg).variant_id()
        except (OSError, ValueError, KeyError, TypeError):
            return ""
    df["variant"] = [variant(rel) for rel in df["path"]]
    df[keys] = df[keys].fillna("")
    out = []
    for key, g in df.groupby(keys, sort=True):
        fin = g[g["status"] == "finished"]
        out.append({**dict(zip(keys, key)), "trials": int(len(fin)),
                    "levels": int(fin["levels"].max()) if len(fin) else 0,
                    "status": "finished" if len(fin) == len(g) else
                    ",".join(sorted(set(g["status"]))),
                    "seeds": sorted(int(s) for s in g["seed"].dropna())})
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "runs" and args.runs_command == "import":
            from .store import import_trials
            report = import_trials(args.source, args.runs_dir)
            print(json.dumps(report, indent=1))
            return 1 if report["corrupt"] else 0
        if args.command == "runs":
            rows = list_experiments(args.runs_dir)
            if args.json:
                print(json.dumps(rows, indent=1))
            elif not rows:
                print("no experiments in the store")
            else:
                import pandas as pd
                print(pd.DataFrame(rows).to_string(index=False))
            return 0
        if args.command == "run":
            from .experiments import run_experiment
            cfg = _configs(args, [args.experiment])[0]
            res = run_experiment(cfg, args.runs_dir, args.device, not args.no_progress,
                                 args.data_dir, args.allow, reuse=not args.no_reuse)
            print(f"{cfg.experiment} {cfg.model.arch}/{cfg.data.dataset} profile={cfg.profile}"
                  f": {len(res.trials)} trial(s) finished; records in "
                  f"{', '.join(str(t.path) for t in res.trials)}")
            return 0
        if args.command == "sweep":
            from .sweep import run_sweep
            report = run_sweep(_configs(args, args.experiment), runs_dir=args.runs_dir,
                               executor=args.executor, ray_address=args.ray_address,
                               device=args.device, data_root=args.data_dir,
                               max_retries=args.max_retries, allow=args.allow,
                               progress=not args.no_progress, threads=args.threads)
            print(json.dumps(report, indent=1))
            return 0 if not report.get("failed") else 1
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 2

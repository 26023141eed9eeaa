"""The one command line: ``python -m lthlib run|runs|sweep|bench|book|plateau|lmc``
(``--help`` everywhere). Each subcommand's parser sets ``handler`` (``args -> exit status``);
``bench``, ``book``, ``plateau`` and ``lmc`` register their own parsers (``register(sub)``
in their modules).

Examples::

    python -m lthlib run imp --arch lenet --dataset mnist --profile quick --trials 2
    python -m lthlib runs ls --json
    python -m lthlib runs import /path/to/other/runs
    python -m lthlib runs migrate     # hash every file of records written before that rule
    python -m lthlib bench --quick --json
    python -m lthlib book build --profile quick
    python -m lthlib plateau --epochs 10 --precision bf16

Bad values stop with one line on stderr naming the value and what is allowed (exit 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from lthlib import bench
from lthlib.studies import lmc, plateau
from lthlib.util.errors import run_handler
from lthlib.config.paper import (ARCHS, DATASETS, EXPERIMENTS, PRECISIONS, PROFILES,
                                 RESNET_LR_SETTINGS)
from lthlib.config.experiment import ExperimentConfig, make_experiment
from lthlib.experiments.procedures import run_experiment
from lthlib.report import build
from lthlib.util.errors import CorruptRecordError
from lthlib.store.run_store import RunStore, config_of
from lthlib.store.transfer import import_trials, migrate_hashes
from lthlib.experiments.sweep import run_sweep


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
    p.add_argument("--rewind-iter", type=int, default=0, metavar="K",
                   help="IMP late rewinding: reset survivors to the dense run's iteration K "
                   "instead of θ0 (default 0: the paper's θ0)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="conv nets' arithmetic (default: the profile's; bf16 only where "
                   "the CPU has AMX/AVX512-BF16 or on a GPU, else it is emulated and slow)")
    p.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                   "or the repository's runs/)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: env LTH_DATA_DIR, "
                   "else ./data)")
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
    run.add_argument("--no-wait", action="store_true",
                     help="skip trials another process is training (default: wait for "
                     "them, then read them from the store)")
    run.set_defaults(handler=_run)

    runs = sub.add_parser("runs", help="inspect the runs/ store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    ls = runs_sub.add_parser("ls", help="list experiments in the store")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                    "or the repository's runs/)")
    ls.set_defaults(handler=_runs_ls)
    imp = runs_sub.add_parser("import", help="copy the finished, verified trials of another "
                              "store (e.g. one brought back from a GPU machine) into this one; "
                              "trials already present are kept, never overwritten")
    imp.add_argument("source", help="the other store's root (the folder holding imp/, ...)")
    imp.add_argument("--runs-dir", default=None, help="destination (default: env "
                     "LTH_RUNS_DIR or the repository's runs/)")
    imp.add_argument("--no-wait", action="store_true",
                     help="skip trials a process is training in the destination (default: "
                     "wait for it, then keep what it stored)")
    imp.set_defaults(handler=_runs_import)
    mig = runs_sub.add_parser("migrate", help="add the missing sha256 of finished trials "
                              "written before every file was hashed, where the existing "
                              "hashes verify (records say so); others stay unverified")
    mig.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                     "or the repository's runs/)")
    mig.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    mig.set_defaults(handler=_runs_migrate)

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
    sweep.set_defaults(datasets=None, handler=_sweep)
    bench.register(sub)
    build.register(sub)
    plateau.register(sub)
    lmc.register(sub)
    return parser


def _configs(args: argparse.Namespace, experiments: list[str]) -> list[ExperimentConfig]:
    return [make_experiment(e, args.arch, args.dataset, args.profile, args.trials, args.seed,
                            reinits=args.reinits, lr_setting=args.lr_setting,
                            rounds=args.rounds,
                            **({"rewind_iteration": args.rewind_iter} if args.rewind_iter
                               else {}),
                            **({"precision": args.precision} if args.precision else {}))
            for e in experiments]


def list_experiments(runs_dir: str | RunStore | None = None) -> list[dict[str, Any]]:
    """Group the store's trials into experiments (one row per config minus seed); corrupt
    and unverified trials get a row each, with the reason, so nothing damaged is hidden.
    ``runs_dir`` may be an open store (what it verified already is not verified again)."""
    store = runs_dir if isinstance(runs_dir, RunStore) else RunStore(runs_dir)
    df = store.list()
    if df.empty:
        return []
    keys = ["experiment", "arch", "dataset", "profile", "lr_setting", "variant"]

    def variant(rel: str) -> str:  # the config without its seed: 2 and 7 rounds differ
        try:
            return config_of(store.root / rel / "config.json").variant_id()
        except (OSError, CorruptRecordError):
            return ""
    bad = df["status"].isin(["corrupt", "unverified"])
    good = df[~bad].copy()
    good["variant"] = [variant(rel) for rel in good["path"]]
    good[keys] = good[keys].astype(object).fillna("")
    out = []
    for key, g in good.groupby(keys, sort=True):
        fin = g[g["status"] == "finished"]
        notes = [f"{r.path}: {r.reason}" for r in fin.itertuples() if r.reason]
        out.append({**dict(zip(keys, key)), "trials": int(len(fin)),
                    "levels": int(fin["levels"].max()) if len(fin) else 0,
                    "status": "finished" if len(fin) == len(g) else
                    ",".join(sorted(set(g["status"]))),
                    "seeds": sorted(int(s) for s in g["seed"].dropna()),
                    **({"ignored": notes} if notes else {})})
    for r in df[bad].astype(object).where(df[bad].notna(), None).to_dict("records"):
        out.append({**{k: r.get(k) or "" for k in keys}, "trials": 0, "levels": 0,
                    "status": r["status"], "seeds": [], "path": r["path"],
                    "reason": r["reason"]})
    return out


def _runs_root(runs_dir: str | None) -> RunStore:
    store = RunStore(runs_dir)
    if not store.root.is_dir():
        raise FileNotFoundError(f"no runs store at {store.root}: not a folder; allowed: an "
                                f"existing store folder (--runs-dir, env LTH_RUNS_DIR)")
    return store


def _run(args: argparse.Namespace) -> int:
    cfg = _configs(args, [args.experiment])[0]
    res = run_experiment(cfg, args.runs_dir, args.device, not args.no_progress,
                         args.data_dir, args.allow, reuse=not args.no_reuse,
                         wait=not args.no_wait)
    print(f"{cfg.experiment} {cfg.model.arch}/{cfg.data.dataset} profile={cfg.profile}"
          f": {len(res.trials)} of {cfg.trials} trial(s) finished; records in "
          f"{', '.join(str(t.path) for t in res.trials) or '(none)'}")
    if len(res.trials) < cfg.trials:
        print(f"error: {cfg.trials - len(res.trials)} trial(s) did not finish (skipped "
              f"or unreadable); `python -m lthlib runs ls` says why", file=sys.stderr)
        return 1
    return 0


def _runs_ls(args: argparse.Namespace) -> int:
    store = _runs_root(args.runs_dir)
    store.ensure_index()
    rows = list_experiments(store)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no experiments in the store at {store.root}")
    else:
        table = pd.DataFrame(rows)
        print(table.drop(columns=[c for c in ("path", "reason", "ignored") if c in table])
              .to_string(index=False))
        for r in rows:
            if r.get("reason"):
                print(f"{r['status']}: {r['path']}: {r['reason']}")
            for note in r.get("ignored", []):
                print(f"finished: {note}")
    return 0


def _runs_import(args: argparse.Namespace) -> int:
    report = import_trials(args.source, args.runs_dir, wait=not args.no_wait)
    print(json.dumps(report, indent=1))
    return 1 if any(report[k] for k in ("corrupt", "unverified", "symlinks", "busy")) else 0


def _runs_migrate(args: argparse.Namespace) -> int:
    report = migrate_hashes(_runs_root(args.runs_dir).root, dry_run=args.dry_run)
    print(json.dumps(report, indent=1))
    return 1 if report["refused"] else 0


def _sweep(args: argparse.Namespace) -> int:
    report = run_sweep(_configs(args, args.experiment), runs_dir=args.runs_dir,
                       executor=args.executor, ray_address=args.ray_address,
                       device=args.device, data_root=args.data_dir,
                       max_retries=args.max_retries, allow=args.allow,
                       progress=not args.no_progress, threads=args.threads)
    print(json.dumps(report, indent=1))
    return 0 if not report.get("failed") else 1


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the chosen subcommand.
    Bad values end with one line on stderr naming the value and what is allowed (exit 2)."""
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args)

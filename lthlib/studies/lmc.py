"""Stability to SGD noise (linear mode connectivity, Frankle et al. 2020, arXiv:1912.05671).

Two copies of one subnetwork start from the same weights (IMP's rewind point: θ0 for LeNet)
and train with different minibatch orders. If the test error does not rise on the straight
line between their final weights, training is stable to SGD noise. The *instability* is the
largest error on that path minus the mean of the two endpoints' errors.

:func:`run_lmc` measures it for the ticket and the re-init control at chosen IMP levels of a
finished trial (masks from :mod:`lthlib.pruning.mask_files`) and stores the result like a trial:
``runs/lmc/<arch>-<dataset>-<profile>/seed<s>-<hash>/`` with ``lmc.json`` (the config; its
sha256 is the run id), ``path.csv``, ``summary.csv`` and ``record.json`` (sha256 of each
file, hardware, wall time, lthlib version, git commit). The config file is not called
``config.json`` so the experiment store's listing skips these folders.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lthlib.training.population import engine
from lthlib.util.errors import CorruptRecordError, run_handler
from lthlib.config.paper import PROFILE_ORDER
from lthlib.data.datasets import TensorSplit, load_tensors_for
from lthlib.util.device import default_device, describe_hardware
from lthlib.training.stage_networks import derive_seed
from lthlib.nets.paper_networks import create_network
from lthlib.store.file_checks import df_to_csv_text
from lthlib.store.records import git_commit, read_record, write_record
from lthlib.store.run_store import RunStore, TrialRecord
from lthlib.experiments.tickets import mask_trials, ticket_masks, theta0

State = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]
LMC_FILES = ("lmc.json", "path.csv", "summary.csv")


# --- the measurement -------------------------------------------------------------------------

def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                alpha: float) -> State:
    """(1 - alpha) * a + alpha * b, key by key (integer buffers are taken from ``a``)."""
    if set(a) != set(b):
        raise ValueError(f"states differ in keys: {sorted(set(a) ^ set(b))}")
    return {k: ((1 - alpha) * a[k] + alpha * b[k]) if a[k].is_floating_point() else a[k].clone()
            for k in a}


def masked(state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> State:
    """``state`` with each ``<layer>.weight`` multiplied by its mask."""
    out = {k: v.clone() for k, v in state.items()}
    for layer, m in (masks or {}).items():
        key = f"{layer}.weight"
        if key not in out:
            raise ValueError(f"mask for {layer!r} has no weight in the state; allowed: "
                             f"{', '.join(k[:-7] for k in out if k.endswith('.weight'))}")
        out[key] = out[key] * m.to(out[key])
    return out


@torch.no_grad()
def error_rate(net: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor,
               y: torch.Tensor, batch: int = 5000) -> float:
    """Classification error of ``net`` loaded with ``state`` on (x, y)."""
    net.load_state_dict(dict(state))
    net.eval()
    wrong = 0
    for i in range(0, len(y), batch):
        wrong += int((net(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum())
    return wrong / len(y)


def path_errors(net: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None,
                points: int = 30) -> pd.DataFrame:
    """Error at ``points`` evenly spaced points of the segment from ``a`` (alpha 0) to ``b``."""
    if points < 2:
        raise ValueError(f"points must be >= 2 (both endpoints), got {points}")
    alphas = np.linspace(0.0, 1.0, points)
    errs = [error_rate(net, masked(interpolate(a, b, float(t)), masks), x, y) for t in alphas]
    return pd.DataFrame({"alpha": alphas, "test_error": errs})


def instability(errors: Sequence[float] | np.ndarray) -> float:
    """Largest error on the path minus the mean of its two endpoints' errors (>= 0)."""
    e = np.asarray(errors, dtype=float)
    if e.size < 2:
        raise ValueError(f"a path needs at least its two endpoints, got {e.size} errors")
    return float(e.max() - (e[0] + e[-1]) / 2)


# --- the stored experiment -------------------------------------------------------------------

@dataclass(frozen=True)
class LMCConfig:
    """What identifies one measurement: the IMP trial it reads, the levels, the path."""

    source_run_id: str  # the IMP trial whose masks and θ0 are used
    arch: str
    dataset: str
    profile: str
    seed: int
    levels: tuple[int, ...]
    points: int = 30
    copies_seed_tag: str = "lmc-data-order"  # data orders: derive_seed(seed, tag, copy)
    variants: tuple[str, ...] = ("ticket", "reinit")
    rewind_iteration: int = 0  # LeNet: IMP resets to θ0

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "lmc", **asdict(self)}

    def run_id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def lmc_dir(store: RunStore, cfg: LMCConfig) -> Path:
    return (store.root / "lmc" / f"{cfg.arch}-{cfg.dataset}-{cfg.profile}"
            / f"seed{cfg.seed}-{cfg.run_id()}")


def load_lmc(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]] | None:
    """(path rows, summary, record) of a finished measurement whose files match their sha256
    (:func:`lthlib.store.records.read_record`); None when it has no record. A file that is
    missing, a link or does not match raises ValueError (this module's callers catch it)."""
    path = Path(path)
    try:
        record = read_record(path, LMC_FILES)
    except FileNotFoundError:
        return None
    except CorruptRecordError as err:
        raise ValueError(str(err)) from None
    return pd.read_csv(path / "path.csv"), pd.read_csv(path / "summary.csv"), record


def lmc_results(arch: str = "lenet", dataset: str = "mnist", profile: str = "quick",
                runs_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame,
                                                               list[dict[str, Any]]]:
    """Every finished measurement of a group: path rows and summaries (with ``seed``)."""
    group = RunStore(runs_dir).root / "lmc" / f"{arch}-{dataset}-{profile}"
    paths, sums, records = [], [], []
    for rec in sorted(group.glob("seed*/record.json")):
        got = load_lmc(rec.parent)
        if got is None:
            continue
        p, s, r = got
        paths.append(p.assign(seed=r["seed"]))
        sums.append(s.assign(seed=r["seed"]))
        records.append(r)
    if not records:
        return pd.DataFrame(), pd.DataFrame(), []
    return pd.concat(paths, ignore_index=True), pd.concat(sums, ignore_index=True), records


def _members(trial: TrialRecord, cfg: LMCConfig) -> list[tuple[str, int, int, State, Masks]]:
    """(variant, level, copy, init, masks) for every network to train."""
    t = trial.config
    m = t.model
    init0 = theta0(trial)
    out = []
    for level in cfg.levels:
        masks = ticket_masks(trial, level)
        for variant in cfg.variants:
            if variant == "reinit":
                if level == 0:  # the dense network has no re-init control in IMP
                    continue
                # the same θ0' as the trial's first re-init control of this level
                init = create_network(m.arch, m.num_classes, m.in_shape,
                                      seed=derive_seed(t.seed, "reinit", level, 0)).state_dict()
            elif variant == "ticket":
                init = init0
            else:
                raise ValueError(f"unknown variant {variant!r}; allowed: ticket, reinit")
            for copy in (0, 1):
                out.append((variant, level, copy, init, masks))
    return out


def run_lmc(trial: TrialRecord, levels: Sequence[int], points: int = 30,
            runs_dir: str | Path | None = None, device: torch.device | str | None = "cpu",
            data: TensorSplit | None = None, threads: int = 1) -> Path:
    """Measure (or read back) the instability of ``trial``'s ticket and re-init at ``levels``.

    Both copies train with the trial's own training config (its profile) from the rewind
    point under the level's mask; only the minibatch order differs between the copies.
    Returns the measurement's folder.
    """
    t = trial.config
    if t.experiment != "imp":
        raise ValueError(f"LMC reads IMP trials; got experiment {t.experiment!r}")
    if getattr(t, "rewind_iteration", 0) != 0:  # the copies here start from θ0
        raise ValueError(f"LMC here starts both copies from θ0; the trial rewinds to "
                         f"iteration {t.rewind_iteration}; allowed: rewind_iteration 0")
    cfg = LMCConfig(trial.record["run_id"], t.model.arch, t.data.dataset, t.profile, t.seed,
                    tuple(int(v) for v in levels), int(points))
    store = RunStore(runs_dir)
    out_dir = lmc_dir(store, cfg)
    if load_lmc(out_dir) is not None:
        return out_dir
    dev = default_device(device)
    data = data if data is not None else load_tensors_for(t.data, device=dev)
    members = _members(trial, cfg)
    orders = [derive_seed(t.seed, cfg.copies_seed_tag, c) for c in (0, 1)]
    # one evaluation at the end: the path needs only the final weights
    train_cfg = replace(t.train, eval_every=t.train.iterations)
    code_version = git_commit()
    t0 = time.perf_counter()
    results = engine.train_population(
        t.model.arch, [mb[3] for mb in members], [mb[4] for mb in members], data, train_cfg,
        [orders[mb[2]] for mb in members], device=dev, threads=threads)
    train_wall = time.perf_counter() - t0
    finals = {(v, lv, c): r.final_state for (v, lv, c, _, _), r in zip(members, results)}
    net = create_network(t.model.arch, t.model.num_classes, t.model.in_shape, seed=0).to(dev)
    x, y = data.test_x.to(dev), data.test_y.to(dev)
    pm = {lv: float(trial.summary.loc[(trial.summary.variant == "ticket")
                                      & (trial.summary.level == lv), "pm"].iloc[0])
          for lv in cfg.levels}
    rows, summary = [], []
    for (variant, level, copy, _, masks) in members:
        if copy == 1:
            continue
        a, b = finals[(variant, level, 0)], finals[(variant, level, 1)]
        path = path_errors(net, {k: v.to(dev) for k, v in a.items()},
                           {k: v.to(dev) for k, v in b.items()}, x, y,
                           {k: v.to(dev) for k, v in masks.items()}, cfg.points)
        path.insert(0, "pm", pm[level])
        path.insert(0, "level", level)
        path.insert(0, "variant", variant)
        rows.append(path)
        e = path["test_error"].to_numpy()
        summary.append({"variant": variant, "level": level, "pm": pm[level],
                        "error_a": e[0], "error_b": e[-1], "max_path_error": e.max(),
                        "instability": instability(e)})
    wall = time.perf_counter() - t0
    texts = {"lmc.json": json.dumps(cfg.to_dict(), indent=1) + "\n",
             "path.csv": df_to_csv_text(pd.concat(rows, ignore_index=True)),
             "summary.csv": df_to_csv_text(pd.DataFrame(summary))}
    record = {"status": "finished", "run_id": cfg.run_id(), "experiment": "lmc",
              "arch": cfg.arch, "dataset": cfg.dataset, "profile": cfg.profile,
              "seed": cfg.seed, "source_run_id": cfg.source_run_id,
              "source_path": "/".join(trial.path.parts[-3:]),
              "networks": len(members), "train_iterations": train_cfg.iterations,
              "wall_time_s": round(wall, 2), "train_wall_time_s": round(train_wall, 2),
              "hardware": describe_hardware(dev), "git_commit": code_version,
              "sparse_path_below_density": engine.sparse_threshold(dev)}
    write_record(out_dir, texts, record)
    return out_dir


def ensure_lmc(trials: Sequence[TrialRecord], levels: Sequence[int], points: int = 30,
               runs_dir: str | Path | None = None, compute: bool = True
               ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """The measurements of ``trials`` at ``levels`` (path rows, summary, records), computing
    missing ones when ``compute``; trials without a stored measurement are left out."""
    store = RunStore(runs_dir)
    data: TensorSplit | None = None
    paths, sums, records = [], [], []
    for tr in trials:
        t = tr.config
        cfg = LMCConfig(tr.record["run_id"], t.model.arch, t.data.dataset, t.profile, t.seed,
                        tuple(int(v) for v in levels), int(points))
        got = load_lmc(lmc_dir(store, cfg))
        if got is None and compute:
            data = data if data is not None else load_tensors_for(t.data)
            got = load_lmc(run_lmc(tr, levels, points, runs_dir, data=data))
        if got is None:
            continue
        p, s, r = got
        paths.append(p.assign(seed=t.seed))
        sums.append(s.assign(seed=t.seed))
        records.append(r)
    if not records:
        return pd.DataFrame(), pd.DataFrame(), []
    return pd.concat(paths, ignore_index=True), pd.concat(sums, ignore_index=True), records



def lmc_profile(dataset: str, arch: str = "lenet",
                runs_dir: str | Path | None = None) -> str | None:
    """The largest profile with stored measurements for ``dataset``, if any."""
    root = RunStore(runs_dir).root / "lmc"
    for p in PROFILE_ORDER:
        if any((root / f"{arch}-{dataset}-{p}").glob("seed*/record.json")):
            return p
    return None


_DESCRIPTION = ("Linear mode connectivity: measure every finished IMP trial of a group that "
                "stored its masks (runs/lmc/).")


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="lenet")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--profile", default="quick")
    p.add_argument("--levels", type=int, nargs="+", required=True)
    p.add_argument("--points", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default: all")
    p.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                   "or the repository's runs/)")


def register(sub: Any) -> None:
    """Add the ``lmc`` subcommand to an argparse ``add_subparsers()`` object."""
    p = sub.add_parser("lmc", help=_DESCRIPTION, description=_DESCRIPTION)
    _add_options(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """``python -m lthlib lmc --dataset mnist --profile quick --levels 0 3 7 11 15 18``."""
    trials = [tr for tr in mask_trials(args.arch, args.dataset, args.profile,
                                       runs_dir=args.runs_dir)
              if args.seeds is None or tr.config.seed in args.seeds]
    if not trials:
        raise ValueError(f"no finished IMP trials with masks for {args.arch}-{args.dataset}-"
                         f"{args.profile}; allowed: a group `python -m lthlib runs ls` lists")
    data = load_tensors_for(trials[0].config.data)
    for tr in trials:
        out = run_lmc(tr, args.levels, args.points, args.runs_dir, data=data)
        print(out, read_record(out, LMC_FILES)["wall_time_s"], flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lthlib.studies.lmc [options]``: the same as ``python -m lthlib lmc``."""
    p = argparse.ArgumentParser(prog="python -m lthlib.studies.lmc", description=_DESCRIPTION)
    _add_options(p)
    return run_handler(handle, p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

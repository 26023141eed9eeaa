"""The sparse path's measurements: dense against sparse steps per IMP level, and a whole
IMP trial dense-only against the engine's default, side by side.

``--sparse`` measures, for one LeNet at every IMP level of the paper (fc layers keep 0.8^n,
the output layer 0.9^n), the engine's dense path against its sparse path
(:mod:`lthlib.training.population.sparse_train`), and the whole 19-level sweep's ratio of training times.
``--sparse-trial PROFILE`` runs one real LeNet/MNIST IMP trial twice at once, one process per
core, dense-only (``LTH_SPARSE_BELOW=0``) against the engine's default, and compares their
wall times and results.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lthlib.bench.common import load_avg
from lthlib.data.datasets import TensorSplit
from lthlib.training.population.engine import sparse_threshold, train_population
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import get_masks, plain_state, prune_network
from lthlib.bench.lenet import PAPER_ADAM, tiny_eval


def sparse_sweep(data: TensorSplit, seconds: float, levels: range = range(19),
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Dense against sparse path, one LeNet per IMP level, one thread, eval excluded."""
    small = tiny_eval(data)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for level in levels:
            net = create_network("lenet", seed=level)
            for _ in range(level):
                prune_network(net)  # the paper's rates: fc 20%, output 10%
            init, mask = plain_state(net), get_masks(net)
            density = float(mask["fc1"].float().mean()) if mask else 1.0
            rates = {}
            for name, below in (("dense", 0.0), ("sparse", 1.0)):
                def timed(its: int, below: float = below) -> float:
                    cfg = replace(PAPER_ADAM, iterations=its, eval_every=its)
                    t0 = time.perf_counter()
                    train_population("lenet", [init], [mask or None], small, cfg, [0],
                                            device="cpu", sparse_below=below)
                    return time.perf_counter() - t0
                probe = 20
                its = max(probe, int(probe / timed(probe) * seconds))
                rates[name] = its / timed(its)
            rows.append({"level": level, "fc1_density": round(density, 4),
                         "dense_it_s": round(rates["dense"], 1),
                         "sparse_it_s": round(rates["sparse"], 1),
                         "ratio": round(rates["sparse"] / rates["dense"], 2)})
            echo(f"  level {level:>2}  fc1 {100 * density:5.1f}%  dense {rates['dense']:7.1f}"
                 f"  sparse {rates['sparse']:7.1f} it/s  sparse/dense {rows[-1]['ratio']:.2f}x")
    finally:
        torch.set_num_threads(before)
    threshold = sparse_threshold("cpu")
    dense_time = sum(1 / r["dense_it_s"] for r in rows)
    auto_time = sum(1 / (r["sparse_it_s"] if r["fc1_density"] <= threshold else r["dense_it_s"])
                    for r in rows)
    result = {"levels": rows, "threshold": threshold,
              "sweep_ratio": round(dense_time / auto_time, 2), "torch": torch.__version__,
              "load_avg_1min": (load_avg() or [None])[0]}
    echo(f"  IMP sweep (levels {levels.start}-{levels.stop - 1}), engine default (sparse at "
         f"fc1 <= {100 * threshold:.0f}%) / dense only = {result['sweep_ratio']}x")
    return result


def imp_trial_pair(profile: str = "quick", seed: int = 0, echo: Callable[[str], None] = print
                   ) -> dict[str, Any]:
    """The same IMP trial, dense-only and with the sparse path, as two concurrent 1-thread
    processes (equal load): wall times, and how far the two runs' per-level results differ."""
    code = ("import torch; torch.set_num_threads(1); from lthlib.cli import main; "
            f"main(['run', 'imp', '--profile', {profile!r}, '--seed', '{seed}', "
            "'--no-progress', '--no-reuse'])")
    load_at_start = (load_avg() or [None])[0]  # other work on the machine skews both runs
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for name, below in (("dense", "0"), ("sparse", "")):
            env = {**os.environ, "LTH_SPARSE_BELOW": below, "LTH_DEVICE": "cpu",
                   "LTH_RUNS_DIR": str(Path(tmp) / name)}
            procs[name] = subprocess.Popen([sys.executable, "-c", code], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for name, proc in procs.items():
            out = proc.communicate()[0].decode()
            if proc.returncode != 0:
                raise RuntimeError(f"{name} run failed:\n{out[-3000:]}")
        recs, sums = {}, {}
        for name in procs:
            [rec] = list((Path(tmp) / name).glob("imp/*/*/record.json"))
            recs[name] = json.loads(rec.read_text())
            sums[name] = pd.read_csv(rec.parent / "summary.csv").set_index(
                ["variant", "level", "replicate"])
    d, s = sums["dense"], sums["sparse"]
    result = {
        "profile": profile, "seed": seed, "started": started,
        "load_avg_1min_at_start": load_at_start,
        "dense_wall_s": recs["dense"]["wall_time_s"],
        "sparse_wall_s": recs["sparse"]["wall_time_s"],
        "speedup": round(recs["dense"]["wall_time_s"] / recs["sparse"]["wall_time_s"], 2),
        "sparse_path_below_density": recs["sparse"].get("sparse_path_below_density"),
        "networks": len(d),
        "max_abs_diff_final_test_acc_pp": round(
            100 * float((d.final_test_acc - s.final_test_acc).abs().max()), 2),
        "mean_abs_diff_final_test_acc_pp": round(
            100 * float((d.final_test_acc - s.final_test_acc).abs().mean()), 3),
        "early_stop_iteration_equal": int((d.early_stop_iteration
                                           == s.early_stop_iteration).sum()),
        "hardware": recs["sparse"].get("hardware"), "torch": torch.__version__,
    }
    echo(f"  IMP trial ({profile}, seed {seed}, {len(d)} networks): dense only "
         f"{result['dense_wall_s']:.0f} s, with the sparse path {result['sparse_wall_s']:.0f} s"
         f" = {result['speedup']}x; final test accuracy differs by at most "
         f"{result['max_abs_diff_final_test_acc_pp']} pp (mean "
         f"{result['mean_abs_diff_final_test_acc_pp']} pp); early-stop iteration equal for "
         f"{result['early_stop_iteration_equal']} of {len(d)} networks")
    return result

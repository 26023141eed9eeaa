"""``python -m lthlib.bench``: how fast lthlib trains LeNet here, against the usual loops.

Measures, in one run and on one device (training-step throughput, evaluation excluded):

- baseline: the loop the assignment's users write: torchvision MNIST with ToTensor through
  a shuffling DataLoader, batch 60, ``Adam(lr=1.2e-3)``, one LeNet;
- plain: the best simple loop: one LeNet on in-memory tensors, ``Adam(fused=True)`` where
  the installed torch has it (at torch's default thread count and at one thread; the
  faster counts);
- engine: :func:`lthlib.engine.train_population`, in model-iterations per second, at the
  best population size / split of the ones tried;
- sgemm: a large float32 matmul, the machine's arithmetic ceiling.

``--imp-trial PROFILE`` runs one real LeNet/MNIST IMP trial twice at once, one process per
core, dense-only (``LTH_SPARSE_BELOW=0``) against the engine's default, and compares their
wall times and results.

``--sparse`` measures instead, for one LeNet at every IMP level of the paper (fc layers keep
0.8^n, the output layer 0.9^n), the engine's dense path against its sparse path
(:mod:`lthlib.sparse_train`), and the whole 19-level sweep's ratio of training times.

Absolute numbers move with machine load: compare ratios from the same run. ``--json`` prints
one JSON object on the last line of stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from . import engine
from .config import TrainConfig
from .data import TensorSplit, batch_indices, get_datasets, load_tensors
from .models import create_network

LENET_TRAIN_FLOP = 95.8e6  # 3 x forward (2 x 266,200 x 60): the counting convention
PAPER_ADAM = TrainConfig("adam", 1.2e-3, 60, 50_000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sgemm_gflops(device: torch.device, n: int = 2048, seconds: float = 0.5) -> float:
    """Best sustained GFLOP/s of an n x n float32 matmul (the arithmetic ceiling)."""
    if device.type == "cuda":
        n = max(n, 8192)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)
    _sync(device)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b, out=out)
        _sync(device)
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, 3 * 2 * n ** 3 / dt / 1e9)
    return best


def _timed_loop(step: Callable[[], None], seconds: float, warmup: int,
                device: torch.device) -> float:
    """Iterations/s of ``step`` over about ``seconds`` (time-boxed: a loaded machine is slow)."""
    for _ in range(warmup):
        step()
    _sync(device)
    done, t0 = 0, time.perf_counter()
    while True:
        for _ in range(10):
            step()
        done += 10
        _sync(device)
        spent = time.perf_counter() - t0
        if spent >= seconds:
            return done / spent


def baseline_it_s(device: torch.device, seconds: float) -> float:
    """torchvision MNIST + ToTensor + DataLoader(batch 60, shuffle) + Adam: one LeNet."""
    from torch.utils.data import DataLoader

    train_set = get_datasets("mnist")[0]
    loader = DataLoader(train_set, batch_size=60, shuffle=True)
    net = create_network("lenet", seed=0).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1.2e-3)
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return _timed_loop(step, seconds, 10, device)


def plain_it_s(data: TensorSplit, device: torch.device, seconds: float) -> float:
    """One LeNet on in-memory tensors with fused Adam: the best simple loop."""
    net = create_network("lenet", seed=0).to(device)
    try:
        opt = torch.optim.Adam(net.parameters(), lr=1.2e-3, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=1.2e-3)
    x_all, y_all = data.train_x.to(device), data.train_y.to(device)
    order = batch_indices(len(y_all), 60, 0)

    def step() -> None:
        idx = next(order).to(device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x_all[idx]), y_all[idx]).backward()
        opt.step()

    return _timed_loop(step, seconds, 20, device)


def _tiny_eval(data: TensorSplit, n: int = 64) -> TensorSplit:
    """The training data with n-example eval splits: engine timings exclude evaluation."""
    return replace(data, val_x=data.val_x[:n], val_y=data.val_y[:n], test_x=data.test_x[:n],
                   test_y=data.test_y[:n], train_eval_x=data.train_eval_x[:n],
                   train_eval_y=data.train_eval_y[:n])


def engine_it_s(data: TensorSplit, device: torch.device, population: int, seconds: float,
                parts: int | None, shared: bool = True, iterations: int | None = None,
                threads: int | None = None) -> float:
    """Model-iterations/s of train_population for LeNet (paper's Adam), eval excluded.

    A short run first (warm-up and rate estimate) sizes the timed run to about ``seconds``.
    """
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    seeds = [0] * population if shared else list(range(population))
    small = _tiny_eval(data)

    def timed(its: int) -> float:
        cfg = replace(PAPER_ADAM, iterations=its, eval_every=its)
        _sync(device)
        t0 = time.perf_counter()
        engine.train_population("lenet", inits, [None] * population, small, cfg, seeds,
                                device=device, parts=parts, threads=threads)
        _sync(device)
        return time.perf_counter() - t0

    probe = 10
    rate = probe / timed(probe)
    its = iterations or max(probe, min(100_000, int(rate * seconds)))
    return population * its / timed(its)


def sparse_sweep(data: TensorSplit, seconds: float, levels: range = range(19),
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Dense against sparse path, one LeNet per IMP level, one thread, eval excluded."""
    from .prune import get_masks, plain_state, prune_network
    small = _tiny_eval(data)
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
                    engine.train_population("lenet", [init], [mask or None], small, cfg, [0],
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
    threshold = engine.sparse_threshold("cpu")
    dense_time = sum(1 / r["dense_it_s"] for r in rows)
    auto_time = sum(1 / (r["sparse_it_s"] if r["fc1_density"] <= threshold else r["dense_it_s"])
                    for r in rows)
    result = {"levels": rows, "threshold": threshold,
              "sweep_ratio": round(dense_time / auto_time, 2), "torch": torch.__version__,
              "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
              else None}
    echo(f"  IMP sweep (levels {levels.start}-{levels.stop - 1}), engine default (sparse at "
         f"fc1 <= {100 * threshold:.0f}%) / dense only = {result['sweep_ratio']}x")
    return result


def imp_trial_pair(profile: str = "quick", seed: int = 0, echo: Callable[[str], None] = print
                   ) -> dict[str, Any]:
    """The same IMP trial, dense-only and with the sparse path, as two concurrent 1-thread
    processes (equal load): wall times, and how far the two runs' per-level results differ."""
    import subprocess
    import tempfile
    from pathlib import Path

    import pandas as pd
    code = ("import torch; torch.set_num_threads(1); from lthlib.cli import main; "
            f"main(['run', 'imp', '--profile', {profile!r}, '--seed', '{seed}', "
            "'--no-progress', '--no-reuse'])")
    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews both runs
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


def eval_ms_per_member(data: TensorSplit, device: torch.device, population: int) -> float:
    """One evaluation point (train-eval + val + test) per member, population-batched."""
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    stack = engine._Stack(["fc1", "fc2", "fc3"], inits, [None] * population, PAPER_ADAM,
                          device)
    sets = [engine._EvalSet(x, y, device) for x, y in (
        (data.train_eval_x, data.train_eval_y), (data.val_x, data.val_y),
        (data.test_x, data.test_y))]
    stack.evaluate(sets[1])
    _sync(device)
    t0 = time.perf_counter()
    for split in sets:
        stack.evaluate(split)
    _sync(device)
    return (time.perf_counter() - t0) * 1e3 / population


def _configs(device: torch.device, threads: int, quick: bool,
             population: int | None) -> list[tuple[int, int | None]]:
    """(population, parts) pairs to try; parts None = the engine's own choice."""
    if device.type == "cuda":
        sizes = [population] if population else ([64, 256] if quick else [64, 256, 1024])
        return [(k, 1) for k in sizes]
    if population:
        out = [(population, None)]
        if threads > 1:
            out.append((population, 1))
        return out
    sizes = [2, 4] if quick else [1, 2, 4, 8]
    out = [(k * max(1, threads), None) for k in sizes]
    if threads > 1 and not quick:  # one stack on all threads, for the record
        out.append((8, 1))
    return out


def run(quick: bool = False, population: int | None = None, iterations: int | None = None,
        device: torch.device | str | None = None, echo: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """Run every measurement; returns the summary (also echoed as a table)."""
    device = engine.default_device(device)
    threads = torch.get_num_threads()
    data = load_tensors("mnist")
    rows: list[tuple[str, float, str]] = []

    def note(name: str, value: float, unit: str) -> None:
        rows.append((name, value, unit))
        echo(f"  {name:<44} {value:>10.1f} {unit}")

    echo(f"lthlib.bench on {device} (torch {torch.__version__}, {threads} threads)")
    budget = 1.5 if quick else 5.0  # seconds per timed measurement
    gemm = sgemm_gflops(device, seconds=0.3 if quick else 1.0)
    note("sgemm 2048^2 float32", gemm, "GFLOP/s")
    # The simple loops at torch's thread count and at one thread, the faster counting: on a
    # loaded machine multi-threaded small ops collapse, and the comparison should not
    # flatter the engine.
    base = baseline_it_s(device, budget)
    note(f"baseline: DataLoader + ToTensor, Adam, {threads} thr", base, "it/s")
    plain = plain_it_s(data, device, budget)
    note(f"plain: in-memory tensors, fused Adam, {threads} thr", plain, "it/s")
    if device.type == "cpu" and threads > 1:
        torch.set_num_threads(1)
        try:
            base1 = baseline_it_s(device, budget)
            note("baseline: same, 1 thread", base1, "it/s")
            plain1 = plain_it_s(data, device, budget)
            note("plain: same, 1 thread", plain1, "it/s")
        finally:
            torch.set_num_threads(threads)
    raw = {"baseline_default_threads_it_s": round(base, 1),
           "plain_default_threads_it_s": round(plain, 1)}
    if device.type == "cpu" and threads > 1:
        base, plain = max(base, base1), max(plain, plain1)
    best, best_k, best_parts = 0.0, 0, None
    for k, parts in _configs(device, threads, quick, population):
        rate = engine_it_s(data, device, k, budget, parts, iterations=iterations)
        split = "auto split" if parts is None else f"{parts} part"
        note(f"engine: K={k}, shared batches, {split}", rate, "model-it/s")
        if rate > best:
            best, best_k, best_parts = rate, k, parts
    mixed = engine_it_s(data, device, best_k, budget, best_parts, shared=False,
                        iterations=iterations)
    note(f"engine: K={best_k}, own batches per member", mixed, "model-it/s")
    per_core = None
    if device.type == "cpu" and threads > 1:
        # one core each, engine vs plain: a comparison a loaded machine does not distort
        per_core = engine_it_s(data, device, 4, budget, 1, iterations=iterations, threads=1)
        note("engine: K=4 on 1 thread (per-core)", per_core, "model-it/s")
    ev = eval_ms_per_member(data, device, best_k)
    note("eval point (5K train + 5K val + 10K test)/member", ev, "ms")
    result = {
        "device": str(device), "torch": torch.__version__, "threads": threads,
        "baseline_it_s": round(base, 1), "plain_it_s": round(plain, 1),
        "engine_it_s": round(best, 1), "population": best_k,
        "parts": best_parts if best_parts is not None else "auto",
        "engine_own_batches_it_s": round(mixed, 1), **raw,
        "plain_1thread_it_s": round(plain1, 1) if per_core is not None else None,
        "engine_1thread_it_s": round(per_core, 1) if per_core is not None else None,
        "ratio_plain_per_core": (round(per_core / plain1, 2) if per_core is not None
                                 else None),
        "ratio": round(best / base, 2), "ratio_plain": round(best / plain, 2),
        "sgemm_gflops": round(gemm, 1),
        "engine_gflops": round(best * LENET_TRAIN_FLOP / 1e9, 1),
        "eval_ms_per_member": round(ev, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    echo(f"  engine / baseline = {result['ratio']}x, engine / plain = {result['ratio_plain']}x,"
         f" engine at {result['engine_gflops']} GFLOP/s of {result['sgemm_gflops']} sgemm")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lthlib.bench", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute on a CPU")
    parser.add_argument("--json", action="store_true", help="JSON summary on the last line")
    parser.add_argument("--population", type=int, default=None, help="engine population K")
    parser.add_argument("--iterations", type=int, default=None,
                        help="engine iterations per measurement")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--imp-trial", default=None, metavar="PROFILE",
                        help="one real IMP trial, dense-only vs sparse path, side by side")
    parser.add_argument("--sparse", action="store_true",
                        help="dense vs sparse engine path at each IMP level (CPU, 1 thread)")
    args = parser.parse_args(argv)
    if args.population is not None and args.population < 1:
        parser.error(f"--population must be >= 1, got {args.population}")
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if args.imp_trial:
        result = imp_trial_pair(args.imp_trial)
    elif args.sparse:
        result = sparse_sweep(load_tensors("mnist"), 0.5 if args.quick else 3.0,
                              range(0, 19, 3) if args.quick else range(19))
    else:
        result = run(args.quick, args.population, args.iterations, args.device)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

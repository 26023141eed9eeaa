"""LeNet training speed: the usual loops against the population engine, on one device.

Measured in one run (training-step throughput, evaluation excluded unless named):

- baseline: the loop the assignment's users write: torchvision MNIST with ToTensor through
  a shuffling DataLoader, batch 60, ``Adam(lr=1.2e-3)``, one LeNet;
- plain: the best simple loop: one LeNet on in-memory tensors, ``Adam(fused=True)`` where
  the installed torch has it (at torch's default thread count and at one thread; the
  faster counts);
- engine: :func:`lthlib.training.population.engine.train_population`, in model-iterations per second, at the
  best population size / split / batch sharing of the ones tried;
- engine at K = 1 against the plain loop, measured in alternation (same load);
- evaluation: one evaluation point per member at K = 1 and K = 8;
- sgemm: a large float32 matmul, the machine's arithmetic ceiling.

Absolute numbers move with machine load: compare ratios from the same run.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lthlib.bench.common import (LENET_TRAIN_FLOP, load_avg, machine, provenance, sgemm_gflops,
                                 sync, timed_loop)
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import TensorSplit, batch_indices, get_datasets, load_tensors
from lthlib.training.population.dense_stack import DenseStack
from lthlib.util.device import default_device
from lthlib.training.population.engine import train_population
from lthlib.nets.paper_networks import create_network
from lthlib.training.population.stack_eval import eval_rows, eval_sets
from lthlib.bench.reference import reference_evaluate

PAPER_ADAM = TrainConfig("adam", 1.2e-3, 60, 50_000)


def baseline_it_s(device: torch.device, seconds: float) -> float:
    """torchvision MNIST + ToTensor + DataLoader(batch 60, shuffle) + Adam: one LeNet."""
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

    return timed_loop(step, seconds, 10, device)


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

    return timed_loop(step, seconds, 20, device)


def tiny_eval(data: TensorSplit, n: int = 64) -> TensorSplit:
    """The training data with n-example eval splits: engine timings exclude evaluation."""
    return replace(data, val_x=data.val_x[:n], val_y=data.val_y[:n], test_x=data.test_x[:n],
                   test_y=data.test_y[:n], train_eval_x=data.train_eval_x[:n],
                   train_eval_y=data.train_eval_y[:n])


def engine_it_s(data: TensorSplit, device: torch.device, population: int, seconds: float,
                parts: int | None, shared: bool = True, iterations: int | None = None,
                threads: int | None = None, eval_every: int | None = None,
                overlap_eval: bool | None = None) -> float:
    """Model-iterations/s of train_population for LeNet (paper's Adam), eval excluded; with
    ``eval_every``, the whole evaluation schedule included (iterations per wall second).

    A short run first (warm-up and rate estimate) sizes the timed run to about ``seconds``.
    """
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    seeds = [0] * population if shared else list(range(population))
    evaluated = data if eval_every else tiny_eval(data)

    def timed(its: int) -> float:
        cfg = replace(PAPER_ADAM, iterations=its, eval_every=eval_every or its)
        sync(device)
        t0 = time.perf_counter()
        train_population("lenet", inits, [None] * population, evaluated, cfg, seeds,
                                device=device, parts=parts, threads=threads,
                                overlap_eval=overlap_eval)
        sync(device)
        return time.perf_counter() - t0

    probe = eval_every or 10
    rate = probe / timed(probe)
    its = iterations or max(probe, min(100_000, int(rate * seconds)))
    if eval_every:  # at least 20 evaluation points, so the per-call set-up (cutting the
        # evaluation sets into chunks) weighs about as little as in a real stage
        its = max(20 * eval_every, its // eval_every * eval_every)
    return population * its / timed(its)


def plain_eval_it_s(data: TensorSplit, seconds: float, eval_every: int = 100) -> float:
    """The plain loop with the reference's evaluation (train-eval, val, test) every
    ``eval_every`` iterations: training iterations per wall second, evaluation included."""
    net = create_network("lenet", seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1.2e-3, fused=True)
    x_all, y_all = data.train_x.reshape(len(data.train_y), -1), data.train_y
    splits = [(data.train_eval_x.reshape(len(data.train_eval_y), -1), data.train_eval_y),
              (data.val_x.reshape(len(data.val_y), -1), data.val_y),
              (data.test_x.reshape(len(data.test_y), -1), data.test_y)]
    order = batch_indices(len(y_all), 60, 0)
    done, t0 = 0, time.perf_counter()
    while True:
        for xs, ys in splits:
            reference_evaluate(net, xs, ys)
        for _ in range(eval_every):
            idx = next(order)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x_all[idx]), y_all[idx]).backward()
            opt.step()
        done += eval_every
        if time.perf_counter() - t0 >= seconds:
            return done / (time.perf_counter() - t0)


def eval_ms_per_member(data: TensorSplit, device: torch.device, population: int,
                       repeats: int = 3) -> float:
    """One evaluation point (train-eval + val + test) per member, all members together in
    one stack as the engine evaluates them (median of ``repeats``)."""
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    stack = DenseStack(["fc1", "fc2", "fc3"], inits, [None] * population, PAPER_ADAM, device)
    sets = eval_sets((data.train_eval_x, data.train_eval_y), (data.val_x, data.val_y),
                     (data.test_x, data.test_y), device)
    stack.evaluate(sets["val"])
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        eval_rows(stack, sets)
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3 / population)
    return sorted(times)[len(times) // 2]


def k1_against_plain(data: TensorSplit, device: torch.device, threads: int, seconds: float,
                     rounds: int = 3) -> dict[str, float]:
    """One network in the engine against the plain fused loop, both at ``threads`` torch
    threads and without evaluation, measured in alternation so both see the same load.
    Medians over ``rounds``; the ratio is the median of the per-round ratios."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    plain, eng = [], []
    try:
        for _ in range(rounds):
            plain.append(plain_it_s(data, device, seconds))
            eng.append(engine_it_s(data, device, 1, seconds, None, threads=threads))
    finally:
        torch.set_num_threads(before)
    ratios = sorted(e / p for e, p in zip(eng, plain))
    return {"plain_it_s": sorted(plain)[rounds // 2], "engine_k1_it_s": sorted(eng)[rounds // 2],
            "ratio": ratios[rounds // 2]}


def k1_with_evaluation(data: TensorSplit, threads: int, seconds: float,
                       eval_every: int = 100) -> dict[str, float]:
    """One network with the paper's evaluation schedule, on a CPU at ``threads``: the plain
    loop, the engine evaluating inline, and the engine's default (evaluation beside
    training when a thread is spare); measured one after the other, twice, means."""
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    runs: dict[str, list[float]] = {"plain": [], "inline": [], "default": []}
    try:
        for _ in range(2):
            best = 0.0
            for n in sorted({1, threads}):  # the plain loop at its faster thread count
                torch.set_num_threads(n)
                best = max(best, plain_eval_it_s(data, seconds, eval_every))
            runs["plain"].append(best)
            for name, overlap in (("inline", False), ("default", None)):
                runs[name].append(engine_it_s(data, cpu, 1, seconds, None, threads=threads,
                                              eval_every=eval_every, overlap_eval=overlap))
    finally:
        torch.set_num_threads(before)
    med = {name: sum(v) / len(v) for name, v in runs.items()}
    return {"plain_eval_it_s": med["plain"], "engine_k1_eval_inline_it_s": med["inline"],
            "engine_k1_eval_it_s": med["default"]}


def configs(device: torch.device, threads: int, quick: bool,
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
    return [(k, None) for k in ([2, 4, 8, 16] if quick else [2, 4, 8, 16, 32])]


def best_engine(data: TensorSplit, device: torch.device, threads: int, quick: bool,
                population: int | None, iterations: int | None, seconds: float,
                note: Callable[[str, float, str], None]) -> dict[str, Any]:
    """The engine at every (K, split) of :func:`configs`, members sharing their minibatches
    and each with its own: the fastest of each kind, with its K."""
    best: dict[str, tuple[float, int, int | None]] = {}
    for k, parts in configs(device, threads, quick, population):
        for kind, shared in (("shared", True), ("own", False)):
            rate = engine_it_s(data, device, k, seconds, parts, shared=shared,
                               iterations=iterations)
            split = "auto split" if parts is None else f"{parts} part"
            note(f"engine: K={k}, {kind} batches, {split}", rate, "model-it/s")
            if rate > best.get(kind, (0.0, 0, None))[0]:
                best[kind] = (rate, k, parts)
    kind = max(best, key=lambda name: best[name][0])
    rate, k, parts = best[kind]
    return {"engine_it_s": rate, "population": k, "batches": kind,
            "parts": parts if parts is not None else "auto",
            "engine_shared_batches_it_s": best["shared"][0],
            "population_shared_batches": best["shared"][1],
            "engine_own_batches_it_s": best["own"][0],
            "population_own_batches": best["own"][1]}


def run(quick: bool = False, population: int | None = None, iterations: int | None = None,
        device: torch.device | str | None = None, echo: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """Run every measurement; returns the summary (also echoed as a table)."""
    device = default_device(device)
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
    eng = best_engine(data, device, threads, quick, population, iterations, budget, note)
    best = eng["engine_it_s"]
    per_core = None
    if device.type == "cpu" and threads > 1:
        # one core each, engine vs plain: a comparison a loaded machine does not distort
        per_core = engine_it_s(data, device, 4, budget, 1, iterations=iterations, threads=1)
        note("engine: K=4 on 1 thread (per-core)", per_core, "model-it/s")
    k1 = k1_against_plain(data, device, threads, budget)
    note(f"engine: K=1, {threads} thr (alternating with plain)", k1["engine_k1_it_s"], "it/s")
    note(f"plain: same {threads} thr, alternating", k1["plain_it_s"], "it/s")
    k1_one = None
    if device.type == "cpu" and threads > 1:
        k1_one = k1_against_plain(data, device, 1, budget)
        note("engine: K=1, 1 thr (alternating with plain)", k1_one["engine_k1_it_s"], "it/s")
        note("plain: same 1 thr, alternating", k1_one["plain_it_s"], "it/s")
    with_eval = None
    if device.type == "cpu":
        with_eval = k1_with_evaluation(data, threads, budget)
        note("plain + eval every 100 it, faster thr count", with_eval["plain_eval_it_s"], "it/s")
        note(f"engine K=1 + eval inline, {threads} thr", with_eval["engine_k1_eval_inline_it_s"],
             "it/s")
        note(f"engine K=1 + eval (default), {threads} thr", with_eval["engine_k1_eval_it_s"],
             "it/s")
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # the engine evaluates on single-threaded parts
    try:
        ev1 = eval_ms_per_member(data, device, 1)
        ev8 = eval_ms_per_member(data, device, 8)
    finally:
        torch.set_num_threads(before)
    note("eval point (5K train + 5K val + 10K test), K=1", ev1, "ms/member")
    note("eval point, K=8 evaluated together", ev8, "ms/member")
    ev = ev8
    result = {
        "device": str(device), "torch": torch.__version__, "threads": threads,
        "baseline_it_s": round(base, 1), "plain_it_s": round(plain, 1),
        **{key: round(v, 1) if isinstance(v, float) else v for key, v in eng.items()},
        **raw,
        "plain_1thread_it_s": round(plain1, 1) if per_core is not None else None,
        "engine_1thread_it_s": round(per_core, 1) if per_core is not None else None,
        "ratio_plain_per_core": (round(per_core / plain1, 2) if per_core is not None
                                 else None),
        "ratio": round(best / base, 2), "ratio_plain": round(best / plain, 2),
        "sgemm_gflops": round(gemm, 1),
        "engine_gflops": round(best * LENET_TRAIN_FLOP / 1e9, 1),
        "eval_ms_per_member": round(ev, 1),
        "eval_ms_per_member_k1": round(ev1, 1), "eval_ms_per_member_k8": round(ev8, 1),
        "engine_k1_it_s": round(k1["engine_k1_it_s"], 1),
        "plain_same_threads_it_s": round(k1["plain_it_s"], 1),
        "ratio_k1_plain": round(k1["ratio"], 2),
        "engine_k1_1thread_it_s": round(k1_one["engine_k1_it_s"], 1) if k1_one else None,
        "plain_k1_1thread_it_s": round(k1_one["plain_it_s"], 1) if k1_one else None,
        "ratio_k1_plain_1thread": round(k1_one["ratio"], 2) if k1_one else None,
        **{k: round(v, 1) for k, v in (with_eval or {}).items()},
        "load_avg_1min": (load_avg() or [None])[0],
        **machine(), **provenance(),
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    echo(f"  engine (K={eng['population']}, {eng['batches']} batches) / baseline = "
         f"{result['ratio']}x, engine / plain = {result['ratio_plain']}x,"
         f" engine at {result['engine_gflops']} GFLOP/s of {result['sgemm_gflops']} sgemm;"
         f" K=1 / plain at {threads} thr = {result['ratio_k1_plain']}x")
    result["table"] = [f"{name:<44} {value:>10.1f} {unit}" for name, value, unit in rows]
    return result



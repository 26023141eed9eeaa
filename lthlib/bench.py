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
from torch import Tensor

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
                threads: int | None = None, eval_every: int | None = None,
                overlap_eval: bool | None = None) -> float:
    """Model-iterations/s of train_population for LeNet (paper's Adam), eval excluded; with
    ``eval_every``, the whole evaluation schedule included (iterations per wall second).

    A short run first (warm-up and rate estimate) sizes the timed run to about ``seconds``.
    """
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    seeds = [0] * population if shared else list(range(population))
    evaluated = data if eval_every else _tiny_eval(data)

    def timed(its: int) -> float:
        cfg = replace(PAPER_ADAM, iterations=its, eval_every=eval_every or its)
        _sync(device)
        t0 = time.perf_counter()
        engine.train_population("lenet", inits, [None] * population, evaluated, cfg, seeds,
                                device=device, parts=parts, threads=threads,
                                overlap_eval=overlap_eval)
        _sync(device)
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
            _reference_evaluate(net, xs, ys)
        for _ in range(eval_every):
            idx = next(order)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x_all[idx]), y_all[idx]).backward()
            opt.step()
        done += eval_every
        if time.perf_counter() - t0 >= seconds:
            return done / (time.perf_counter() - t0)


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


# --- a whole IMP trial: lthlib against a straightforward implementation -------------------
#
# The reference below is what a careful newcomer writes from the paper: one network at a
# time on in-memory tensors, Adam(fused=True), masks from torch.nn.utils.prune, and the same
# evaluation schedule (train-eval, validation and test sets every eval_every iterations and
# at the end, no-grad, large batches). It is part of the benchmark only.

def _reference_evaluate(net: torch.nn.Module, x: Tensor, y: Tensor,
                        batch: int = 5000) -> tuple[float, float]:
    net.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(y), batch):
            logits = net(x[i:i + batch])
            loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    net.train()
    return loss / len(y), correct / len(y)


def _reference_train(net: torch.nn.Module, data: TensorSplit, cfg: TrainConfig,
                     seed: int) -> list[dict[str, float]]:
    """Train one (possibly pruned) LeNet; the history of evaluations."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=True)
    gen = torch.Generator().manual_seed(seed)
    x_all = data.train_x.reshape(len(data.train_y), -1)
    y_all = data.train_y
    splits = {"train": (data.train_eval_x.reshape(len(data.train_eval_y), -1),
                        data.train_eval_y),
              "val": (data.val_x.reshape(len(data.val_y), -1), data.val_y),
              "test": (data.test_x.reshape(len(data.test_y), -1), data.test_y)}
    order, pos, history = torch.randperm(len(y_all), generator=gen), 0, []
    for it in range(cfg.iterations + 1):
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            row = {"iteration": it}
            for name, (xs, ys) in splits.items():
                row[f"{name}_loss"], row[f"{name}_acc"] = _reference_evaluate(net, xs, ys)
            history.append(row)
        if it == cfg.iterations:
            break
        if pos + cfg.batch_size > len(y_all):
            order, pos = torch.randperm(len(y_all), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return history


def reference_imp_trial(profile: str = "quick", seed: int = 0) -> dict[str, Any]:
    """One LeNet/MNIST IMP trial (tickets at every level, then their re-inits), written
    plainly; per network: its level, variant and early-stop numbers."""
    import copy

    from torch.nn.utils import prune

    from .config import make_experiment
    from .data import load_tensors_for
    cfg = make_experiment("imp", "lenet", "mnist", profile, seed=seed)
    data = load_tensors_for(cfg.data)
    rates = cfg.prune.rates()

    def layers(net: torch.nn.Module) -> list[tuple[torch.nn.Linear, float]]:
        fcs = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        return [(m, rates["output"] if i == len(fcs) - 1 else rates["fc"])
                for i, m in enumerate(fcs)]

    def summary(variant: str, level: int, history: list[dict[str, float]],
                masks: list[Tensor] | None) -> dict[str, Any]:
        best = min(history, key=lambda r: r["val_loss"])
        kept = (sum(int(m.sum()) for m in masks) if masks else
                sum(m.weight.numel() for m, _ in layers(net)))
        return {"variant": variant, "level": level,
                "pm": kept / sum(m.weight.numel() for m, _ in layers(net)),
                "early_stop_iteration": int(best["iteration"]),
                "early_stop_test_acc": best["test_acc"], "final_test_acc": history[-1]["test_acc"]}

    t0 = time.perf_counter()
    net = create_network("lenet", seed=seed)
    theta0 = copy.deepcopy(net.state_dict())
    out, level_masks = [], {}
    for level in range(cfg.prune.rounds + 1):
        out.append(summary("ticket", level, _reference_train(net, data, cfg.train, seed),
                           level_masks.get(level)))
        if level == cfg.prune.rounds:
            break
        for module, rate in layers(net):  # prune p% of what remains, by magnitude
            prune.l1_unstructured(module, "weight", amount=rate)
        level_masks[level + 1] = [m.weight_mask.clone() for m, _ in layers(net)]
        with torch.no_grad():  # rewind the survivors to their initial values
            for (module, _), name in zip(layers(net), ("fc1", "fc2", "fc3")):
                module.weight_orig.copy_(theta0[f"{name}.weight"])
                module.bias.copy_(theta0[f"{name}.bias"])
    for level in range(1, cfg.prune.rounds + 1):
        for rep in range(cfg.reinits):
            fresh = create_network("lenet", seed=1_000 * seed + 100 * level + rep + 1)
            for (module, _), mask in zip(layers(fresh), level_masks[level]):
                prune.custom_from_mask(module, "weight", mask)
            out.append(summary("reinit", level, _reference_train(fresh, data, cfg.train, seed),
                               level_masks[level]))
    return {"networks": out, "train_s": time.perf_counter() - t0}


def _side_by_side(codes: dict[str, str], env: dict[str, str], workdir: str
                  ) -> dict[str, dict[str, Any]]:
    """Run ``python -c code`` for every entry at the same time; per entry its wall and CPU
    seconds and its output. Raises if one fails."""
    import subprocess
    from pathlib import Path
    procs, logs, t0 = {}, {}, time.perf_counter()
    for name, code in codes.items():
        logs[name] = Path(workdir) / f"{name}.log"
        with open(logs[name], "w") as fh:
            procs[name] = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=fh,
                                           stderr=subprocess.STDOUT)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < len(procs):
        for name, proc in procs.items():
            if name in out:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                continue
            proc.returncode = os.waitstatus_to_exitcode(status)
            text = logs[name].read_text()
            if proc.returncode != 0:
                for other in procs.values():
                    if other.returncode is None:
                        other.kill()
                raise RuntimeError(f"{name} process failed:\n{text[-3000:]}")
            out[name] = {"wall_s": time.perf_counter() - t0, "output": text,
                         "cpu_s": usage.ru_utime + usage.ru_stime,
                         "load_avg_at_end": [round(v, 2) for v in os.getloadavg()]}
        time.sleep(0.2)
    return out


def imp_trial_vs_reference(profile: str = "quick", seed: int = 0, threads: int = 1,
                           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """One LeNet/MNIST IMP trial by lthlib (``lth.run``) and by the reference above, side by
    side: two processes started together, each with ``threads`` torch threads (one per core
    on two cores), so both see the same load. Each is timed from start to end, imports and
    data loading included; their CPU seconds show how much of a core each got."""
    import tempfile
    from pathlib import Path

    import pandas as pd
    env = {**os.environ, "LTH_DEVICE": "cpu"}
    env.pop("LTH_SPARSE_BELOW", None)
    result: dict[str, Any] = {"profile": profile, "seed": seed, "threads": threads,
                              **machine()}
    result["load_avg_at_start"] = result.pop("load_avg")
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        codes = {
            "lthlib": (f"import torch; torch.set_num_threads({threads}); import lthlib as lth; "
                       f"lth.run('imp', 'lenet', 'mnist', profile={profile!r}, seed={seed}, "
                       f"runs_dir={str(runs)!r}, progress=False)"),
            "reference": (f"import json, torch; torch.set_num_threads({threads}); "
                          f"from lthlib.bench import reference_imp_trial; "
                          f"print(json.dumps(reference_imp_trial({profile!r}, {seed})))")}
        done = _side_by_side(codes, env, tmp)
        [summary_csv] = list(runs.glob("imp/*/*/summary.csv"))
        ours = pd.read_csv(summary_csv)
    ref = pd.DataFrame(json.loads(done["reference"]["output"].strip().splitlines()[-1])[
        "networks"])
    trial_s, reference_s = done["lthlib"]["wall_s"], done["reference"]["wall_s"]
    result.update({
        "trial_s": round(trial_s, 1), "reference_s": round(reference_s, 1),
        "ratio": round(reference_s / trial_s, 2),
        "trial_cpu_s": round(done["lthlib"]["cpu_s"], 1),
        "reference_cpu_s": round(done["reference"]["cpu_s"], 1),
        "load_avg_when_lthlib_ended": done["lthlib"]["load_avg_at_end"],
        "load_avg_when_reference_ended": done["reference"]["load_avg_at_end"],
        "networks": len(ours), "reference_networks": len(ref),
        "mean_early_stop_test_acc": round(float(ours.early_stop_test_acc.mean()), 4),
        "reference_mean_early_stop_test_acc": round(float(ref.early_stop_test_acc.mean()), 4),
        **provenance()})
    echo(f"  IMP trial ({profile}, seed {seed}, {len(ours)} networks, side by side at "
         f"{threads} thr each): lthlib {trial_s:.0f} s, reference {reference_s:.0f} s = "
         f"{result['ratio']}x; mean early-stop test accuracy "
         f"{result['mean_early_stop_test_acc']} vs {result['reference_mean_early_stop_test_acc']}")
    return result


def eval_ms_per_member(data: TensorSplit, device: torch.device, population: int,
                       repeats: int = 3) -> float:
    """One evaluation point (train-eval + val + test) per member, all members together in
    one stack as the engine evaluates them (median of ``repeats``)."""
    inits = [create_network("lenet", seed=s).state_dict() for s in range(population)]
    stack = engine._Stack(["fc1", "fc2", "fc3"], inits, [None] * population, PAPER_ADAM,
                          device)
    sets = {name: engine._EvalSet(x, y, device) for name, (x, y) in (
        ("train", (data.train_eval_x, data.train_eval_y)), ("val", (data.val_x, data.val_y)),
        ("test", (data.test_x, data.test_y)))}
    stack.evaluate(sets["val"])
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        engine._eval_rows(stack, sets)
        _sync(device)
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


def machine() -> dict[str, Any]:
    """CPU model, the vector features that decide float speed, cores and load, for the record."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
    return {"cpu": model or "unknown", "cpu_features": [f for f in wanted if f in flags],
            "cores": os.cpu_count() or 0,
            "load_avg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg")
            else None}


def provenance() -> dict[str, Any]:
    """Where and when: torch version, commit of this code, UTC date."""
    from .store import git_commit
    return {"torch": torch.__version__, "git_commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())}


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
    sizes = [1, 2, 4] if quick else [1, 2, 4, 8]
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
        "eval_ms_per_member_k1": round(ev1, 1), "eval_ms_per_member_k8": round(ev8, 1),
        "engine_k1_it_s": round(k1["engine_k1_it_s"], 1),
        "plain_same_threads_it_s": round(k1["plain_it_s"], 1),
        "ratio_k1_plain": round(k1["ratio"], 2),
        "engine_k1_1thread_it_s": round(k1_one["engine_k1_it_s"], 1) if k1_one else None,
        "plain_k1_1thread_it_s": round(k1_one["plain_it_s"], 1) if k1_one else None,
        "ratio_k1_plain_1thread": round(k1_one["ratio"], 2) if k1_one else None,
        **{k: round(v, 1) for k, v in (with_eval or {}).items()},
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        **machine(), **provenance(),
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    echo(f"  engine / baseline = {result['ratio']}x, engine / plain = {result['ratio_plain']}x,"
         f" engine at {result['engine_gflops']} GFLOP/s of {result['sgemm_gflops']} sgemm;"
         f" K=1 / plain at {threads} thr = {result['ratio_k1_plain']}x")
    result["table"] = [f"{name:<44} {value:>10.1f} {unit}" for name, value, unit in rows]
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
                        help="one LeNet/MNIST IMP trial: lthlib against a plain reference")
    parser.add_argument("--trial-threads", type=int, default=1,
                        help="torch threads of each --imp-trial process (default 1)")
    parser.add_argument("--sparse-trial", default=None, metavar="PROFILE",
                        help="one real IMP trial, dense-only vs sparse path, side by side")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="also write the JSON summary to FILE (e.g. runs/bench/...)")
    parser.add_argument("--sparse", action="store_true",
                        help="dense vs sparse engine path at each IMP level (CPU, 1 thread)")
    parser.add_argument("--conv", action="store_true",
                        help="ResNet-18: textbook loop vs the experiments' conv engine "
                        "(fp32, and bf16 where native), interleaved (lthlib.conv_bench)")
    args = parser.parse_args(argv)
    if args.population is not None and args.population < 1:
        parser.error(f"--population must be >= 1, got {args.population}")
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if args.conv:
        from .conv_bench import measure
        result = measure(args.device, rounds=2 if args.quick else 3,
                         seconds=3.0 if args.quick else 8.0)
    elif args.imp_trial:
        result = imp_trial_vs_reference(args.imp_trial, threads=args.trial_threads)
    elif args.sparse_trial:
        result = imp_trial_pair(args.sparse_trial)
    elif args.sparse:
        result = sparse_sweep(load_tensors("mnist"), 0.5 if args.quick else 3.0,
                              range(0, 19, 3) if args.quick else range(19))
    else:
        result = run(args.quick, args.population, args.iterations, args.device)
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out" in given:  # the command that reproduces the numbers, not where they went
        del given[given.index("--out"):given.index("--out") + 2]
    result["command"] = " ".join(["python -m lthlib.bench"] + [
        a for a in given if not a.startswith("--out=")])
    if args.out:
        from pathlib import Path

        from .store import atomic_write_text
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A whole LeNet/MNIST IMP trial two ways: lthlib, and a reference a careful newcomer writes.

The reference is what one writes from the paper: one network at a time on in-memory tensors,
``Adam(fused=True)``, masks from ``torch.nn.utils.prune``, and the same evaluation schedule
(train-eval, validation and test sets every eval_every iterations and at the end, no-grad,
large batches). It is part of the benchmark only, never of the library's path.
:func:`imp_trial_vs_reference` runs both side by side, one process each, and compares their
wall times.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils import prune

from lthlib.bench.common import machine, provenance
from lthlib.config.paper import TrainConfig
from lthlib.config.experiment import make_experiment
from lthlib.data.datasets import TensorSplit, load_tensors_for
from lthlib.nets.paper_networks import create_network


def reference_evaluate(net: torch.nn.Module, x: Tensor, y: Tensor,
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
                row[f"{name}_loss"], row[f"{name}_acc"] = reference_evaluate(net, xs, ys)
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
                          f"from lthlib.bench.reference import reference_imp_trial; "
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



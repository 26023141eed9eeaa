"""The small worked checks the chapters run live (not experiments of the store): the
training settings table, whether two runs ended with the same weights, pruning a fresh
network and counting what went, and pruning a trained one without retraining.

They live here so a chapter cell shows the call and its result rather than a helper
defined in the notebook.
"""
from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import torch

from lthlib.config.paper import ARCHS, TrainConfig, paper_train
from lthlib.data.datasets import TensorSplit
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import get_masks, prune_network, remaining_fraction
from lthlib.training.one_network import evaluate
from lthlib.report.text import pct


def schedule_text(t: TrainConfig) -> str:
    """A learning-rate schedule in words: ``x0.1 at 16K, 24K`` or ``constant``."""
    drops = ", ".join(f"{m / 1000:g}K" for m in t.milestones)
    return f"x{t.gamma:g} at {drops}" if drops else "constant"


def training_settings() -> pd.DataFrame:
    """7.3 (a): optimiser, learning rate, batch, iterations, weight decay and schedule of
    every network, as the library trains it (the paper's settings)."""
    rows = []
    for arch in ARCHS:
        t = paper_train(arch)
        opt = "Adam" if t.optimizer == "adam" else f"SGD, momentum {t.momentum:g}"
        rows.append({"network": arch, "optimizer": opt, "lr": f"{t.lr:g}",
                     "batch": t.batch_size, "iterations": f"{t.iterations:,}",
                     "weight decay": f"{t.weight_decay:g}" if t.weight_decay else "-",
                     "lr schedule": schedule_text(t)})
    return pd.DataFrame(rows)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks hold bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def pruning_check(arch: str, amount: float, **kwargs: Any) -> dict[str, str]:
    """Prune a fresh ``arch`` once by ``amount`` (``kwargs`` go to ``prune_network``) and
    count parameters before and after, the share pruned and Pm."""
    net = create_network(arch, seed=0)
    before = sum(p.numel() for p in net.parameters())
    prune_network(net, amount, **kwargs)
    zeros = sum(int((m == 0).sum()) for m in get_masks(net).values())
    return {"network": arch, "before": f"{before:,}", "after": f"{before - zeros:,}",
            "pruned": pct(zeros / before, 2), "Pm": pct(remaining_fraction(net))}


def conv_remaining(scope: str, rounds: int = 5, arch: str = "resnet18") -> dict[str, float]:
    """Fraction of weights each layer keeps after ``rounds`` of pruning 20% of the
    convolutions only, layer-wise or globally (``scope``)."""
    net = create_network(arch, seed=0)
    for _ in range(rounds):
        prune_network(net, 0.2, scope=scope, rates={"fc": 0.0, "output": 0.0})
    return {name: float(mask.mean()) for name, mask in get_masks(net).items()}


def pruned_accuracy(trained: torch.nn.Module, data: TensorSplit, amount: float,
                    method: str, seed: int = 0) -> float:
    """Test accuracy of a copy of ``trained`` pruned once by ``amount`` (``method`` "l1" or
    "random"), without retraining."""
    pruned = prune_network(copy.deepcopy(trained), amount, method=method,
                           generator=torch.Generator().manual_seed(seed))
    return evaluate(pruned, (data.test_x, data.test_y))[1]

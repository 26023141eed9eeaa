"""How fast ResNet-18 trains: the textbook loop against the path the experiments use.

``python -m lthlib.bench --conv --json``. Three loops run in turns (several rounds, each loop a
few seconds per round) so that all of them see the same machine load:

* ``plain``: one network, NCHW float32, ``torch.optim.SGD`` with momentum, batches from a
  ``DataLoader`` over torchvision's dataset with ``ToTensor`` (what a newcomer writes);
* ``fast``: :func:`lthlib.conv_engine` as the experiments call it (several networks at once,
  grouped convolutions, channels_last, tensors in memory), float32;
* ``bf16``: the same under bfloat16 autocast, only where the hardware has native bf16 (AMX or
  AVX512-BF16 on a CPU, or a GPU); otherwise null.

Speeds are model-iterations per second (one network, one minibatch of 128).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import conv_engine
from .config import paper_model, paper_train
from .device import default_device, describe_hardware
from .models import create_network


def native_bf16(device: torch.device) -> bool:
    """True on a GPU or a CPU that computes bf16 natively (AMX or AVX512-BF16)."""
    if device.type == "cuda":
        return True
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def train_flop(arch: str = "resnet18", dataset: str = "fashionmnist", batch: int = 128) -> float:
    """FLOPs of one training iteration of one network: 3 x forward multiply-adds x 2."""
    m = paper_model(arch, dataset)
    net = create_network(arch, m.num_classes, m.in_shape, seed=0)
    macs = [0]

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            k = mod.weight[0].numel()  # c_in/groups x kh x kw
            macs[0] += out.numel() * k
        elif isinstance(mod, nn.Linear):
            macs[0] += out.numel() * mod.in_features

    handles = [mod.register_forward_hook(hook) for mod in net.modules()
               if isinstance(mod, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(batch, *m.in_shape))
    for h in handles:
        h.remove()
    return 3 * 2 * macs[0]


def _plain_step(device: torch.device, dataset: str) -> Callable[[], int]:
    from torch.utils.data import DataLoader

    from .data import get_datasets
    m = paper_model("resnet18", dataset)
    cfg = paper_train("resnet18")
    net = create_network("resnet18", m.num_classes, m.in_shape, seed=0).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    train_set = get_datasets(dataset)[0]
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    stream = iter(loader)

    def step() -> int:
        nonlocal stream
        try:
            x, y = next(stream)
        except StopIteration:
            stream = iter(loader)
            x, y = next(stream)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 1
    return step


def _fast_step(device: torch.device, dataset: str, group: int, bf16: bool
               ) -> Callable[[], int]:
    """One iteration of ``group`` networks exactly as :func:`conv_engine.train_group` does."""
    from .data import batch_indices, load_tensors
    m = paper_model("resnet18", dataset)
    cfg = paper_train("resnet18")
    states = [create_network("resnet18", m.num_classes, m.in_shape, seed=s).state_dict()
              for s in range(group)]
    net = conv_engine.pack(states, [None] * group, m.in_shape[0], m.num_classes, device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    data = load_tensors(dataset)
    X, Y = data.train_x.to(device), data.train_y.to(device)
    streams = [batch_indices(len(Y), cfg.batch_size, s) for s in range(group)]

    def step() -> int:
        idx = [next(s).to(device) for s in streams]
        xs = torch.cat([X[i] for i in idx], dim=1).contiguous(memory_format=torch.channels_last)
        ys = torch.stack([Y[i] for i in idx], dim=1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(xs)
        logits = logits.float()
        loss = sum(F.cross_entropy(logits[:, j], ys[:, j]) for j in range(group))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return group
    return step


def measure(device: str | None = None, dataset: str = "fashionmnist", rounds: int = 3,
            seconds: float = 8.0, group: int | None = None) -> dict[str, Any]:
    """Interleaved speeds of the plain, fast and (where native) bf16 loops; see the module."""
    dev = default_device(device)
    group = group or conv_engine.group_size(dev, 4)
    loops: dict[str, Callable[[], int]] = {
        "plain": _plain_step(dev, dataset), "fast": _fast_step(dev, dataset, group, False)}
    bf16 = native_bf16(dev)
    if bf16:
        loops["bf16"] = _fast_step(dev, dataset, group, True)
    for step in loops.values():  # warm-up: kernel selection, allocator
        step()
    load_before = os.getloadavg()
    done = {k: 0 for k in loops}
    spent = {k: 0.0 for k in loops}
    for _ in range(rounds):
        for name, step in loops.items():
            t0 = time.perf_counter()
            while True:
                done[name] += step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if time.perf_counter() - t0 >= seconds:
                    break
            spent[name] += time.perf_counter() - t0
    load_after = os.getloadavg()
    speed = {k: done[k] / spent[k] for k in loops}
    from .bench import sgemm_gflops
    flop = train_flop("resnet18", dataset)
    hw = describe_hardware(dev)
    return {
        "device": str(dev), "threads": torch.get_num_threads(),
        "cpu": hw.get("cpu"), "gpu": hw.get("gpu"), "torch": torch.__version__,
        "dataset": dataset, "batch_size": paper_train("resnet18").batch_size,
        "group_size": group,
        "conv_plain_it_s": round(speed["plain"], 3),
        "conv_it_s": round(speed["fast"], 3),
        "conv_bf16_it_s": round(speed["bf16"], 3) if bf16 else None,
        "speedup_fp32": round(speed["fast"] / speed["plain"], 2),
        "speedup_bf16": round(speed["bf16"] / speed["plain"], 2) if bf16 else None,
        "train_gflop_per_it": round(flop / 1e9, 2),
        "conv_plain_gflops": round(speed["plain"] * flop / 1e9, 1),
        "conv_gflops": round(speed["fast"] * flop / 1e9, 1),
        "sgemm_gflops": round(sgemm_gflops(dev), 1),
        "iterations_measured": done, "seconds_measured": {k: round(v, 1) for k, v in
                                                          spent.items()},
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "cores": os.cpu_count(),
    }

"""How fast ResNet-18 trains: the textbook loop against the path the experiments use.

``python -m lthlib.bench --conv --json``. The loops run in turns (several rounds, each loop a
few seconds per round) so that all of them see the same machine load:

* ``plain``: one network, NCHW float32, ``torch.optim.SGD`` with momentum, batches from a
  ``DataLoader`` over torchvision's dataset with ``ToTensor`` (what a newcomer writes), at
  torch's default thread count (every core);
* ``one process``: :mod:`lthlib.training.conv_engine` as the experiments call it (channels_last,
  tensors in memory, the stage's networks packed per :func:`conv_engine.group_size`), float32,
  at the same thread count as ``plain``;
* ``side by side`` (CPU): one 1-thread process per core, each running the engine loop, as
  the long experiments run here (one trial per process, ``OMP_NUM_THREADS=1``); their
  model-iterations/s add up. This is ``conv_it_s`` on a CPU; on a GPU it is ``one process``;
* ``compiled``: the one-process loop with its forward pass and loss through torch.compile
  (inductor), float32; its compile time is reported apart (it is paid once per process);
* ``bf16``: the one-process loop under bfloat16 autocast, only where the hardware has native
  bf16 (AMX or AVX512-BF16 on a CPU, or a GPU); otherwise null;
* ``ceiling``: the engine loop, run like ``conv_it_s``, on the same network with every
  BatchNorm and ReLU taken out (convolutions, residual adds, loss and SGD only). It trains
  nothing useful; it bounds what any fusion of those memory-bound layers could reach with
  these float32 convolution kernels, since a fused kernel still runs every convolution.

``sgemm_gflops`` is measured before the loops, on the quiet machine, at the bench's thread
count; ``speedup_at_sgemm_peak`` is how fast the plain loop's float32 work (the same FLOPs)
would go at that rate, relative to the plain loop: a roof that no float32 loop doing the
same arithmetic can pass, since convolutions run below the matmul peak and everything else
adds time.

Speeds are model-iterations per second (one network, one minibatch of 128).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lthlib.training import conv_engine
from lthlib.bench.common import machine, provenance, sgemm_gflops, sync
from lthlib.config.paper import paper_model, paper_train
from lthlib.data.datasets import batch_indices, get_datasets, load_tensors
from lthlib.util.device import default_device, native_bf16
from lthlib.nets.paper_networks import create_network

MAX_SIDE_PROCESSES = 8  # memory: each process holds the training set
_SIDE_CODE = ("import sys, torch; torch.set_num_threads(1); "
              "from lthlib.bench.resnet import side_loop; "
              "side_loop(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], "
              "sys.argv[5] == 'ceiling')")


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


def strip_to_convolutions(net: nn.Module) -> nn.Module:
    """``net`` with every BatchNorm and ReLU module replaced by the identity, in place (the
    ``ceiling`` loop: what remains is the work no fusion of elementwise layers removes)."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU)):
                setattr(module, name, nn.Identity())
    return net


def engine_step(device: torch.device, dataset: str, group: int, bf16: bool,
                seed: int = 0, compiled: bool = False,
                ceiling: bool = False) -> Callable[[], int]:
    """One iteration of ``group`` networks exactly as :func:`conv_engine.train_group` does
    (``ceiling``: on the network without BatchNorm and ReLU); returns the number of
    model-iterations done."""
    m = paper_model("resnet18", dataset)
    cfg = paper_train("resnet18")
    states = [create_network("resnet18", m.num_classes, m.in_shape, seed=seed + s).state_dict()
              for s in range(group)]
    net = conv_engine.pack(states, [None] * group, m.in_shape[0], m.num_classes, device)
    if ceiling:
        strip_to_convolutions(net)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    data = load_tensors(dataset)
    X, Y = data.train_x.to(device), data.train_y.to(device)
    streams = [batch_indices(len(Y), cfg.batch_size, seed + s) for s in range(group)]
    loss_fn = conv_engine.loss_function(compiled)

    def step() -> int:
        idx = [next(s).to(device) for s in streams]
        xs = torch.cat([X[i] for i in idx], dim=1).contiguous(memory_format=torch.channels_last)
        ys = torch.stack([Y[i] for i in idx], dim=1)
        loss = loss_fn(net, xs, ys, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return group
    return step


def side_loop(start_file: str, seconds: float, seed: int, dataset: str,
              ceiling: bool = False) -> None:
    """A child of :func:`side_by_side`: warm up, say so, wait for the common start, run the
    CPU engine loop (``ceiling``: without BatchNorm and ReLU) for ``seconds`` and print its
    model-iterations/s as JSON."""
    step = engine_step(torch.device("cpu"), dataset, 1, False, seed, ceiling=ceiling)
    step()
    Path(f"{start_file}.ready{seed}").touch()
    deadline = time.monotonic() + 600
    while not os.path.exists(start_file):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no start signal at {start_file} within 600 s")
        time.sleep(0.01)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += step()
    print(json.dumps({"it_s": done / (time.perf_counter() - t0)}), flush=True)


def side_by_side(processes: int, seconds: float, dataset: str = "fashionmnist",
                 ceiling: bool = False) -> float:
    """Summed model-iterations/s of ``processes`` 1-thread engine processes started together
    (the way long CPU experiments run: one trial per process and core); ``ceiling`` runs
    the loop without BatchNorm and ReLU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        start = str(Path(tmp) / "start")
        children = [subprocess.Popen([sys.executable, "-c", _SIDE_CODE, start, str(seconds),
                                      str(seed), dataset, "ceiling" if ceiling else "engine"],
                                     env=env, stdout=subprocess.PIPE,
                                     text=True) for seed in range(processes)]
        deadline = time.monotonic() + 600
        while sum(Path(f"{start}.ready{s}").exists() for s in range(processes)) < processes:
            if time.monotonic() > deadline or any(c.poll() not in (None, 0) for c in children):
                for c in children:
                    c.kill()
                raise RuntimeError("a side-by-side bench process failed to start")
            time.sleep(0.05)
        Path(start).touch()
        outputs = [c.communicate()[0] for c in children]
    if any(c.returncode != 0 for c in children):
        raise RuntimeError(f"side-by-side bench processes exited with "
                           f"{[c.returncode for c in children]}")
    return sum(json.loads(out.strip().splitlines()[-1])["it_s"] for out in outputs)


def cpu_idle_fraction(seconds: float = 1.0) -> float | None:
    """Share of all cores' time that was idle over ``seconds`` (from /proc/stat; None where
    there is none). Multi-threaded loops slow down far more than 1-thread ones when other
    work shares the cores, so a ratio taken on a busy machine says little: this records
    how busy it was."""
    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)
    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[1] == first[1]:
        return None
    return round((second[0] - first[0]) / (second[1] - first[1]), 3)


def _side_processes(device: torch.device) -> int:
    """One 1-thread process per core on a multi-core CPU; none on a GPU or a single core."""
    cores = os.cpu_count() or 1
    return min(cores, MAX_SIDE_PROCESSES) if device.type == "cpu" and cores > 1 else 0


def precision_speeds(device: str | None = None, dataset: str = "fashionmnist",
                     rounds: int = 2, seconds: float = 15.0) -> dict[str, Any]:
    """One network in the conv engine at one thread, float32 against bf16 autocast, in turns,
    whether or not bf16 is native here: what choosing a precision costs on this machine
    (``python -m lthlib.bench --conv-precision --json``). Emulated bf16 is far slower."""
    dev = default_device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loops = {"fp32": engine_step(dev, dataset, 1, False),
                 "bf16": engine_step(dev, dataset, 1, True)}
        for step in loops.values():
            step()
        done = {k: 0 for k in loops}
        spent = {k: 0.0 for k in loops}
        for _ in range(rounds):
            for name, step in loops.items():
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    done[name] += step()
                    sync(dev)
                spent[name] += time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    speed = {k: done[k] / spent[k] for k in loops}
    return {"device": str(dev), "threads": 1, **machine(), **provenance(),
            "dataset": dataset, "native_bf16": native_bf16(dev),
            "fp32_it_s": round(speed["fp32"], 3), "bf16_it_s": round(speed["bf16"], 3),
            "bf16_over_fp32": round(speed["bf16"] / speed["fp32"], 3),
            "iterations_measured": done,
            "seconds_measured": {k: round(v, 1) for k, v in spent.items()}}


def measure(device: str | None = None, dataset: str = "fashionmnist", rounds: int = 3,
            seconds: float = 8.0, group: int | None = None,
            compiled: bool = True) -> dict[str, Any]:
    """Interleaved speeds of the plain, engine, side-by-side, ceiling, compiled
    (``compiled``) and (where native) bf16 loops; see the module docstring for each one."""
    dev = default_device(device)
    group = group or conv_engine.group_size(dev, 4)
    loops: dict[str, Callable[[], int]] = {
        "plain": _plain_step(dev, dataset), "fast": engine_step(dev, dataset, group, False),
        "ceiling": engine_step(dev, dataset, group, False, ceiling=True)}
    bf16 = native_bf16(dev)
    if bf16:
        loops["bf16"] = engine_step(dev, dataset, group, True)
    for step in loops.values():  # warm-up: kernel selection, allocator
        step()
    compile_s = None
    if compiled:
        loops["compiled"] = engine_step(dev, dataset, group, False, compiled=True)
        t0 = time.perf_counter()
        loops["compiled"]()
        compile_s = time.perf_counter() - t0
    side = _side_processes(dev)
    sgemm = sgemm_gflops(dev, seconds=2.0)
    idle_before = cpu_idle_fraction()
    load_before = os.getloadavg()
    done = {k: 0 for k in loops}
    spent = {k: 0.0 for k in loops}
    side_speeds: list[float] = []
    ceiling_side: list[float] = []
    for _ in range(rounds):
        for name, step in loops.items():
            t0 = time.perf_counter()
            while True:
                done[name] += step()
                sync(dev)
                if time.perf_counter() - t0 >= seconds:
                    break
            spent[name] += time.perf_counter() - t0
        if side:
            side_speeds.append(side_by_side(side, seconds, dataset))
            ceiling_side.append(side_by_side(side, seconds, dataset, ceiling=True))
    load_after = os.getloadavg()
    speed = {k: done[k] / spent[k] for k in loops}
    fast = sum(side_speeds) / len(side_speeds) if side else speed["fast"]
    ceiling = sum(ceiling_side) / len(ceiling_side) if side else speed["ceiling"]
    flop = train_flop("resnet18", dataset)
    return {
        "device": str(dev), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        **machine(), **provenance(),
        "dataset": dataset, "batch_size": paper_train("resnet18").batch_size,
        "group_size": group, "side_by_side_processes": side or None,
        "conv_plain_it_s": round(speed["plain"], 3),
        "conv_it_s": round(fast, 3),
        "conv_one_process_it_s": round(speed["fast"], 3),
        "conv_compiled_it_s": round(speed["compiled"], 3) if compiled else None,
        "compile_s": round(compile_s, 1) if compile_s is not None else None,
        "conv_bf16_it_s": round(speed["bf16"], 3) if bf16 else None,
        "speedup_fp32": round(fast / speed["plain"], 2),
        "speedup_fp32_one_process": round(speed["fast"] / speed["plain"], 2),
        "speedup_fp32_compiled_one_process": (round(speed["compiled"] / speed["plain"], 2)
                                              if compiled else None),
        "speedup_bf16_one_process": round(speed["bf16"] / speed["plain"], 2) if bf16 else None,
        "conv_ceiling_it_s": round(ceiling, 3),
        "conv_ceiling_one_process_it_s": round(speed["ceiling"], 3),
        "speedup_ceiling": round(ceiling / speed["plain"], 2),
        "train_gflop_per_it": round(flop / 1e9, 2),
        "conv_plain_gflops": round(speed["plain"] * flop / 1e9, 1),
        "conv_gflops": round(fast * flop / 1e9, 1),
        "sgemm_gflops": round(sgemm, 1),
        "speedup_at_sgemm_peak": round(sgemm * 1e9 / flop / speed["plain"], 2),
        "side_by_side_it_s_per_round": [round(v, 3) for v in side_speeds],
        "ceiling_side_by_side_it_s_per_round": [round(v, 3) for v in ceiling_side],
        "iterations_measured": done, "seconds_measured": {k: round(v, 1) for k, v in
                                                          spent.items()},
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpu_idle_fraction_before": idle_before,
    }

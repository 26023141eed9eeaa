"""Measuring primitives shared by the benchmarks (:mod:`lthlib.bench`, :mod:`lthlib.bench.resnet`).

Throughput numbers mean little without the machine's arithmetic ceiling, its load and the
code that produced them, so every benchmark records them the same way: a time-boxed loop
(a loaded machine is slow, a fixed count could run for ever), the sgemm ceiling, the CPU
model with the vector features that decide float speed, and torch version, commit and date.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from lthlib.store.run_store import git_commit

LENET_TRAIN_FLOP = 95.8e6  # 3 x forward (2 x 266,200 x 60): the counting convention


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it (a no-op on CPU)."""
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
    sync(device)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b, out=out)
        sync(device)
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, 3 * 2 * n ** 3 / dt / 1e9)
    return best


def timed_loop(step: Callable[[], None], seconds: float, warmup: int,
               device: torch.device) -> float:
    """Iterations/s of ``step`` over about ``seconds`` (time-boxed: a loaded machine is slow)."""
    for _ in range(warmup):
        step()
    sync(device)
    done, t0 = 0, time.perf_counter()
    while True:
        for _ in range(10):
            step()
        done += 10
        sync(device)
        spent = time.perf_counter() - t0
        if spent >= seconds:
            return done / spent


def load_avg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


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
            "cores": os.cpu_count() or 0, "load_avg": load_avg()}


def provenance() -> dict[str, Any]:
    """Where and when: torch version, commit of this code, UTC date."""
    return {"torch": torch.__version__, "git_commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())}

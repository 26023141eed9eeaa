"""Dense against sparse inference of pruned networks on a CPU (``bench --sparse-inference``).

For a LeNet pruned as the paper prunes it (fc 20%, output 10% per round) and the paper's
ResNet-18 (global 20% of the 3x3 convs per round) at several IMP levels, one network per
fresh process (so that peak memory is this configuration's own): the dense network with
its zeros, and :func:`lthlib.nets.sparse_layers.to_sparse_inference`'s CSR copy. Measured at
one thread: batch-1 latency and batch-1,000 throughput, each the best over a time box (on a
shared machine the best is the least disturbed; the medians are recorded too), the peak
resident memory the batch-1,000 forward adds (``VmHWM`` after resetting it, Linux only),
and the size on disk of ``torch.save(state_dict)`` against :func:`lthlib.export_sparse`.
Weights are pruned by magnitude from their initialisation: the speed of a sparse product
depends on how many weights are kept and where, not on what was learnt.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lthlib.bench.common import load_avg, machine, provenance
from lthlib.experiments.export import dense_bytes, export_sparse
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import plain_state, prune_network, remaining_fraction
from lthlib.nets.sparse_layers import to_sparse_inference

__all__ = ["LEVELS", "pruned_network", "sparse_inference"]

# IMP levels measured: LeNet keeps 0.8^n of its hidden weights, ResNet-18 0.8^n of its convs.
# ResNet-18 starts at level 8 (Pm 17.8%): denser, one sparse batch-1,000 forward takes
# minutes on a 2-core CPU (17 img/s against 68 dense at level 8, measured while loaded).
LEVELS = {"lenet": (0, 3, 7, 12, 18), "resnet18": (8, 14, 20)}
QUICK_LEVELS = {"lenet": (0, 7, 18), "resnet18": (14,)}
BATCH = 1000


def pruned_network(arch: str, level: int, seed: int = 0) -> torch.nn.Module:
    """``arch`` pruned ``level`` times with the paper's rates, from its initial weights."""
    net = create_network(arch, seed=seed)
    for _ in range(level):
        prune_network(net)
    return net.eval()


def _peak_reset() -> int | None:
    """Reset the peak resident size and return the current one (bytes), or None."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _measure(arch: str, level: int, mode: str, seconds: float) -> dict[str, Any]:
    """One configuration, in its own process: latency, throughput, peak memory."""
    torch.set_num_threads(1)
    net = pruned_network(arch, level)
    shape = (1, 28, 28) if arch == "lenet" else (3, 32, 32)
    dense = create_network(arch).eval()
    dense.load_state_dict(plain_state(net))
    model = dense if mode == "dense" else to_sparse_inference(net)
    gen = torch.Generator().manual_seed(0)
    one, many = torch.rand(1, *shape, generator=gen), torch.rand(BATCH, *shape, generator=gen)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            model(one)
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 5:
            t0 = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - t0)
        base = _peak_reset()
        t0 = time.perf_counter()
        out = model(many)
        first = time.perf_counter() - t0
        peak = _status("VmHWM") if base is not None else None
        runs = [first]
        while sum(runs) < seconds:
            t0 = time.perf_counter()
            model(many)
            runs.append(time.perf_counter() - t0)
        diff = (out - dense(many)).abs().max().item() if mode == "sparse" else 0.0
    return {"arch": arch, "level": level, "pm": round(remaining_fraction(net), 4), "mode": mode,
            "latency_b1_ms": round(1e3 * min(times), 4),
            "latency_b1_median_ms": round(1e3 * statistics.median(times), 4),
            "throughput_b1000_img_s": round(BATCH / min(runs), 1),
            "throughput_b1000_median_img_s": round(BATCH / statistics.median(runs), 1),
            "b1000_forwards": len(runs),
            "peak_extra_mib_b1000": None if peak is None or base is None
            else round((peak - base) / 2 ** 20, 1),
            "max_abs_logit_diff": diff}


CHILD = ("import json, sys; from lthlib.bench.sparse_inference import _measure; "
         "print(json.dumps(_measure(*json.loads(sys.argv[1]))))")


def _in_fresh_process(arch: str, level: int, mode: str, seconds: float) -> dict[str, Any]:
    """:func:`_measure` in a new Python process (its peak memory is its own)."""
    args = json.dumps([arch, level, mode, seconds])
    out = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measuring {arch} level {level} {mode} failed: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sizes(arch: str, level: int) -> dict[str, Any]:
    net = pruned_network(arch, level)
    with tempfile.TemporaryDirectory() as tmp:
        info = export_sparse(net, None, Path(tmp) / "sparse.pt")
    return {"bytes_dense_state_dict": dense_bytes(net), "bytes_sparse_export":
            info["bytes_sparse"], "size_ratio": round(info["size_ratio"], 4)}


def sparse_inference(quick: bool = False, seconds: float = 1.0,
                     echo: Any = print) -> dict[str, Any]:
    """Every configuration dense and sparse, one fresh process each; ratios per Pm."""
    levels = QUICK_LEVELS if quick else LEVELS
    start, t0 = load_avg(), time.perf_counter()
    rows, ratios = [], []
    for arch, arch_levels in levels.items():
        for level in arch_levels:
            pair = {}
            for mode in ("dense", "sparse"):
                row = _in_fresh_process(arch, level, mode, seconds)
                rows.append(row)
                pair[mode] = row
                echo(f"{arch} Pm {row['pm']:.3f} {mode}: batch-1 {row['latency_b1_ms']:.3f} ms, "
                     f"batch-{BATCH} {row['throughput_b1000_img_s']:.0f} img/s, peak "
                     f"+{row['peak_extra_mib_b1000']} MiB")
            d, s = pair["dense"], pair["sparse"]
            peak = (None if not d["peak_extra_mib_b1000"] or s["peak_extra_mib_b1000"] is None
                    else round(s["peak_extra_mib_b1000"] / d["peak_extra_mib_b1000"], 3))
            ratios.append({"arch": arch, "level": level, "pm": d["pm"],
                           "latency_speedup": round(d["latency_b1_ms"] / s["latency_b1_ms"], 3),
                           "throughput_speedup": round(s["throughput_b1000_img_s"]
                                                       / d["throughput_b1000_img_s"], 3),
                           "peak_memory_ratio": peak, **_sizes(arch, level),
                           "max_abs_logit_diff": s["max_abs_logit_diff"]})
    return {"bench": "sparse-inference", "threads": 1, "batch": BATCH,
            "time_box_s": seconds, "rows": rows, "ratios": ratios,
            "sparse_pays": {
                "latency": [(r["arch"], r["pm"]) for r in ratios if r["latency_speedup"] > 1],
                "throughput": [(r["arch"], r["pm"]) for r in ratios
                               if r["throughput_speedup"] > 1]},
            "load_avg_at_start": start, "load_avg_at_end": load_avg(),
            "wall_s": round(time.perf_counter() - t0, 1), **machine(), **provenance()}

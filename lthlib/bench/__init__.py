"""``python -m lthlib bench`` (or ``python -m lthlib.bench``): how fast lthlib trains here.

Modes, one per invocation:

- default (``--quick`` for a run of a few minutes): LeNet training speed, the usual loops
  against the population engine (:mod:`lthlib.bench.lenet`);
- ``--imp-trial PROFILE``: one whole LeNet/MNIST IMP trial by lthlib and by a plain reference
  implementation, side by side (:mod:`lthlib.bench.reference`);
- ``--sparse`` and ``--sparse-trial PROFILE``: the sparse path against the dense one
  (:mod:`lthlib.bench.sparse`);
- ``--conv``: ResNet-18, a textbook loop against the conv engine (:mod:`lthlib.bench.resnet`);
- ``--conv-precision``: the conv engine at float32 against bf16 autocast, native or not;
- ``--sparse-inference``: dense against CSR inference of pruned LeNets and ResNet-18s
  (:mod:`lthlib.bench.sparse_inference`): latency, throughput, peak memory, file size.

``--json`` prints one JSON object on the last line of stdout; ``--out FILE`` also stores it
(e.g. under ``runs/bench/``) with the command that reproduces it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lthlib.util.atomic import atomic_write_text
from lthlib.bench.common import machine, sgemm_gflops
from lthlib.bench.resnet import measure as conv_measure
from lthlib.bench.resnet import precision_speeds
from lthlib.data.datasets import load_tensors
from lthlib.bench.lenet import eval_ms_per_member, k1_against_plain, k1_with_evaluation, run
from lthlib.bench.reference import imp_trial_vs_reference, reference_imp_trial
from lthlib.bench.sparse import imp_trial_pair, sparse_sweep
from lthlib.bench.sparse_inference import sparse_inference

__all__ = ["eval_ms_per_member", "imp_trial_pair", "imp_trial_vs_reference",
           "k1_against_plain", "k1_with_evaluation", "machine", "main", "reference_imp_trial",
           "register", "run", "sgemm_gflops", "sparse_inference", "sparse_sweep"]

_DESCRIPTION = "How fast lthlib trains here, against the loops people usually write."


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a run of a few minutes on a CPU")
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
                        "(fp32, and bf16 where native), interleaved (lthlib.bench.resnet)")
    parser.add_argument("--conv-precision", action="store_true",
                        help="ResNet-18 in the conv engine, one thread: fp32 vs bf16 autocast, "
                        "native or emulated")
    parser.add_argument("--sparse-inference", action="store_true",
                        help="pruned LeNet and ResNet-18 at several Pm, dense vs CSR inference: "
                        "batch-1 latency, batch-1000 throughput, peak memory, file size")


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand to an argparse ``add_subparsers()`` object; its handler
    (``args.handler(args) -> int``) runs the chosen measurement."""
    parser = sub.add_parser("bench", help=_DESCRIPTION, description=_DESCRIPTION)
    _add_options(parser)
    parser.set_defaults(handler=handle)


def _command(args: argparse.Namespace) -> str:
    """The command that reproduces a result: its options in one fixed order, --out left out."""
    parts = ["python -m lthlib.bench"]
    for flag, value in (("--conv", args.conv), ("--conv-precision", args.conv_precision),
                        ("--sparse-inference", args.sparse_inference),
                        ("--imp-trial", args.imp_trial),
                        ("--sparse-trial", args.sparse_trial), ("--sparse", args.sparse),
                        ("--quick", args.quick), ("--population", args.population),
                        ("--iterations", args.iterations), ("--device", args.device),
                        ("--trial-threads", None if args.trial_threads == 1
                         else args.trial_threads), ("--json", args.json)):
        if value is True:
            parts.append(flag)
        elif value not in (None, False):
            parts += [flag, str(value)]
    return " ".join(parts)


def handle(args: argparse.Namespace) -> int:
    """Run the measurement ``args`` asks for; print and store its summary."""
    for name in ("population", "iterations", "trial_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.conv:
        result = conv_measure(args.device, rounds=2 if args.quick else 3,
                              seconds=3.0 if args.quick else 8.0)
    elif args.conv_precision:
        result = precision_speeds(args.device, rounds=1 if args.quick else 2,
                                  seconds=5.0 if args.quick else 15.0)
    elif args.sparse_inference:
        result = sparse_inference(args.quick, seconds=0.3 if args.quick else 2.0)
    elif args.imp_trial:
        result = imp_trial_vs_reference(args.imp_trial, threads=args.trial_threads)
    elif args.sparse_trial:
        result = imp_trial_pair(args.sparse_trial)
    elif args.sparse:
        result = sparse_sweep(load_tensors("mnist"), 0.5 if args.quick else 3.0,
                              range(0, 19, 3) if args.quick else range(19))
    else:
        result = run(args.quick, args.population, args.iterations, args.device)
    result["command"] = _command(args)
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lthlib.bench [options]``: the same as ``python -m lthlib bench``."""
    parser = argparse.ArgumentParser(prog="python -m lthlib.bench", description=_DESCRIPTION)
    _add_options(parser)
    args = parser.parse_args(argv)
    return handle(args)

"""Population engine: many fully-connected networks trained at once, number for number.

Reproducing the paper is thousands of LeNet trainings, and one LeNet step leaves a CPU core
mostly waiting on per-op overhead. :func:`train_population` therefore trains K networks of
one architecture (``lenet``, ``mlp``) together. Each member gets the result
:func:`lthlib.training.one_network.train` gives it alone (same batches, loss, optimizer, lr schedule from
:mod:`lthlib.training.schedule`, evaluation points); ``tests/training/test_engine.py`` checks this.

Where the work goes, each path backed by a measurement in ``python -m lthlib.bench``
(``runs/bench/``):

- dense members: stacked parameters and one hand-written fused step
  (:mod:`lthlib.training.population.dense_stack`), equal to train() bit for bit at the same thread count;
- on a CPU, members with a layer at most 15% dense (IMP's later levels): the sparse path
  (:mod:`lthlib.training.population.sparse_train`), work in proportion to the remaining weights, equal to
  train() up to float rounding;
- K = 1 (``trials=1``, every IMP ticket level): one thread trains, never two intra-op
  threads (torch's kernels round differently at another thread count and stored results must
  stay reproducible); a spare thread evaluates a frozen copy of the weights while training
  goes on (:mod:`lthlib.training.population.eval_worker`), which gives the same numbers;
- K >= 2 on a multi-core CPU: one single-threaded part per thread
  (:mod:`lthlib.training.population.thread_parts`); every member is evaluated in inference mode, all members of a
  part at once (:mod:`lthlib.training.population.stack_eval`).

The training loop is the body of :func:`train_population`, and it owns the update: the stack
computes the gradients into its buffers (``gradients``) and the loop calls the optimizer's
step itself, so torch's kernel is one call below the loop. With several parts, the loop steps
part 0 the same way on its own thread and queues the other parts' steps to theirs.

Used in: chapter 7.3 (training at scale) and by :mod:`lthlib.experiments.procedures` for lenet/mlp.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from lthlib.config.paper import TrainConfig, check_choice
from lthlib.data.datasets import TensorSplit, batch_indices
from lthlib.training.population.dense_stack import DenseStack, layer_names, member_layer
from lthlib.util.device import default_device
from lthlib.training.population.eval_worker import EvalWorker
from lthlib.training.schedule import eval_iterations, lr_factor
from lthlib.training.population.sparse_train import (SPARSE_TRAIN_DENSITY, SparseStack,
                                                     is_sparse_layer)
from lthlib.training.population.stack_eval import eval_rows, eval_sets
from lthlib.training.population.thread_parts import ThreadedParts

ENGINE_ARCHS = ("lenet", "mlp")
HISTORY_COLUMNS = ["iteration", "train_loss", "train_acc", "val_loss", "val_acc",
                   "test_loss", "test_acc"]
_BATCH_BLOCK = 256  # batch index blocks moved to the device at once


@dataclass
class MemberResult:
    """One member's training: the same history and final weights train() would give it."""

    history: pd.DataFrame
    final_state: dict[str, Tensor]  # plain keys, CPU, effective weights (pruned = 0)


def supports(arch: str) -> bool:
    """Whether the engine can train ``arch`` (fully-connected nets only)."""
    return str(arch).lower() in ENGINE_ARCHS


def train_population(arch: str, inits: list[dict[str, Tensor]],
                     masks: list[dict[str, Tensor] | None], data: TensorSplit,
                     train: TrainConfig, batch_seeds: list[int],
                     device: torch.device | str | None = None, progress: bool | str = False,
                     threads: int | None = None, parts: int | None = None,
                     sparse_below: float | None = None,
                     overlap_eval: bool | None = None) -> list[MemberResult]:
    """Train every member as :func:`lthlib.training.one_network.train` would alone; results in input order.

    ``inits``: plain state dicts (``fc1.weight``, ``fc1.bias``, ...); ``masks``: per member
    ``{"fc1": 0/1 (out, in), ...}`` or None (dense); members with equal ``batch_seeds``
    see the same minibatches. ``threads``: CPU threads to use (default: torch's setting);
    ``parts``: independent stacks run by that many threads (default: one per CPU thread).
    ``sparse_below``: on a CPU, members with a layer at or below this density train on the
    sparse path (:mod:`lthlib.training.population.sparse_train`; equal to train() up to rounding, not bit for
    bit); default :data:`~lthlib.training.population.sparse_train.SPARSE_TRAIN_DENSITY` on CPU, 0 (off) on GPU.
    ``overlap_eval``: evaluate on a helper thread while training goes on (same numbers);
    default: on a CPU, whenever the parts leave a thread spare (one network on two threads).
    """
    arch = check_choice("network", arch, ENGINE_ARCHS)
    k = len(inits)
    if k == 0:
        return []
    if len(masks) != k or len(batch_seeds) != k:
        raise ValueError(f"inits, masks and batch_seeds must have one entry per member; got "
                         f"{k}, {len(masks)}, {len(batch_seeds)}")
    names = layer_names(inits[0])
    device = default_device(device)
    threads = int(threads) if threads is not None else torch.get_num_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    threshold = sparse_threshold(device, sparse_below)
    n_parts, intra = _split(k, device, threads, parts)
    fit = (data.train_x.to(device).reshape(len(data.train_y), -1), data.train_y.to(device))
    evals = eval_sets((data.train_eval_x, data.train_eval_y), (data.val_x, data.val_y),
                      (data.test_x, data.test_y), device)
    eval_points = set(eval_iterations(train))
    seeds = [int(s) for s in batch_seeds]
    sparse = {i for i in range(k)
              if threshold > 0 and _is_sparse_member(names, inits[i], masks[i], threshold)}
    bar = _progress_bar(progress, train.iterations * k, f"train {k} nets")
    before = torch.get_num_threads()
    out: list[MemberResult] = []
    order: list[int] = []
    try:
        torch.set_num_threads(intra)
        # the dense members, then the very sparse ones: each set split into parts
        for members in ([i for i in range(k) if i not in sparse], sorted(sparse)):
            groups = _balanced_parts(members, seeds, n_parts)
            if not groups:
                continue
            stacks = [_sparse_stack(names, [inits[i] for i in g], [masks[i] for i in g],
                                    train, threshold) if members[0] in sparse else
                      DenseStack(names, [inits[i] for i in g], [masks[i] for i in g], train,
                                 device) for g in groups]
            feed = _Feed([[seeds[i] for i in g] for g in groups], fit, train.batch_size,
                         device)
            local = stacks[0]  # stepped on this thread; any other parts on their own
            threaded = ThreadedParts(stacks, intra) if len(stacks) > 1 else None
            stack = local if threaded is None else threaded  # what evaluation sees
            overlap = (overlap_eval if overlap_eval is not None  # single-threaded parts only
                       else device.type == "cpu" and intra == 1 and len(groups) < threads)
            worker = EvalWorker(lambda model: eval_rows(model, evals)) if overlap else None
            points: dict[int, list[dict[str, float]]] = {}  # iteration -> row per member
            try:
                for it in range(train.iterations + 1):
                    if it in eval_points:
                        if worker is not None:
                            worker.submit(it, stack.snapshot())
                        else:
                            points[it] = eval_rows(stack, evals)
                    if it == train.iterations:
                        break
                    xs, ys = feed.next()
                    lr = train.lr * lr_factor(it, train)
                    if threaded is not None:
                        threaded.queue_steps(xs, ys, lr)
                    local.gradients(xs[0], ys[0])
                    local.opt.step(lr)
                    if bar is not None:
                        bar.update(stack.k)
                states = stack.final_states()
            finally:
                if worker is not None:
                    points.update(worker.results())
                if threaded is not None:
                    threaded.close()
            out += _member_results(points, states)
            order += [i for g in groups for i in g]
    finally:
        torch.set_num_threads(before)
        if bar is not None:
            bar.close()
    by_member = dict(zip(order, out))
    return [by_member[i] for i in range(k)]


def sparse_threshold(device: torch.device | str | None = None,
                     sparse_below: float | None = None) -> float:
    """The density at or below which members train sparse here (0: never): ``sparse_below``,
    else env ``LTH_SPARSE_BELOW``, else :data:`SPARSE_TRAIN_DENSITY` on CPU and 0 on GPU."""
    if sparse_below is None and os.environ.get("LTH_SPARSE_BELOW"):
        try:
            sparse_below = float(os.environ["LTH_SPARSE_BELOW"])
        except ValueError:
            raise ValueError(f"LTH_SPARSE_BELOW={os.environ['LTH_SPARSE_BELOW']!r} is not a "
                             f"number; allowed: a density in [0, 1] (0 = dense only)") from None
    if sparse_below is None:
        return SPARSE_TRAIN_DENSITY if default_device(device).type == "cpu" else 0.0
    if not 0.0 <= float(sparse_below) <= 1.0:
        raise ValueError(f"sparse_below must be a density in [0, 1], got {sparse_below}")
    if float(sparse_below) > 0 and default_device(device).type != "cpu":
        raise ValueError(f"the sparse path runs on CPU only; got device {device} with "
                         f"sparse_below={sparse_below} (allowed there: 0)")
    return float(sparse_below)


# --- helpers of train_population ------------------------------------------------------------

def _member_results(points: dict[int, list[dict[str, float]]],
                    states: list[dict[str, Tensor]]) -> list[MemberResult]:
    """Per member: its history (one row per evaluation point) and final weights."""
    results = []
    for j, state in enumerate(states):
        df = pd.DataFrame([{"iteration": it, **points[it][j]} for it in sorted(points)],
                          columns=HISTORY_COLUMNS)
        df["iteration"] = df["iteration"].astype(int)
        results.append(MemberResult(df, state))
    return results


def _sparse_stack(names: list[str], inits: Sequence[dict[str, Tensor]],
                  masks: Sequence[dict[str, Tensor] | None], cfg: TrainConfig,
                  threshold: float) -> SparseStack:
    """The very sparse members' stack (:mod:`lthlib.training.population.sparse_train`, CPU only)."""
    cpu = torch.device("cpu")
    layers = [[member_layer(state, given, name, cpu) for name in names]
              for state, given in zip(inits, masks)]
    return SparseStack(names, [[w for w, _, _ in m] for m in layers],
                       [[b for _, _, b in m] for m in layers],
                       [[mk for _, mk, _ in m] for m in layers], cfg, threshold)


def _is_sparse_member(names: list[str], state: dict[str, Tensor],
                      given: dict[str, Tensor] | None, threshold: float) -> bool:
    cpu = torch.device("cpu")
    return any(is_sparse_layer(member_layer(state, given, name, cpu)[1], threshold)
               for name in names)


class _BatchStream:
    """Batches of ``batch_indices`` for one seed, moved to the device a block at a time."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self._it: Iterator[Tensor] = batch_indices(n, batch_size, seed)
        self.device = device
        self._block: Tensor | None = None
        self._pos = 0

    def next(self) -> Tensor:
        if self._block is None or self._pos == len(self._block):
            rows = [next(self._it) for _ in range(_BATCH_BLOCK)]
            self._block = torch.stack(rows).to(self.device)
            self._pos = 0
        self._pos += 1
        return self._block[self._pos - 1]


class _Feed:
    """Every part's minibatch per step: (B, D) when the part's members share one seed, else
    (K, B, D) with each member's own. One stream per seed, drawn once per step."""

    def __init__(self, part_seeds: list[list[int]], fit: tuple[Tensor, Tensor],
                 batch_size: int, device: torch.device) -> None:
        self.x, self.y = fit
        unique = sorted({s for seeds in part_seeds for s in seeds})
        self.streams = [_BatchStream(len(self.y), batch_size, s, device) for s in unique]
        self.select: list[int | Tensor] = [
            unique.index(seeds[0]) if len(set(seeds)) == 1 else
            torch.tensor([unique.index(s) for s in seeds], device=device)
            for seeds in part_seeds]

    def next(self) -> tuple[list[Tensor], list[Tensor]]:
        """([x per part], [y per part])."""
        idx = [s.next() for s in self.streams]
        stacked = torch.stack(idx) if len(idx) > 1 else None
        xs, ys = [], []
        for sel in self.select:  # index_select: a row copy, 3x faster here than x[rows]
            if isinstance(sel, int):
                xs.append(torch.index_select(self.x, 0, idx[sel]))
                ys.append(torch.index_select(self.y, 0, idx[sel]))
            else:
                rows = stacked[sel]  # type: ignore[index]
                xs.append(torch.index_select(self.x, 0, rows.view(-1)).view(*rows.shape, -1))
                ys.append(torch.index_select(self.y, 0, rows.view(-1)).view(rows.shape))
        return xs, ys


def _split(k: int, device: torch.device, threads: int, parts: int | None) -> tuple[int, int]:
    """(parts, intra-op threads per part). Automatic on CPU: one single-threaded part per
    thread (see :mod:`lthlib.training.population.thread_parts`); on a GPU one part on every thread.
    Stacks of 4 stepped in turn measured no faster than one of 8 on one idle core (1,076
    against 1,101 model-it/s), so a thread holds one stack however large."""
    if parts is not None:
        n = max(1, min(int(parts), k))
        return n, max(1, threads // n)
    if device.type != "cpu":
        return 1, threads
    return max(1, min(threads, k)), 1


def _balanced_parts(members: list[int], seeds: list[int], n_parts: int) -> list[list[int]]:
    """Contiguous, balanced parts; members sharing a seed stay together where possible."""
    if not members:
        return []
    n = max(1, min(n_parts, len(members)))
    order = sorted(members, key=lambda i: (seeds[i], i))
    bounds = [round(p * len(order) / n) for p in range(n + 1)]
    return [order[bounds[p]:bounds[p + 1]] for p in range(n)]


def _progress_bar(progress: bool | str, total: int, desc: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm  # a display dependency, loaded only when a bar is asked for
    return tqdm(total=total, leave=False, unit="net-it",
                desc=progress if isinstance(progress, str) else desc)

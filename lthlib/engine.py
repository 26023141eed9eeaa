"""Population engine: many fully-connected networks trained at once, number for number.

Reproducing the paper is thousands of LeNet trainings. One LeNet step at batch 60 leaves a
CPU core mostly waiting on per-op overhead and a GPU idle, so this module trains K networks
of one architecture (``lenet``, ``mlp``) together: parameters are stacked to (K, out, in),
layer 1 is a single GEMM for every member when they share a minibatch (a "paired design")
and batched matmuls (bmm) everywhere else; forward and backward are written out by hand
(no autograd graph) into pre-allocated buffers, and one optimizer step updates all members.
Adam and SGD are elementwise, so stacking keeps the members independent; masks zero the
gradient of pruned weights, which start at exactly 0 and so stay exactly 0.

Each member gets the result :func:`lthlib.train.train` gives it alone (same batches, loss,
optimizer, lr schedule, evaluation points); ``tests/test_engine.py`` checks this. On a CPU,
members with a layer at most 15% dense (IMP's later levels) go to the sparse path of
:mod:`lthlib.sparse_train` instead, which does work in proportion to the remaining weights
and agrees with train() up to float rounding rather than bit for bit.

On a multi-core CPU the population is split into parts trained by one Python thread each
with one intra-op thread (torch releases the GIL inside ops), which keeps every core busy
without the synchronisation of multi-threaded small GEMMs. Paths by K and density, each
backed by a measurement in ``python -m lthlib.bench`` (``runs/bench/``):

- K = 1 (``trials=1``, every IMP ticket level): one network trains on one thread, never on
  two intra-op threads, because torch's kernels round differently at another thread count
  and stored results must stay reproducible; a spare thread evaluates a frozen copy of the
  weights while training goes on (:mod:`lthlib.eval_worker`), which gives the same numbers;
- K >= 2: one single-threaded part per thread, members stacked (bmm), evaluated together;
- density: members with a layer at most 15% dense train and evaluate on the sparse path.

Used in: chapter 7.3 (training at scale) and by :mod:`lthlib.experiments` for lenet/mlp.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import TrainConfig, check_choice
from .data import TensorSplit, batch_indices
from .device import default_device as _resolve_device
from .eval_worker import EvalWorker
from .sparse_train import SPARSE_TRAIN_DENSITY, SparseStack, is_sparse_layer

ENGINE_ARCHS = ("lenet", "mlp")
HISTORY_COLUMNS = ["iteration", "train_loss", "train_acc", "val_loss", "val_acc",
                   "test_loss", "test_acc"]
_LAYER_KEY = re.compile(r"^fc(\d+)\.weight$")
_EVAL_FLOATS = 1 << 25  # most activations per evaluation chunk (128 MiB of float32)
_EVAL_ROWS_CPU = 1024  # measured best on a 2-core CPU (34 vs 49 ms per LeNet per 5K at 5000)
_SPARSE_EVAL_DENSITY = 0.08  # sparse beats dense GEMM below ~10-15% density (1 thread)
_BATCH_BLOCK = 256  # batch index blocks moved to the device at once
# fc1's weight gradient as mm (not a bmm of one) for a single network: on one core 157 us
# against 240 us for that product; from K = 2 on, whole steps showed no difference
_MM_MEMBERS_UP_TO = 1


@dataclass
class MemberResult:
    """One member's training: the same history and final weights train() would give it."""

    history: pd.DataFrame
    final_state: dict[str, Tensor]  # plain keys, CPU, effective weights (pruned = 0)


def supports(arch: str) -> bool:
    """Whether the engine can train ``arch`` (fully-connected nets only)."""
    return str(arch).lower() in ENGINE_ARCHS


def default_device(device: torch.device | str | None = None) -> torch.device:
    """``device``, else env LTH_DEVICE, else CUDA when available, else CPU."""
    return _resolve_device(device)


# --- schedule (the same arithmetic as lthlib.train's LambdaLR) ----------------------------

def _lr_factor(iteration: int, cfg: TrainConfig) -> float:
    warm = min(1.0, (iteration + 1) / cfg.warmup) if cfg.warmup > 0 else 1.0
    drops = sum(1 for m in cfg.milestones if iteration >= m)
    return warm * cfg.gamma ** drops


def _eval_iterations(cfg: TrainConfig) -> list[int]:
    its = list(range(0, cfg.iterations + 1, cfg.eval_every))
    if its[-1] != cfg.iterations:
        its.append(cfg.iterations)
    return its


class _Optimizer:
    """The update train() makes (Adam or SGD, torch's kernels) over the given tensors.

    On CPU these are per-member views of the stacks, so the kernels split the work (vector
    tails, per-tensor chunks) exactly as for one network: each member's update is bit for
    bit the one train() makes. For Adam, ``torch._fused_adam_`` is called directly with
    one shared step counter, which removes torch.optim's per-tensor Python bookkeeping (a
    large share of a step on CPU); torch.optim.Adam is the fallback where it is missing.
    """

    def __init__(self, params: list[Tensor], grads: list[Tensor], cfg: TrainConfig) -> None:
        self.cfg, self.params, self.grads = cfg, params, grads
        self.opt: torch.optim.Optimizer | None = None
        self.fused = False
        if cfg.optimizer == "adam":
            self.exp_avgs = [torch.zeros_like(p) for p in params]
            self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
            self.step_count = torch.zeros((), dtype=torch.float32, device=params[0].device)
            self.fused = hasattr(torch, "_fused_adam_") and self._fused_works(params[0])
            if self.fused:
                return
        for p, g in zip(params, grads):
            p.grad = g
        if cfg.optimizer == "adam":
            try:
                self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                            weight_decay=cfg.weight_decay, fused=True)
            except (RuntimeError, TypeError, ValueError):
                self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:  # foreach: the same per-tensor arithmetic as the default loop, fewer calls
            try:
                self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                           weight_decay=cfg.weight_decay, foreach=True)
            except (RuntimeError, TypeError, ValueError):
                self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                           weight_decay=cfg.weight_decay)

    def _fused_works(self, like: Tensor) -> bool:
        """Whether this torch has a fused Adam kernel for the device (probe on scratch)."""
        probe = [torch.ones(3, dtype=like.dtype, device=like.device) for _ in range(4)]
        try:
            self._fused_call(*([t] for t in probe), [torch.ones((), device=like.device)], 1e-3)
        except (RuntimeError, TypeError, NotImplementedError):
            return False
        return True

    def _fused_call(self, params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                    exp_avg_sqs: list[Tensor], steps: list[Tensor], lr: float) -> None:
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=lr, beta1=0.9, beta2=0.999, weight_decay=self.cfg.weight_decay,
                           eps=1e-8, maximize=False, grad_scale=None, found_inf=None)

    def step(self, lr: float) -> None:
        if self.fused:
            self.step_count.add_(1)
            self._fused_call(self.params, self.grads, self.exp_avgs, self.exp_avg_sqs,
                             [self.step_count] * len(self.params), lr)
            return
        assert self.opt is not None
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()


# --- inputs -------------------------------------------------------------------------------

def _layer_names(state: dict[str, Tensor]) -> list[str]:
    """fc1..fcN from a plain (or torch-pruned) state dict, checked to be a chain."""
    nums = sorted(int(m.group(1)) for k in state
                  for m in [_LAYER_KEY.match(k.replace(".weight_orig", ".weight"))] if m)
    if not nums or nums != list(range(1, len(nums) + 1)):
        raise ValueError(f"engine needs fully-connected state dicts with keys fc1.weight, "
                         f"fc1.bias, ...; got keys {sorted(state)}")
    return [f"fc{n}" for n in nums]


def _effective(state: dict[str, Tensor], name: str) -> tuple[Tensor, Tensor | None]:
    """(weight, mask carried by the state dict or None) for layer ``name``."""
    if f"{name}.weight" in state:
        return state[f"{name}.weight"], None
    orig, mask = state[f"{name}.weight_orig"], state[f"{name}.weight_mask"]
    return orig * mask, mask


def _member_layer(state: dict[str, Tensor], given: dict[str, Tensor] | None, name: str,
                  device: torch.device) -> tuple[Tensor, Tensor | None, Tensor]:
    """(masked weight, mask or None, bias) of one member's layer, float32 on ``device``."""
    w, carried = _effective(state, name)
    mask = given.get(name) if given is not None else None
    mask = carried if mask is None else mask
    if mask is not None and tuple(mask.shape) != tuple(w.shape):
        raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}; "
                         f"allowed: the weight's shape {tuple(w.shape)}")
    w = w.detach().to(device, torch.float32)
    if mask is not None:
        mask = mask.detach().to(device, torch.float32)
        w = w * mask  # pruned weights start (and stay) exactly 0
    return w, mask, state[f"{name}.bias"].detach().to(device, torch.float32)


def _sparse_stack(names: list[str], inits: Sequence[dict[str, Tensor]],
                  masks: Sequence[dict[str, Tensor] | None], cfg: TrainConfig,
                  threshold: float) -> Any:
    """The very sparse members' stack (:mod:`lthlib.sparse_train`, CPU only)."""
    cpu = torch.device("cpu")
    layers = [[_member_layer(state, given, name, cpu) for name in names]
              for state, given in zip(inits, masks)]
    return SparseStack(names, [[w for w, _, _ in m] for m in layers],
                       [[b for _, _, b in m] for m in layers],
                       [[mk for _, mk, _ in m] for m in layers], cfg, threshold, _Optimizer)


def _is_sparse_member(names: list[str], state: dict[str, Tensor],
                      given: dict[str, Tensor] | None, threshold: float) -> bool:
    cpu = torch.device("cpu")
    return any(is_sparse_layer(_member_layer(state, given, name, cpu)[1], threshold)
               for name in names)


class _EvalSet:
    """An evaluation split, cut once into chunks for :meth:`_Stack.evaluate`.

    On CPU, chunks are cache-sized (1024 rows: 34 vs 49 ms per LeNet per 5K examples at
    5000) and keep only the input columns that are nonzero somewhere in the chunk (MNIST
    borders: about 22% of the pixels of 1024 images), so layer 1 skips multiplications by
    exact zeros. The sums then run in another order: losses agree with train()'s to ~1e-7.
    """

    def __init__(self, x: Tensor, y: Tensor, device: torch.device) -> None:
        self.n = len(y)
        if self.n == 0:
            raise ValueError("evaluation split is empty; allowed: at least one example")
        x = x.to(device).reshape(self.n, -1)
        y = y.to(device)
        rows = _EVAL_ROWS_CPU if device.type == "cpu" else self.n
        self.chunks: list[tuple[Tensor, Tensor | None, Tensor]] = []
        for start in range(0, self.n, rows):
            xc, yc, cols = x[start:start + rows], y[start:start + rows], None
            if device.type == "cpu":
                nonzero = xc.ne(0).any(0).nonzero().squeeze(1)
                if len(nonzero) < 0.9 * xc.shape[1]:
                    xc, cols = xc[:, nonzero].contiguous(), nonzero
            self.chunks.append((xc, cols, yc))
        self._x = x
        self._y = y
        self._transposed: list[tuple[Tensor, Tensor]] | None = None

    def transposed(self) -> list[tuple[Tensor, Tensor]]:
        """Chunks as (x^T (features, rows), y), all columns: the sparse path's layout."""
        if self._transposed is None:
            rows = _EVAL_ROWS_CPU
            self._transposed = [(self._x[i:i + rows].t().contiguous(), self._y[i:i + rows])
                                for i in range(0, self.n, rows)]
        return self._transposed


class _DenseWeights:
    """Stacked weights that can evaluate themselves: a training stack, or a frozen copy of
    one (:meth:`_Stack.snapshot`) that a helper thread evaluates while training goes on.
    Both run the same code on equal tensors, so they give the same numbers bit for bit."""

    def __init__(self, weights: list[Tensor], biases: list[Tensor], density: list[float],
                 device: torch.device) -> None:
        self.weights, self.biases, self.density, self.device = weights, biases, density, device
        self.k = weights[0].shape[0]
        self.version = 0  # updates so far: keys the sparse copies used for evaluation
        self._sparse: tuple[int, dict[int, list[Tensor]]] | None = None

    @torch.inference_mode()
    def evaluate(self, data: _EvalSet) -> tuple[list[float], list[float]]:
        """Mean cross-entropy and accuracy of every member on ``data``, all members at once."""
        k, w, b = self.k, self.weights, self.biases
        sparse = [i for i, d in enumerate(self.density) if d <= _SPARSE_EVAL_DENSITY]
        if sparse and self.device.type == "cpu":
            return self._evaluate_sparse(data, sparse)
        out1 = w[0].shape[1]
        w1 = w[0].view(k * out1, -1)
        cap = max(1, _EVAL_FLOATS // (k * max(wt.shape[1] for wt in w)))
        loss = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.int64, device=self.device)
        for xc, cols, yc in data.chunks:
            w1c = w1 if cols is None else w1.index_select(1, cols)
            for start in range(0, len(yc), cap):
                xb, yb = xc[start:start + cap], yc[start:start + cap]
                m = len(yb)
                h = torch.addmm(b[0].view(-1), xb, w1c.t()).relu_()
                h = h.view(m, k, out1).transpose(0, 1)
                for layer in range(1, len(w)):
                    h = torch.baddbmm(b[layer].unsqueeze(1), h, w[layer].transpose(1, 2))
                    if layer < len(w) - 1:
                        h = h.relu_()
                ce = F.cross_entropy(h.reshape(k * m, -1), yb.repeat(k), reduction="none")
                loss += ce.view(k, m).sum(1, dtype=torch.float64)
                correct += (h.argmax(2) == yb).sum(1)
        return (loss / data.n).tolist(), (correct.double() / data.n).tolist()

    def _evaluate_sparse(self, data: _EvalSet, layers: list[int]
                         ) -> tuple[list[float], list[float]]:
        """Member by member, with sparse (COO) copies of the very sparse layers (IMP late
        levels): work proportional to the remaining weights. Same values up to rounding."""
        if self._sparse is None or self._sparse[0] != self.version:
            self._sparse = (self.version, {
                i: [self.weights[i][j].to_sparse() for j in range(self.k)] for i in layers})
        csr = self._sparse[1]
        loss = torch.zeros(self.k, dtype=torch.float64)
        correct = torch.zeros(self.k, dtype=torch.int64)
        last = len(self.weights) - 1
        for xt, yc in data.transposed():
            for j in range(self.k):
                h = xt
                for i, (wt, bt) in enumerate(zip(self.weights, self.biases)):
                    z = torch.sparse.mm(csr[i][j], h) if i in csr else torch.mm(wt[j], h)
                    h = z.add_(bt[j].unsqueeze(1))
                    if i < last:
                        h = h.relu_()
                logits = h.t()
                loss[j] += F.cross_entropy(logits, yc, reduction="sum").double()
                correct[j] += (logits.argmax(1) == yc).sum()
        return (loss / data.n).tolist(), (correct.double() / data.n).tolist()


class _Stack(_DenseWeights):
    """K networks' parameters, masks, gradients and optimizer state, stacked on one device."""

    def __init__(self, names: list[str], inits: Sequence[dict[str, Tensor]],
                 masks: Sequence[dict[str, Tensor] | None], cfg: TrainConfig,
                 device: torch.device) -> None:
        self.names, self.k, self.device = names, len(inits), device
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.masks: list[Tensor | None] = []
        self.density: list[float] = []  # per layer, of the densest member
        for name in names:
            ws, bs, ms, any_mask = [], [], [], False
            for state, given in zip(inits, masks):
                w, mask, bias = _member_layer(state, given, name, device)
                if mask is not None:
                    any_mask = any_mask or bool((mask == 0).any())
                ws.append(w)
                ms.append(mask if mask is not None else torch.ones_like(w))
                bs.append(bias)
            if len({tuple(w.shape) for w in ws}) != 1:
                raise ValueError(f"members differ in the shape of {name}.weight: "
                                 f"{sorted({tuple(w.shape) for w in ws})}")
            self.weights.append(torch.stack(ws).contiguous())
            self.biases.append(torch.stack(bs).contiguous())
            self.masks.append(torch.stack(ms).contiguous() if any_mask else None)
            self.density.append(max(float(m.mean()) for m in ms) if any_mask else 1.0)
        for prev, nxt in zip(self.weights, self.weights[1:]):
            if prev.shape[1] != nxt.shape[2]:
                raise ValueError(f"layer sizes do not chain: {tuple(prev.shape[1:])} then "
                                 f"{tuple(nxt.shape[1:])}")
        self.wgrads = [torch.zeros_like(w) for w in self.weights]
        self.bgrads = [torch.zeros_like(b) for b in self.biases]
        # On CPU the optimizer sees every member's tensors as views of the stacks: its
        # kernels then split the work exactly as for one network (vectorised body and scalar
        # tail at the same elements), so each update is bit for bit the one train() makes.
        # GPU kernels round alike wherever an element sits, so there the stacks go as is.
        self.per_member = device.type == "cpu"
        stacks = self.weights + self.biases
        if self.per_member:
            params = [t[i].detach() for t in stacks for i in range(self.k)]
            grads = [g[i] for g in self.wgrads + self.bgrads for i in range(self.k)]
        else:
            params, grads = [t.detach() for t in stacks], self.wgrads + self.bgrads
        self.opt = _Optimizer(params, grads, cfg)
        self.in_features = self.weights[0].shape[2]
        self.version = 0  # updates so far: keys the sparse copies used for evaluation
        self._sparse = None

    def snapshot(self) -> _DenseWeights:
        """A frozen copy of the current weights, for evaluation beside training."""
        return _DenseWeights([w.detach().clone() for w in self.weights],
                             [b.detach().clone() for b in self.biases], list(self.density),
                             self.device)

    # -- training step: forward and backward by hand, then one optimizer step --------------

    def step(self, x: Tensor, y: Tensor, lr: float) -> None:
        """One update of every member. x: (B, D) shared or (K, B, D) per member; y alike."""
        k = self.k
        w, b = self.weights, self.biases
        shared = x.dim() == 2
        bsz = x.shape[-2]
        # forward (batch-major: activations (K, B, features))
        if shared:
            out1 = w[0].shape[1]
            h = torch.addmm(b[0].view(-1), x, w[0].view(k * out1, -1).t())
            h = h.relu_().view(bsz, k, out1).transpose(0, 1)
        else:
            h = torch.baddbmm(b[0].unsqueeze(1), x, w[0].transpose(1, 2)).relu_()
        acts = [h]
        for layer in range(1, len(w)):
            h = torch.baddbmm(b[layer].unsqueeze(1), h, w[layer].transpose(1, 2))
            if layer < len(w) - 1:
                h = h.relu_()
            acts.append(h)
        logp = torch.log_softmax(acts[-1], dim=2)
        # backward of mean cross-entropy, as autograd computes it
        grad = torch.zeros_like(logp)
        if shared:
            grad[:, torch.arange(bsz, device=x.device), y] = -1.0 / bsz
        else:
            grad.scatter_(2, y.unsqueeze(2), -1.0 / bsz)
        dh = torch._log_softmax_backward_data(grad, logp, 2, logp.dtype)
        last = len(w) - 1
        for layer in range(last, 0, -1):
            if layer == last and self.per_member:
                # bmm's small-matrix kernels round differently from mm: per member, so the
                # result is bit for bit that of a single network (the layer is tiny)
                for i in range(k):
                    torch.mm(dh[i].t(), acts[layer - 1][i], out=self.wgrads[layer][i])
            else:
                torch.bmm(dh.transpose(1, 2), acts[layer - 1], out=self.wgrads[layer])
            torch.sum(dh, dim=1, out=self.bgrads[layer])
            dh = torch.bmm(dh, w[layer])
            torch.ops.aten.threshold_backward.grad_input(dh, acts[layer - 1], 0.0,
                                                         grad_input=dh)
        if k <= _MM_MEMBERS_UP_TO:  # the same sums in the same order: equal bit for bit
            for i in range(k):
                torch.mm(dh[i].t(), x if shared else x[i], out=self.wgrads[0][i])
        else:
            xs = x.expand(k, bsz, x.shape[-1]) if shared else x
            torch.bmm(dh.transpose(1, 2), xs, out=self.wgrads[0])
        torch.sum(dh, dim=1, out=self.bgrads[0])
        for g, m in zip(self.wgrads, self.masks):
            if m is not None:
                g.mul_(m)
        self.opt.step(lr)
        self.version += 1

    def final_states(self) -> list[dict[str, Tensor]]:
        out = []
        for i in range(self.k):
            state = {}
            for name, wt, bt in zip(self.names, self.weights, self.biases):
                state[f"{name}.weight"] = wt[i].detach().to("cpu", copy=True)
                state[f"{name}.bias"] = bt[i].detach().to("cpu", copy=True)
            out.append(state)
        return out


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


# --- the training loop --------------------------------------------------------------------

def _train_part(names: list[str], inits: Sequence[dict[str, Tensor]],
                masks: Sequence[dict[str, Tensor] | None], seeds: Sequence[int],
                fit: tuple[Tensor, Tensor], evals: dict[str, _EvalSet], cfg: TrainConfig,
                device: torch.device, bar: Any, intra_threads: int | None,
                sparse_threshold: float | None = None, overlap_eval: bool = False
                ) -> list[MemberResult]:
    """Train one stack of members through the whole schedule (one thread's work); with
    ``sparse_threshold``, the very sparse members' stack (:mod:`lthlib.sparse_train`); with
    ``overlap_eval``, evaluation runs on a helper thread (:mod:`lthlib.eval_worker`)."""
    if intra_threads is not None:
        torch.set_num_threads(intra_threads)
    stack = (_Stack(names, inits, masks, cfg, device) if sparse_threshold is None
             else _sparse_stack(names, inits, masks, cfg, sparse_threshold))
    train_x, train_y = fit
    n = len(train_y)
    unique = sorted(set(seeds))
    streams = {s: _BatchStream(n, cfg.batch_size, s, device) for s in unique}
    shared = len(unique) == 1
    member_seed = torch.tensor([unique.index(s) for s in seeds], device=device)
    eval_points = set(_eval_iterations(cfg))
    points: dict[int, list[dict[str, float]]] = {}  # iteration -> one row per member
    worker = EvalWorker(lambda model: _eval_rows(model, evals)) if overlap_eval else None
    try:
        for it in range(cfg.iterations + 1):
            if it in eval_points:
                if worker is not None:
                    worker.submit(it, stack.snapshot())
                else:
                    points[it] = _eval_rows(stack, evals)
            if it == cfg.iterations:
                break
            if shared:
                idx = streams[unique[0]].next()
            else:
                idx = torch.stack([streams[s].next() for s in unique])[member_seed]
            stack.step(train_x[idx], train_y[idx], cfg.lr * _lr_factor(it, cfg))
            if bar is not None:
                bar.update(stack.k)
    finally:
        if worker is not None:
            points.update(worker.results())
    rows: list[list[dict[str, float]]] = [
        [{"iteration": it, **points[it][j]} for it in sorted(points)] for j in range(len(seeds))]
    results = []
    for history, state in zip(rows, stack.final_states()):
        df = pd.DataFrame(history, columns=HISTORY_COLUMNS)
        df["iteration"] = df["iteration"].astype(int)
        results.append(MemberResult(df, state))
    return results


def _eval_rows(model: Any, evals: dict[str, _EvalSet]) -> list[dict[str, float]]:
    """One evaluation point: every member's loss and accuracy on train, val and test."""
    row: list[dict[str, float]] = [{} for _ in range(model.k)]
    for split in ("train", "val", "test"):
        losses, accs = model.evaluate(evals[split])
        for r, loss, acc in zip(row, losses, accs):
            r[f"{split}_loss"], r[f"{split}_acc"] = loss, acc
    return row


def _split(k: int, device: torch.device, threads: int, parts: int | None) -> tuple[int, int]:
    """(parts, intra-op threads per part). Automatic on CPU: one single-threaded part per
    thread. Intra-op threading of these small ops gains little on an idle machine and, when
    another process holds a core, OpenMP barriers made steps up to 100x slower here."""
    if parts is not None:
        n = max(1, min(int(parts), k))
        return n, max(1, threads // n)
    if device.type != "cpu":
        return 1, threads
    return max(1, min(threads, k)), 1


def train_population(arch: str, inits: list[dict[str, Tensor]],
                     masks: list[dict[str, Tensor] | None], data: TensorSplit,
                     train: TrainConfig, batch_seeds: list[int],
                     device: torch.device | str | None = None, progress: bool | str = False,
                     threads: int | None = None, parts: int | None = None,
                     sparse_below: float | None = None,
                     overlap_eval: bool | None = None) -> list[MemberResult]:
    """Train every member as :func:`lthlib.train.train` would alone; results in input order.

    ``inits``: plain state dicts (``fc1.weight``, ``fc1.bias``, ...); ``masks``: per member
    ``{"fc1": 0/1 (out, in), ...}`` or None (dense); members with equal ``batch_seeds``
    see the same minibatches. ``threads``: CPU threads to use (default: torch's setting);
    ``parts``: independent stacks run by that many threads (default: one per CPU thread).
    ``sparse_below``: on a CPU, members with a layer at or below this density train on the
    sparse path (:mod:`lthlib.sparse_train`; equal to train() up to rounding, not bit for
    bit); default :data:`~lthlib.sparse_train.SPARSE_TRAIN_DENSITY` on CPU, 0 (off) on GPU.
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
    names = _layer_names(inits[0])
    device = default_device(device)
    threads = int(threads) if threads is not None else torch.get_num_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    threshold = sparse_threshold(device, sparse_below)
    n_parts, intra = _split(k, device, threads, parts)
    fit = (data.train_x.to(device).reshape(len(data.train_y), -1), data.train_y.to(device))
    evals = {"train": _EvalSet(data.train_eval_x, data.train_eval_y, device),
             "val": _EvalSet(data.val_x, data.val_y, device),
             "test": _EvalSet(data.test_x, data.test_y, device)}
    seeds = [int(s) for s in batch_seeds]
    sparse = {i for i in range(k)
              if threshold > 0 and _is_sparse_member(names, inits[i], masks[i], threshold)}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=train.iterations * k, leave=False, unit="net-it",
                   desc=progress if isinstance(progress, str) else f"train {k} nets")

    def run(group: list[int], intra: int | None, overlap: bool = False) -> list[MemberResult]:
        return _train_part(names, [inits[i] for i in group], [masks[i] for i in group],
                           [seeds[i] for i in group], fit, evals, train, device, bar, intra,
                           threshold if group[0] in sparse else None, overlap)

    before = torch.get_num_threads()
    out: list[MemberResult | None] = [None] * k
    try:
        for members in ([i for i in range(k) if i not in sparse], sorted(sparse)):
            groups = _balanced_parts(members, seeds, n_parts)
            overlap = (overlap_eval if overlap_eval is not None  # single-threaded parts only
                       else device.type == "cpu" and intra == 1 and len(groups) < threads)
            if len(groups) == 1:
                torch.set_num_threads(intra)
                results = [run(groups[0], None, overlap)]
            else:
                results = _run_threads(lambda g, n: run(g, n, overlap), groups, intra)
            for group, res in zip(groups, results):
                for i, r in zip(group, res):
                    out[i] = r
    finally:
        torch.set_num_threads(before)
        if bar is not None:
            bar.close()
    return out  # type: ignore[return-value]


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


def _balanced_parts(members: list[int], seeds: list[int], n_parts: int) -> list[list[int]]:
    """Contiguous, balanced parts; members sharing a seed stay together where possible."""
    if not members:
        return []
    n = max(1, min(n_parts, len(members)))
    order = sorted(members, key=lambda i: (seeds[i], i))
    bounds = [round(p * len(order) / n) for p in range(n + 1)]
    return [order[bounds[p]:bounds[p + 1]] for p in range(n)]


def _run_threads(run: Any, groups: list[list[int]], intra: int) -> list[list[MemberResult]]:
    """Run ``run(group, intra)`` for every group in its own thread; re-raise any error."""
    results: list[Any] = [None] * len(groups)
    errors: list[BaseException] = []

    def target(p: int) -> None:
        try:
            results[p] = run(groups[p], intra)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    workers = [threading.Thread(target=target, args=(p,), daemon=True)
               for p in range(len(groups))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return results

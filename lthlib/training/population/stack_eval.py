"""Evaluation of stacked networks: every member's loss and accuracy, all members at once.

The paper evaluates every 100 iterations on 5K training, 5K validation and 10K test
examples; for one LeNet that is about a third of its training time, so the population engine
evaluates its members together, in inference mode and in large cache-sized chunks, and the
very sparse members member by member with sparse weights. A training stack
(:class:`lthlib.training.population.dense_stack.DenseStack`) and a frozen copy of one evaluated on a helper
thread (:mod:`lthlib.training.population.eval_worker`) run this same code on equal tensors, so they report the
same numbers bit for bit.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

EVAL_SPLITS = ("train", "val", "test")
_EVAL_FLOATS = 1 << 25  # most activations per evaluation chunk (128 MiB of float32)
_EVAL_ROWS_CPU = 1024  # measured best on a 2-core CPU (34 vs 49 ms per LeNet per 5K at 5000)
SPARSE_EVAL_DENSITY = 0.08  # sparse beats dense GEMM below ~10-15% density (1 thread)

Row = dict[str, float]


class EvalSet:
    """An evaluation split, cut once into chunks for :meth:`StackedWeights.evaluate`.

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


def eval_sets(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor],
              test: tuple[Tensor, Tensor], device: torch.device) -> dict[str, EvalSet]:
    """The three splits the paper evaluates on, cut into chunks once per training call."""
    return {name: EvalSet(x, y, device) for name, (x, y) in zip(EVAL_SPLITS, (train, val, test))}


class Evaluable(Protocol):
    """What :func:`eval_rows` needs: the member count and a per-split evaluation."""

    k: int

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]: ...


def eval_rows(model: Evaluable, evals: dict[str, EvalSet]) -> list[Row]:
    """One evaluation point: every member's loss and accuracy on train, val and test."""
    rows: list[Row] = [{} for _ in range(model.k)]
    for split in EVAL_SPLITS:
        losses, accs = model.evaluate(evals[split])
        for row, loss, acc in zip(rows, losses, accs):
            row[f"{split}_loss"], row[f"{split}_acc"] = loss, acc
    return rows


class StackedWeights:
    """Stacked weights (K, out, in) and biases (K, out) that can evaluate themselves."""

    def __init__(self, weights: list[Tensor], biases: list[Tensor], density: list[float],
                 device: torch.device) -> None:
        self.weights, self.biases, self.density, self.device = weights, biases, density, device
        self.k = weights[0].shape[0]
        self.version = 0  # updates so far: keys the sparse copies used for evaluation
        self._sparse: tuple[int, dict[int, list[Tensor]]] | None = None

    @torch.inference_mode()
    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]:
        """Mean cross-entropy and accuracy of every member on ``data``, all members at once."""
        k, w, b = self.k, self.weights, self.biases
        sparse = [i for i, d in enumerate(self.density) if d <= SPARSE_EVAL_DENSITY]
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

    def _evaluate_sparse(self, data: EvalSet, layers: list[int]
                         ) -> tuple[list[float], list[float]]:
        """Member by member, with sparse (COO) copies of the very sparse layers (IMP late
        levels): work proportional to the remaining weights. Same values up to rounding."""
        if self._sparse is None or self._sparse[0] != self.version:
            self._sparse = (self.version, {
                i: [self.weights[i][j].to_sparse() for j in range(self.k)] for i in layers})
        coo = self._sparse[1]
        loss = torch.zeros(self.k, dtype=torch.float64)
        correct = torch.zeros(self.k, dtype=torch.int64)
        last = len(self.weights) - 1
        for xt, yc in data.transposed():
            for j in range(self.k):
                h = xt
                for i, (wt, bt) in enumerate(zip(self.weights, self.biases)):
                    z = torch.sparse.mm(coo[i][j], h) if i in coo else torch.mm(wt[j], h)
                    h = z.add_(bt[j].unsqueeze(1))
                    if i < last:
                        h = h.relu_()
                logits = h.t()
                loss[j] += F.cross_entropy(logits, yc, reduction="sum").double()
                correct[j] += (logits.argmax(1) == yc).sum()
        return (loss / data.n).tolist(), (correct.double() / data.n).tolist()

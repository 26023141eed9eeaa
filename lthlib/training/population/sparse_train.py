"""The population engine's path for very sparse members: work in proportion to the weights left.

Most IMP levels are very sparse (LeNet keeps 0.8^n of its hidden weights), yet a dense masked
step costs the same at Pm = 2% as at 100%. On a CPU, a layer whose density is at most
``threshold`` is therefore kept as a CSR matrix with its remaining weights as one compact
vector: the forward pass is a sparse-dense product, the weight gradient is computed only at
the remaining positions (``torch.sparse.sampled_addmm``), the backward pass to the layer
below uses the transposed pattern, and the optimizer updates the compact vector. Adam and SGD
are elementwise, and pruned weights have zero gradient and zero optimizer state, so updating
only the remaining weights is the same algorithm as the masked dense update. The sums run in
another order, so values agree with :func:`lthlib.training.one_network.train` up to float rounding (checked
by ``tests/training/test_engine.py``), not bit for bit as the dense path does.

Measured (``python -m lthlib.bench --sparse``, ``runs/bench/cpu-sparse.json``; 1 thread,
LeNet, batch 60, both cores busy): the sparse path is slower down to about 17% of fc1 left
(0.29x on the dense network, 0.87x at 16.8%) and faster below, 1.5-1.8x at 7-13% and
2.0-2.9x at 2-6%; hence the threshold of 15%.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lthlib.config.paper import TrainConfig
from lthlib.training.schedule import StackedOptimizer
from lthlib.training.population.stack_eval import EvalSet

SPARSE_TRAIN_DENSITY = 0.15  # layers at or below this density train sparse (CPU)
_MIN_SPARSE_WEIGHTS = 4096  # smaller layers (LeNet's output) stay dense: too small to gain


class _SparseLayer:
    """A CSR weight whose remaining values form one compact vector, and its transpose.

    The CSR tensors are built once over that vector (they share its storage), so the
    optimizer's in-place update is seen by :meth:`matrix`; :meth:`transposed` refreshes its
    own value buffer by a gather.
    """

    def __init__(self, weight: Tensor, mask: Tensor) -> None:
        keep = mask.bool()  # the pattern comes from the mask: an unpruned 0.0 stays a weight
        rows, cols = keep.nonzero(as_tuple=True)
        out_f, in_f = weight.shape
        self.shape = (out_f, in_f)
        crow = torch.zeros(out_f + 1, dtype=torch.int64)
        crow[1:] = torch.bincount(rows, minlength=out_f).cumsum(0)
        self.values = weight[keep].contiguous()  # row-major; updated in place
        self.t_perm = torch.argsort(cols * out_f + rows)  # column-major: the transpose's rows
        t_crow = torch.zeros(in_f + 1, dtype=torch.int64)
        t_crow[1:] = torch.bincount(cols, minlength=in_f).cumsum(0)
        self._t_values = self.values[self.t_perm]
        with warnings.catch_warnings():  # torch warns once per process that CSR is "beta"
            warnings.simplefilter("ignore", UserWarning)
            self._matrix = torch.sparse_csr_tensor(crow, cols.contiguous(), self.values,
                                                   self.shape, check_invariants=False)
            self._t_matrix = torch.sparse_csr_tensor(
                t_crow, rows[self.t_perm].contiguous(), self._t_values, (in_f, out_f),
                check_invariants=False)

    def matrix(self) -> Tensor:
        return self._matrix

    def transposed(self) -> Tensor:
        torch.index_select(self.values, 0, self.t_perm, out=self._t_values)
        return self._t_matrix

    def to_dense(self) -> Tensor:
        return self._matrix.to_dense()


def is_sparse_layer(mask: Tensor | None, threshold: float) -> bool:
    return (mask is not None and mask.numel() >= _MIN_SPARSE_WEIGHTS
            and float(mask.float().mean()) <= threshold)


class SparseStack:
    """K members trained one after another at every step; the same interface as the
    engine's dense stack (``k``, ``gradients``, ``opt``, ``evaluate``, ``final_states``)."""

    def __init__(self, names: list[str], weights: Sequence[Sequence[Tensor]],
                 biases: Sequence[Sequence[Tensor]], masks: Sequence[Sequence[Tensor | None]],
                 cfg: TrainConfig, threshold: float) -> None:
        """``weights[j][l]``: member j's layer l (masked, float32, CPU); masks alike."""
        self.names, self.k = names, len(weights)
        self.layers: list[list[_SparseLayer | Tensor]] = []
        self.masks: list[list[Tensor | None]] = []
        self.biases = [[b.clone() for b in member] for member in biases]
        params: list[Tensor] = []
        grads: list[Tensor] = []
        self.wgrads: list[list[Tensor]] = []
        self.bgrads: list[list[Tensor]] = []
        for ws, ms, bs in zip(weights, masks, self.biases):
            layers: list[_SparseLayer | Tensor] = []
            for w, m in zip(ws, ms):
                if is_sparse_layer(m, threshold):
                    layers.append(_SparseLayer(w, m))  # type: ignore[arg-type]
                else:
                    layers.append(w.clone())
            self.layers.append(layers)
            self.masks.append([None if isinstance(lay, _SparseLayer) else m
                               for lay, m in zip(layers, ms)])
            wg = [torch.zeros_like(lay.values if isinstance(lay, _SparseLayer) else lay)
                  for lay in layers]
            bg = [torch.zeros_like(b) for b in bs]
            self.wgrads.append(wg)
            self.bgrads.append(bg)
            params += [lay.values if isinstance(lay, _SparseLayer) else lay for lay in layers]
            params += bs
            grads += wg + bg
        self.opt = StackedOptimizer(params, grads, cfg)

    def _forward(self, j: int, h: Tensor) -> list[Tensor]:
        """Activations in feature-major layout (features, batch), input first."""
        return _forward(self._matrices(j), self.biases[j], h)

    def _matrices(self, j: int) -> list[Tensor]:
        return [lay.matrix() if isinstance(lay, _SparseLayer) else lay
                for lay in self.layers[j]]

    def snapshot(self) -> _SparseSnapshot:
        """A frozen copy of every member's weights, for evaluation beside training."""
        return _SparseSnapshot([[_frozen(m) for m in self._matrices(j)]
                                for j in range(self.k)],
                               [[b.detach().clone() for b in bs] for bs in self.biases])

    def gradients(self, x: Tensor, y: Tensor) -> None:
        """Every member's gradients at its remaining weights, for the update ``opt.step``
        makes next. x: (B, D) shared or (K, B, D) per member; y alike."""
        shared = x.dim() == 2
        xt = x.t().contiguous() if shared else None
        for j in range(self.k):
            xj = xt if shared else x[j].t().contiguous()
            yj = y if shared else y[j]
            acts = self._forward(j, xj)
            logp = torch.log_softmax(acts[-1].t(), dim=1)
            grad = torch.zeros_like(logp)
            grad.scatter_(1, yj.unsqueeze(1), -1.0 / len(yj))
            dz = torch._log_softmax_backward_data(grad, logp, 1, logp.dtype).t()
            for i in range(len(self.layers[j]) - 1, -1, -1):
                lay, below = self.layers[j][i], acts[i]
                if isinstance(lay, _SparseLayer):
                    g = torch.sparse.sampled_addmm(lay.matrix(), dz, below.t(), beta=0.0)
                    self.wgrads[j][i].copy_(g.values())
                else:
                    torch.mm(dz, below.t(), out=self.wgrads[j][i])
                    mask = self.masks[j][i]
                    if mask is not None:
                        self.wgrads[j][i].mul_(mask)
                torch.sum(dz, dim=1, out=self.bgrads[j][i])
                if i > 0:
                    dz = (torch.sparse.mm(lay.transposed(), dz) if isinstance(lay, _SparseLayer)
                          else torch.mm(lay.t(), dz))
                    dz = torch.ops.aten.threshold_backward(dz, below, 0.0)

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]:
        """Mean cross-entropy and accuracy of every member on ``data``."""
        return _evaluate([self._matrices(j) for j in range(self.k)], self.biases, data)

    def final_states(self) -> list[dict[str, Tensor]]:
        """Every member's plain state dict (dense copies of the sparse layers)."""
        out = []
        for layers, biases in zip(self.layers, self.biases):
            state = {}
            for name, lay, b in zip(self.names, layers, biases):
                w = lay.to_dense() if isinstance(lay, _SparseLayer) else lay
                state[f"{name}.weight"] = w.detach().clone()
                state[f"{name}.bias"] = b.detach().clone()
            out.append(state)
        return out


class _SparseSnapshot:
    """Frozen copies of a :class:`SparseStack`'s members: evaluated by the same code, so
    with the same numbers, while the stack trains on."""

    def __init__(self, matrices: list[list[Tensor]], biases: list[list[Tensor]]) -> None:
        self.matrices, self.biases, self.k = matrices, biases, len(matrices)

    def evaluate(self, data: EvalSet) -> tuple[list[float], list[float]]:
        """Mean cross-entropy and accuracy of every member on ``data``."""
        return _evaluate(self.matrices, self.biases, data)


def _frozen(matrix: Tensor) -> Tensor:
    """A copy of a dense or CSR weight (the CSR copy shares the fixed index arrays)."""
    if matrix.layout != torch.sparse_csr:
        return matrix.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(matrix.crow_indices(), matrix.col_indices(),
                                       matrix.values().clone(), tuple(matrix.shape),
                                       check_invariants=False)


def _forward(matrices: Sequence[Tensor], biases: Sequence[Tensor], h: Tensor) -> list[Tensor]:
    """Activations in feature-major layout (features, batch), input first; CSR or dense
    weights."""
    acts = [h]
    last = len(matrices) - 1
    for i, (mat, b) in enumerate(zip(matrices, biases)):
        if mat.layout == torch.sparse_csr:
            z = torch.sparse.mm(mat, h).add_(b.unsqueeze(1))
        else:
            z = torch.addmm(b.unsqueeze(1), mat, h)
        h = z.relu_() if i < last else z
        acts.append(h)
    return acts


@torch.inference_mode()
def _evaluate(matrices: Sequence[Sequence[Tensor]], biases: Sequence[Sequence[Tensor]],
              data: EvalSet) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy of every member, member by member per chunk."""
    k = len(matrices)
    loss = torch.zeros(k, dtype=torch.float64)
    correct = torch.zeros(k, dtype=torch.int64)
    for xt, yc in data.transposed():
        for j in range(k):
            logits = _forward(matrices[j], biases[j], xt)[-1].t()
            loss[j] += F.cross_entropy(logits, yc, reduction="sum").double()
            correct[j] += (logits.argmax(1) == yc).sum()
    return (loss / data.n).tolist(), (correct.double() / data.n).tolist()

"""Inference with pruned weights stored sparsely: Linear and Conv2d layers as CSR matrices.

A pruned network computes with dense weight matrices full of zeros; here each Linear or
Conv2d weight becomes a ``torch.sparse_csr`` matrix holding only its kept weights, and the
layer multiplies with it (a convolution as ``unfold`` followed by the sparse product, in
chunks of the batch so the unfolded input stays small). :func:`to_sparse_inference`
returns such a copy of a network for evaluation; the original is left as it was.
``python -m lthlib bench --sparse-inference`` measures where this pays on a CPU.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lthlib.nets.paper_networks import prunable_layers

__all__ = ["SparseConv2d", "SparseLinear", "to_sparse_inference"]

UNFOLD_BYTES = 64 * 1024 ** 2  # the unfolded input of one batch chunk, at most


class SparseLinear(nn.Module):
    """``x @ W.T + b`` with W in CSR (inference only)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = _csr(weight)
        self.bias = None if bias is None else bias.detach().clone()
        self.out_features, self.in_features = weight.shape

    def forward(self, x: Tensor) -> Tensor:
        out = torch.mm(self.weight, x.reshape(-1, x.shape[-1]).t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class SparseConv2d(nn.Module):
    """A zero-padded, ungrouped convolution as ``unfold`` then a CSR product."""

    def __init__(self, conv: nn.Conv2d, weight: Tensor) -> None:
        super().__init__()
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.weight = _csr(weight.reshape(conv.out_channels, -1))
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def _out_size(self, size: int, i: int) -> int:
        k, s, p, d = (self.kernel_size[i], self.stride[i], self.padding[i],  # type: ignore[index]
                      self.dilation[i])
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        ho, wo = self._out_size(h, 0), self._out_size(w, 1)
        rows = self.weight.shape[1]
        chunk = max(1, UNFOLD_BYTES // max(1, 4 * rows * ho * wo))
        outs = []
        for start in range(0, n, chunk):
            part = x[start:start + chunk]
            cols = F.unfold(part, self.kernel_size, self.dilation, self.padding, self.stride)
            m = len(part)
            flat = cols.permute(1, 0, 2).reshape(rows, m * ho * wo)
            out = torch.mm(self.weight, flat).reshape(self.out_channels, m, ho * wo)
            outs.append(out.permute(1, 0, 2).reshape(m, self.out_channels, ho, wo))
        result = torch.cat(outs) if len(outs) > 1 else outs[0]
        if self.bias is not None:
            result = result + self.bias.view(1, -1, 1, 1)
        return result


def _csr(weight: Tensor) -> Tensor:
    """``weight`` (2-D) as CSR, without torch's note that CSR support is in beta."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return weight.detach().contiguous().to_sparse_csr()


def _effective(module: nn.Module) -> Tensor:
    if hasattr(module, "weight_mask") and hasattr(module, "weight_orig"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def _plain(model: nn.Module) -> nn.Module:
    """A deep copy whose computed ``weight`` tensors carry no graph (deepcopy needs that)."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight_mask") and hasattr(module, "weight_orig"):
                module.weight = module.weight_orig * module.weight_mask
    return copy.deepcopy(model)


def to_sparse_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose Linear and (zero-padded, ungrouped) Conv2d
    layers compute with CSR weights; other convolutions stay dense."""
    clone = _plain(model).eval()
    modules = dict(clone.named_modules())
    for name, module, _ in prunable_layers(clone):
        weight = _effective(module)
        if isinstance(module, nn.Linear):
            new: nn.Module = SparseLinear(weight, module.bias)
        elif (module.groups == 1 and module.padding_mode == "zeros"
              and not isinstance(module.padding, str)):
            new = SparseConv2d(module, weight)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else clone, child, new)
    return clone

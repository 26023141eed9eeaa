"""The dense path of the population engine: K networks' parameters stacked, one fused step.

One LeNet step at batch 60 leaves a CPU core mostly waiting on per-op overhead and a GPU
idle, so K networks of one architecture train together: parameters are stacked to
(K, out, in), layer 1 is a single GEMM for every member when they share a minibatch (a
"paired design") and batched matmuls (bmm) everywhere else; forward and backward are written
out by hand (no autograd graph) into pre-allocated buffers, and one optimizer step, which
the engine's loop makes, updates all members. Adam and SGD are elementwise, so stacking
keeps the members independent; masks zero the gradient of pruned weights, which start at
exactly 0 and so stay exactly 0. Each member's weights are bit for bit those
:func:`lthlib.training.one_network.train` gives it alone at the same thread count
(``tests/training/test_engine.py``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

from lthlib.config.paper import TrainConfig
from lthlib.training.schedule import StackedOptimizer
from lthlib.training.population.stack_eval import StackedWeights

_LAYER_KEY = re.compile(r"^fc(\d+)\.weight$")
# fc1's weight gradient as mm (not a bmm of one) for a single network: on one core 157 us
# against 240 us for that product; from K = 2 on, whole steps showed no difference
_MM_MEMBERS_UP_TO = 1


def layer_names(state: dict[str, Tensor]) -> list[str]:
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


def member_layer(state: dict[str, Tensor], given: dict[str, Tensor] | None, name: str,
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


class DenseStack(StackedWeights):
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
                w, mask, bias = member_layer(state, given, name, device)
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
        self.opt = StackedOptimizer(params, grads, cfg)
        self.in_features = self.weights[0].shape[2]
        self.version = 0  # updates so far: keys the sparse copies used for evaluation
        self._sparse = None

    def snapshot(self) -> StackedWeights:
        """A frozen copy of the current weights, for evaluation beside training."""
        return StackedWeights([w.detach().clone() for w in self.weights],
                              [b.detach().clone() for b in self.biases], list(self.density),
                              self.device)

    # -- gradients: forward and backward by hand; the training loop then steps ``opt`` -----

    def gradients(self, x: Tensor, y: Tensor) -> None:
        """Every member's masked gradients into :attr:`wgrads` and :attr:`bgrads`, for the
        update ``opt.step`` makes next. x: (B, D) shared or (K, B, D) per member; y alike."""
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
        # backward of mean cross-entropy, as autograd computes it: -1/B at each target
        grad = torch.zeros_like(logp)
        target = y.view(1, bsz, 1).expand(k, bsz, 1) if shared else y.unsqueeze(2)
        grad.scatter_(2, target, -1.0 / bsz)
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
        self.version += 1  # the update follows: cached evaluation copies go stale

    def final_states(self) -> list[dict[str, Tensor]]:
        """Every member's plain state dict (CPU copies; pruned weights are 0)."""
        out = []
        for i in range(self.k):
            state = {}
            for name, wt, bt in zip(self.names, self.weights, self.biases):
                state[f"{name}.weight"] = wt[i].detach().to("cpu", copy=True)
                state[f"{name}.bias"] = bt[i].detach().to("cpu", copy=True)
            out.append(state)
        return out

"""A user's network under IMP: which weights are pruned at which rate, its fresh
initialisations, and its architecture fingerprint.

Pruned are the weights of every ``nn.Linear`` and ``nn.Conv2d`` (:func:`lthlib.nets.paper_networks.
prunable_layers`); biases, normalisation layers and every other parameter are never pruned.
The last ``Linear`` is the output layer and loses ``output_rate`` per round (default: half
of ``rate``, the paper's "connections to output at half the rate"); convs inside a module
named ``shortcut`` keep all their weights, as the paper's ResNet does. ``scope="layer"``:
every layer loses its own share; ``scope="global"``: one magnitude threshold over all hidden
conv and linear weights together, the output layer still at its own rate.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from lthlib.nets.paper_networks import prunable_layers

__all__ = ["ModelSource", "PlanRow", "SCOPES", "architecture_fingerprint", "build_network",
           "describe_plan", "next_masks", "prune_plan"]

ModelSource = Union[nn.Module, Callable[[], nn.Module]]
SCOPES = ("layer", "global")
Masks = dict[str, Tensor]


@dataclass(frozen=True)
class PlanRow:
    """One Linear/Conv2d layer and the share of its remaining weights each round removes."""

    name: str
    kind: str  # "conv", "fc", "output", "shortcut" (lthlib.nets.paper_networks.prunable_layers)
    shape: tuple[int, ...]
    rate: float


def _check_rate(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def prune_plan(net: nn.Module, rate: float, output_rate: float | None = None) -> list[PlanRow]:
    """The layers IMP prunes in ``net`` and each one's rate per round."""
    rate = _check_rate("rate", rate)
    out_rate = rate / 2 if output_rate is None else _check_rate("output_rate", output_rate)
    rows = []
    for name, module, kind in prunable_layers(net):
        share = {"output": out_rate, "shortcut": 0.0}.get(kind, rate)
        rows.append(PlanRow(name, kind, tuple(module.weight.shape), share))
    if not rows:
        raise ValueError(f"{type(net).__name__} has no nn.Linear or nn.Conv2d layer; allowed: "
                         f"a model whose prunable weights are Linear or Conv2d weights")
    return rows


def describe_plan(net: nn.Module, plan: list[PlanRow], scope: str) -> str:
    """What will be pruned and what never is, as printed by :func:`lthlib.experiments.find_ticket`."""
    pruned = {f"{row.name}.weight" for row in plan if row.rate > 0}
    lines = [f"IMP prunes {len(pruned)} weight tensors ({scope} scope):"]
    for row in plan:
        note = f"{row.rate:.0%} of the remaining per round" if row.rate > 0 else "kept whole"
        if scope == "global" and row.kind != "output" and row.rate > 0:
            note = f"one threshold: {row.rate:.0%} of all hidden survivors per round"
        lines.append(f"  {row.name + '.weight':<28} {row.kind:<8} {str(row.shape):<20} {note}")
    kept = [name for name, _ in net.named_parameters() if name not in pruned]
    if kept:
        shown = ", ".join(kept[:8]) + (f", ... ({len(kept)} in all)" if len(kept) > 8 else "")
        lines.append(f"  never pruned (biases, norms, other parameters): {shown}")
    return "\n".join(lines)


def _drop(scores: Tensor, mask: Tensor, rate: float) -> Tensor:
    """``mask`` with ``round(rate * remaining)`` of its surviving entries of smallest
    |score| set to 0 (torch's L1Unstructured over the survivors)."""
    flat = mask.flatten().clone()
    alive = flat.nonzero().squeeze(1)
    candidates = scores.detach().flatten()[alive]
    keep = prune.L1Unstructured(rate).compute_mask(candidates, torch.ones_like(candidates))
    flat[alive] = keep.to(flat.dtype)
    return flat.view_as(mask)


def next_masks(final: dict[str, Tensor], masks: Masks | None, plan: list[PlanRow],
               scope: str) -> Masks:
    """The next IMP level's masks from the final weights (``{layer: effective weight}``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not known; allowed: {', '.join(SCOPES)}")
    current = {row.name: (masks[row.name] if masks else torch.ones(row.shape))
               for row in plan}
    out = {name: m.clone() for name, m in current.items()}
    hidden = [row for row in plan if row.kind != "output" and row.rate > 0]
    layerwise = [row for row in plan if row.rate > 0 and (scope == "layer" or row.kind ==
                                                          "output")]
    for row in layerwise:
        out[row.name] = _drop(final[row.name], current[row.name], row.rate)
    if scope == "global" and hidden:
        flat = _drop(torch.cat([final[r.name].flatten() for r in hidden]),
                     torch.cat([current[r.name].flatten() for r in hidden]), hidden[0].rate)
        for row, piece in zip(hidden, flat.split([current[r.name].numel() for r in hidden])):
            out[row.name] = piece.view(row.shape)
    return out


def build_network(source: ModelSource, seed: int) -> nn.Module:
    """A fresh initialisation of the user's network, from ``seed`` only.

    A factory (``lambda: MyNet()``) is called under a forked, seeded global RNG, so its own
    initialisation code runs. A module is deep-copied and every submodule that owns
    parameters is reset with its ``reset_parameters()`` under the same seeding; a submodule
    that owns parameters but has no ``reset_parameters`` cannot be re-initialised.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(source, nn.Module):
            net = copy.deepcopy(source)
            for name, module in net.named_modules():
                if not any(True for _ in module.parameters(recurse=False)):
                    continue
                if not callable(getattr(module, "reset_parameters", None)):
                    raise ValueError(
                        f"cannot re-initialise {name or 'the model'} "
                        f"({type(module).__name__}): it owns parameters but has no "
                        f"reset_parameters(); allowed: pass a factory, model=lambda: MyNet()")
                module.reset_parameters()
        elif callable(source):
            net = source()
            if not isinstance(net, nn.Module):
                raise ValueError(f"the model factory returned a {type(net).__name__}; "
                                 f"allowed: a torch.nn.Module")
        else:
            raise ValueError(f"model is a {type(source).__name__}; allowed: a torch.nn.Module "
                             f"or a function that returns one")
    if any(hasattr(m, "weight_orig") or hasattr(m, "weight_mask") for m in net.modules()):
        raise ValueError(f"{type(net).__name__} is already pruned (it has weight_mask "
                         f"buffers); allowed: an unpruned model")
    if any(True for _ in net.buffers()) and any(
            b.is_floating_point() and b.dtype != torch.float32 for b in net.buffers()):
        raise ValueError(f"{type(net).__name__} has buffers of a dtype other than float32; "
                         f"allowed: a float32 model")
    if any(p.dtype != torch.float32 for p in net.parameters()):
        raise ValueError(f"{type(net).__name__} has parameters of a dtype other than "
                         f"float32; allowed: a float32 model (call .float())")
    return net


def architecture_fingerprint(net: nn.Module) -> dict[str, Any]:
    """Module types (class names, wherever they are defined) and every parameter's and
    buffer's shape, in module order, hashed."""
    modules = []
    for name, module in net.named_modules():
        own = [[f"p:{n}", list(p.shape)] for n, p in module.named_parameters(recurse=False)]
        own += [[f"b:{n}", list(b.shape)] for n, b in module.named_buffers(recurse=False)]
        modules.append([name, type(module).__qualname__, own])
    text = json.dumps(modules, separators=(",", ":"))
    return {"class": type(net).__qualname__, "modules": len(modules),
            "parameters": sum(p.numel() for p in net.parameters()),
            "sha256": hashlib.sha256(text.encode()).hexdigest()}

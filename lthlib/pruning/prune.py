"""Pruning as in the paper, on torch.nn.utils.prune's reparametrisation.

Masks live where torch puts them: a pruned layer has a ``weight_orig`` parameter, a
``weight_mask`` buffer and a forward pre-hook computing ``weight = weight_orig * weight_mask``.
So nets pruned here work with torch's own prune functions and vice versa, gradients at pruned
positions are zero, and pruned effective weights stay exactly zero whatever the optimizer does
to ``weight_orig`` (momentum, weight decay).

New masks are computed here (per layer, or over all conv layers at once for global pruning)
and written into the ``weight_mask`` buffer. Compared with calling ``prune.l1_unstructured`` or
``prune.global_unstructured`` each round, this keeps no copy of every round's mask in the
hooks, always scores the current ``weight_orig`` (not the ``weight`` left by the last forward),
and lets random pruning use a generator. Magnitude selection itself is torch's
``L1Unstructured``.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from lthlib.config.experiment import ExperimentConfig
from lthlib.config.paper import ARCHS, METHODS, SCOPES, check_choice, paper_prune
from lthlib.nets.paper_networks import create_network, prunable_layers

__all__ = ["prune_network", "get_masks", "apply_masks", "copy_mask", "remaining_fraction",
           "random_masks", "reset_to", "plain_state", "RATE_KINDS"]

RATE_KINDS = ("fc", "conv", "output")  # kinds that take a pruning rate; shortcuts never do


def _is_pruned(module: nn.Module) -> bool:
    return hasattr(module, "weight_orig") and hasattr(module, "weight_mask")


def _orig(module: nn.Module) -> Tensor:
    """The trainable weight: ``weight_orig`` once pruned."""
    return module.weight_orig if _is_pruned(module) else module.weight


def _mask(module: nn.Module) -> Tensor:
    return module.weight_mask if _is_pruned(module) else torch.ones_like(module.weight)


def _kept(module: nn.Module) -> int:
    if _is_pruned(module):
        return int(torch.count_nonzero(module.weight_mask))
    return module.weight.numel()


def _refresh(module: nn.Module) -> None:
    """Recompute ``weight`` as torch's pre-hook would; without a graph, so a freshly pruned
    net can still be deep-copied (a net that ran a forward with grad cannot: torch's limit)."""
    with torch.no_grad():
        module.weight = module.weight_orig * module.weight_mask


def _set_mask(module: nn.Module, mask: Tensor) -> None:
    """Make ``mask`` the layer's mask, reparametrising it first if it was never pruned."""
    if not _is_pruned(module):
        prune.identity(module, "weight")
    with torch.no_grad():
        module.weight_mask.copy_(mask)
    _refresh(module)


def _shrink(scores: Tensor, mask: Tensor, rate: float, method: str,
            generator: torch.Generator | None) -> Tensor:
    """``mask`` with ``round(rate * remaining)`` of its remaining entries set to 0: the
    smallest-magnitude ``scores`` ("l1") or uniformly random ones ("random")."""
    flat_mask = mask.flatten().clone()
    remaining = flat_mask.nonzero().squeeze(1)
    if method == "l1":
        candidates = scores.detach().flatten()[remaining]
        keep = prune.L1Unstructured(rate).compute_mask(candidates, torch.ones_like(candidates))
        flat_mask[remaining] = keep.to(flat_mask.dtype)
    else:
        n_drop = round(rate * remaining.numel())
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(remaining.numel(), generator=generator, device=device)
        flat_mask[remaining[order[:n_drop].to(remaining.device)]] = 0
    return flat_mask.view_as(mask)


def _check_rate(what: str, value: object) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 <= float(value) < 1.0):
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def _arch_of(net: nn.Module, arch: str | None) -> str:
    found = arch if arch is not None else getattr(net, "arch", None)
    if found is None:
        raise ValueError(f"cannot infer the architecture of {type(net).__name__}: pass arch= "
                         f"(one of {', '.join(ARCHS)}), amount= or a full rates= dict")
    return check_choice("network", found, ARCHS)


def _resolve_rates(net: nn.Module, amount: float | None, rates: dict[str, float] | None,
                   arch: str | None) -> dict[str, float]:
    """Per-kind rates: from ``amount`` (output at half), else the paper's; ``rates`` wins."""
    if amount is not None:
        hidden = _check_rate("amount", amount)
        resolved = {"fc": hidden, "conv": hidden, "output": hidden / 2}
    elif rates is not None and set(RATE_KINDS) <= set(rates):
        resolved = {}
    else:
        resolved = paper_prune(_arch_of(net, arch)).rates()
    for kind, rate in (rates or {}).items():
        if kind not in RATE_KINDS:
            raise ValueError(f"unknown rate kind {kind!r}; allowed: {', '.join(RATE_KINDS)}")
        resolved[kind] = _check_rate(f"rates[{kind!r}]", rate)
    return resolved


def prune_network(net: nn.Module, amount: float | None = None, scope: str | None = None,
                  method: str = "l1", rates: dict[str, float] | None = None,
                  arch: str | None = None,
                  generator: torch.Generator | None = None) -> nn.Module:
    """Remove a fraction of the REMAINING weights, in place (so rounds compound, as in IMP).

    With no arguments, one round of the paper's method for the network's architecture
    (``arch``, default ``net.arch``), scope included:

    * lenet, mlp: layer-wise, fc layers 20%, the output layer 10%;
    * conv2, conv4: layer-wise, conv 10%, fc 20%, output 10%; conv6: conv 15%, fc 20%,
      output 10%;
    * resnet18, vgg19: one global magnitude threshold over all 3x3 conv weights together at
      20%; the fc layer and ResNet's 1x1 shortcuts are not pruned.

    ``amount``: hidden fc and conv layers lose ``amount``, the output layer ``amount / 2``
    (the paper's "connections to output at half the rate"). ``rates`` overrides per kind
    (fc, conv, output). ``scope``: None = the paper's scope for the architecture when neither
    ``amount`` nor ``rates`` is given, else "layerwise". ``scope="layerwise"``: each layer
    loses its own share; shortcut convs are never pruned. ``scope="global"``: one magnitude
    threshold over all "conv" layers at the conv rate; fc, output and shortcut layers are
    untouched. ``method="random"`` draws the pruned weights from ``generator``.
    Biases/BN are never pruned.
    """
    if not isinstance(net, nn.Module):
        raise ValueError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if scope is None:
        scope = (paper_prune(_arch_of(net, arch)).scope if amount is None and rates is None
                 else "layerwise")
    scope = check_choice("scope", scope, SCOPES)
    method = check_choice("method", method, METHODS)
    kind_rates = _resolve_rates(net, amount, rates, arch)
    layers = prunable_layers(net)
    if scope == "layerwise":
        for _, module, kind in layers:
            rate = kind_rates.get(kind, 0.0)
            if rate > 0.0:
                _set_mask(module, _shrink(_orig(module), _mask(module), rate, method, generator))
        return net
    convs = [module for _, module, kind in layers if kind == "conv"]
    if not convs:
        raise ValueError(f"global pruning prunes conv layers and {type(net).__name__} has "
                         f"none; use scope 'layerwise' (allowed: {', '.join(SCOPES)})")
    if kind_rates["conv"] > 0.0:
        flat = _shrink(torch.cat([_orig(m).detach().flatten() for m in convs]),
                       torch.cat([_mask(m).flatten() for m in convs]),
                       kind_rates["conv"], method, generator)
        for module, piece in zip(convs, flat.split([m.weight.numel() for m in convs])):
            _set_mask(module, piece.view_as(module.weight))
    return net


def get_masks(net: nn.Module) -> dict[str, Tensor]:
    """``{layer name: 0/1 float mask}`` for every prunable layer (ones where unpruned); copies."""
    return {name: _mask(module).detach().clone() for name, module, _ in prunable_layers(net)}


def apply_masks(net: nn.Module, masks: dict[str, Tensor]) -> nn.Module:
    """Install ``masks`` (a subset of the prunable layers is fine), replacing existing masks.

    Weights (``weight_orig``) are untouched, so a position unmasked again gets its old value.
    """
    layers = {name: module for name, module, _ in prunable_layers(net)}
    unknown = [name for name in masks if name not in layers]
    if unknown:
        raise ValueError(f"masks for unknown layers {unknown}; allowed: {', '.join(layers)}")
    for name, mask in masks.items():
        weight = layers[name].weight
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}; "
                             f"allowed: the weight's shape {tuple(weight.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask for {name!r} has values other than 0 and 1")
    for name, mask in masks.items():
        _set_mask(layers[name], mask)
    return net


def _describe(net: nn.Module) -> str:
    layers = prunable_layers(net)
    shapes = ", ".join(f"{name}{tuple(m.weight.shape)}" for name, m, _ in layers)
    return f"{getattr(net, 'arch', type(net).__name__)} [{shapes}]"


def copy_mask(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Give ``dst`` the masks of ``src`` (same architecture); ``dst``'s weights stay."""
    def signature(net: nn.Module) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(name, kind, tuple(m.weight.shape)) for name, m, kind in prunable_layers(net)]

    if signature(src) != signature(dst):
        raise ValueError(f"copy_mask needs two networks of the same architecture; "
                         f"src is {_describe(src)}, dst is {_describe(dst)}")
    return apply_masks(dst, get_masks(src))


def remaining_fraction(net: nn.Module) -> float:
    """Pm = remaining / all Linear+Conv weights; unprunable layers count as remaining (the
    paper's Resnet Pm values 41.7/27.1/11.8 only come out that way)."""
    layers = prunable_layers(net)
    total = sum(module.weight.numel() for _, module, _ in layers)
    if total == 0:
        raise ValueError(f"{type(net).__name__} has no Linear or Conv2d weights")
    return sum(_kept(module) for _, module, _ in layers) / total


def random_masks(net: nn.Module, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """New uniformly random masks keeping as many weights per layer as ``net`` keeps now:
    the paper's "randomly sampled sparse network" (per-layer matching is our reading)."""
    out = {}
    for name, module, _ in prunable_layers(net):
        n, kept = module.weight.numel(), _kept(module)
        device = generator.device if generator is not None else torch.device("cpu")
        chosen = torch.randperm(n, generator=generator, device=device)[:kept]
        mask = torch.zeros(n, dtype=module.weight.dtype, device=device)
        mask[chosen] = 1
        out[name] = mask.view_as(module.weight).to(module.weight.device)
    return out


def _pair_keys(state: dict[str, Tensor]) -> set[str]:
    """Base names ``x.weight`` that ``state`` holds as torch's ``x.weight_orig``/``_mask``."""
    return {key[: -len("_orig")] for key in state
            if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state}


def reset_to(net: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """Copy a plain state dict's values into ``net``'s parameters and buffers, keeping masks:
    "reset the surviving weights to θ0". Pruned layers get ``weight_orig`` written.

    Keys of a pruned state dict (``x.weight_orig``) are accepted too; its masks are ignored.
    """
    own = dict(net.named_parameters())
    own.update(net.named_buffers())
    own_masks = {base + "_mask" for base in _pair_keys(own)}
    state_masks = {base + "_mask" for base in _pair_keys(state)}
    targets: dict[str, str] = {}
    for key in state:
        if key in own_masks or key in state_masks:
            continue
        if key in own:
            targets[key] = key
        elif key + "_orig" in own:
            targets[key] = key + "_orig"
        else:
            raise ValueError(f"reset_to: state key {key!r} matches nothing in "
                             f"{type(net).__name__}; allowed: plain keys like "
                             f"{', '.join(list(_plain_keys(own))[:4])}, ...")
    missing = sorted(set(own) - own_masks - set(targets.values()))
    if missing:
        raise ValueError(f"reset_to: state lacks {missing}")
    with torch.no_grad():
        for key, target in targets.items():
            if own[target].shape != state[key].shape:
                raise ValueError(f"reset_to: {key!r} has shape {tuple(state[key].shape)}, "
                                 f"the network's is {tuple(own[target].shape)}")
            own[target].copy_(state[key])
    for _, module, _ in prunable_layers(net):
        if _is_pruned(module):
            _refresh(module)
    return net


def _plain_keys(state: dict[str, Tensor]) -> list[str]:
    pairs = _pair_keys(state)
    masks = {base + "_mask" for base in pairs}
    return [key[: -len("_orig")] if key[: -len("_orig")] in pairs else key
            for key in state if key not in masks]


def plain_state(net: nn.Module) -> dict[str, Tensor]:
    """Effective weights under plain keys (``fc1.weight = weight_orig * weight_mask``), plus
    biases and buffers: a detached copy that loads into an unpruned net of the same arch."""
    state = net.state_dict()
    pairs = _pair_keys(state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        base = key[: -len("_orig")]
        if key.endswith("_mask") and key[: -len("_mask")] in pairs:
            continue
        if key.endswith("_orig") and base in pairs:
            out[base] = (value * state[base + "_mask"]).detach().clone()
        else:
            out[key] = value.detach().clone()
    return out


# --- an experiment's network with a mask installed ------------------------------------------

State = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]


def network(cfg: ExperimentConfig, seed: int) -> torch.nn.Module:
    """A fresh network of the experiment's architecture; its weights are θ0 of ``seed``."""
    m = cfg.model
    return create_network(m.arch, m.num_classes, m.in_shape, seed=seed)


def masked_network(cfg: ExperimentConfig, state: State, mask: Masks | None
                   ) -> torch.nn.Module:
    """A network holding ``state`` with ``mask`` installed (None: dense)."""
    net = network(cfg, 0)
    net.load_state_dict(state)
    if mask is not None:
        apply_masks(net, mask)
    return net


def density(cfg: ExperimentConfig, mask: Masks | None) -> float:
    """Pm: the fraction of the prunable weights that ``mask`` keeps."""
    return remaining_fraction(masked_network(cfg, network(cfg, 0).state_dict(), mask))

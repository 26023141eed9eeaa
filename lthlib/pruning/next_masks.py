"""How each procedure derives the masks it trains next, and how a stored mask is trusted.

IMP's next mask needs the trained weights of the level before; those weights live in
``ckpt/`` (not in git), while the mask itself is stored in ``stages/`` (:mod:`lthlib.pruning.mask_files`).
So a resumed trial takes a stored next mask instead of the weights, after checking that it
is one this trial could have produced: its bits match their digest, its layers are the
network's, it only removes weights the level before kept, and it keeps exactly as many
weights as the configured pruning rate leaves (per layer for layer-wise pruning, over the
pruned layers for global pruning). A mask that fails is refused with the file named. One-shot
trials store each target's mask the same way, so their dense network need not be retrained.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lthlib.config.experiment import ExperimentConfig
from lthlib.pruning.mask_files import mask_layout, mask_path, unpack_masks
from lthlib.nets.paper_networks import prunable_layers
from lthlib.pruning.prune import Masks, State, get_masks, masked_network, network, prune_network
from lthlib.util.errors import CorruptRecordError
from lthlib.store.file_checks import read_json
from lthlib.store.extension import foreign_reason


def imp_next_mask(cfg: ExperimentConfig, final_state: State, mask: Masks | None) -> Masks:
    """Prune p% of the remaining weights of a trained network (the paper's rates)."""
    net = masked_network(cfg, final_state, mask)
    amount = cfg.prune.conv_rate if cfg.prune.scope == "global" else None
    rates = None if cfg.prune.scope == "global" else cfg.prune.rates()
    prune_network(net, amount=amount, scope=cfg.prune.scope, method=cfg.prune.method,
                  rates=rates, arch=cfg.model.arch)
    return get_masks(net)


def oneshot_rates(cfg: ExperimentConfig, target: float) -> dict[str, float]:
    """Per-kind amounts that reach Pm = ``target`` in one step, keeping IMP's layer ratios.

    After n IMP rounds a layer of kind k keeps (1 - rate_k)^n; we solve for the real n that
    gives the target overall, so one-shot and iterative networks at equal Pm have equal
    per-layer sparsity (the comparison Figure 4 makes).
    """
    net = network(cfg, 0)
    rates = cfg.prune.rates()
    kinds: dict[str, int] = {}
    total = 0
    for _, module, kind in prunable_layers(net):
        total += module.weight.numel()
        if kind in rates and rates[kind] > 0:
            kinds[kind] = kinds.get(kind, 0) + module.weight.numel()
    fixed = total - sum(kinds.values())

    def pm(n: float) -> float:
        return (fixed + sum(c * (1 - rates[k]) ** n for k, c in kinds.items())) / total

    if not pm(1e4) < target <= 1.0:
        raise ValueError(f"target Pm {target} is outside (0, 1] or below what pruning these "
                         f"layers can reach ({pm(1e4):.2g})")
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pm(mid) > target else (lo, mid)
    return {k: 1 - (1 - rates[k]) ** lo for k in kinds}


def oneshot_mask(cfg: ExperimentConfig, final_state: State, target: float) -> Masks:
    """Prune a trained network once, straight to Pm = ``target``."""
    net = masked_network(cfg, final_state, None)
    if target < 1.0:
        rates = oneshot_rates(cfg, target)
        if cfg.prune.scope == "global":
            prune_network(net, amount=rates.get("conv", 0.0), scope="global",
                          arch=cfg.model.arch)
        else:
            prune_network(net, scope="layerwise", rates={k: rates.get(k, 0.0)
                                                         for k in ("fc", "conv", "output")},
                          arch=cfg.model.arch)
    return get_masks(net)


def stored_next_mask(cfg: ExperimentConfig, trial_dir: Path, stage: str, before: Masks | None,
                     theta0: State) -> Masks | None:
    """The stored mask of ``stage`` (IMP's level after ``before``), or None when none is
    stored; raises ValueError naming the file when it is not one this trial could produce.
    ``theta0`` stands in for the trained weights to count what the pruning rate keeps."""
    return _checked_mask(cfg, mask_path(trial_dir, stage), before,
                         lambda: imp_next_mask(cfg, theta0, before))


def stored_oneshot_masks(cfg: ExperimentConfig, trial_dir: Path, targets: list[float],
                         theta0: State) -> dict[int, Masks] | None:
    """Every one-shot level's stored mask (level i prunes to ``targets[i - 1]``), or None
    when any is missing: then the dense network's final weights are needed to prune again.
    Each stored mask is checked as :func:`stored_next_mask` checks IMP's."""
    paths = {i: mask_path(trial_dir, f"oneshot-L{i:02d}") for i in range(1, len(targets) + 1)}
    if not all(p.exists() or p.is_symlink() for p in paths.values()):
        return None
    return {i: _checked_mask(cfg, path, None,
                             lambda t=targets[i - 1]: oneshot_mask(cfg, theta0, t))
            for i, path in paths.items()}


def _checked_mask(cfg: ExperimentConfig, path: Path, before: Masks | None,
                  reference_of: Callable[[], Masks]) -> Masks | None:
    """The mask stored at ``path`` (None if absent) after checking that this trial could have
    produced it: digest, layers, nested in ``before``, and the counts of ``reference_of()``
    (the same pruning applied to any weights keeps as many)."""
    if not path.exists() and not path.is_symlink():
        return None
    fix = (f"allowed: a mask written by this trial; delete {path} (and the stage files "
           f"after it) to derive it again from the checkpoint or by retraining")
    if path.is_symlink():
        raise ValueError(f"stored mask {path} is a symbolic link; links are never followed; "
                         f"{fix}")
    reference = reference_of()  # the right counts, whatever the weights
    shapes = {n: list(m.shape) for n, m in reference.items()}
    try:  # the trial is unfinished: no record to check against, the digest inside is all
        doc = read_json(path)
        layout = mask_layout(doc)  # checked before a single bit is allocated
    except (CorruptRecordError, ValueError) as err:
        raise ValueError(f"stored mask {path} is damaged ({err}); {fix}") from None
    problem = foreign_reason(path.parent.parent, doc, path)
    if problem:
        raise ValueError(f"stored mask {path} is not this trial's: {problem}; {fix}")
    if dict(layout) != shapes or len(layout) != len(shapes):
        raise ValueError(f"stored mask {path} does not cover this network's prunable layers "
                         f"({', '.join(sorted(reference))}); {fix}")
    try:
        got = unpack_masks(doc)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"stored mask {path} is damaged ({err}); {fix}") from None
    for name, m in got.items():
        if before is not None and bool((m > before[name]).any()):
            raise ValueError(f"stored mask {path} revives weights of layer {name!r} that the "
                             f"level before pruned; {fix}")
    groups = [sorted(got)] if cfg.prune.scope == "global" else [[n] for n in sorted(got)]
    for names in groups:
        have = sum(int(got[n].sum()) for n in names)
        want = sum(int(reference[n].sum()) for n in names)
        if have != want:
            raise ValueError(f"stored mask {path} keeps {have} weights of "
                             f"{', '.join(names)}; the pruning rate keeps {want}; {fix}")
    return got

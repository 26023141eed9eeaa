"""What a winning ticket is: its masks and initial values, read from stored trials.

The analyses work on plain mask sets (``{layer: 0/1 tensor}``, as :mod:`lthlib.pruning.prune`
returns) and θ0 state dicts, so they are tested on hand-made masks; :func:`mask_trials`,
:func:`ticket_masks` and :func:`theta0` read them from finished IMP trials in the store
(masks from ``stages/*.mask.json``, θ0 regenerated from the seed and checked against the
digest in the record).
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lthlib.config.paper import PROFILE_ORDER, PROFILES, check_choice
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run
from lthlib.pruning.mask_files import (MASK_SUFFIX, REINIT_DIGESTS, load_masks, mask_digest,
                                       theta0_digest)
from lthlib.nets.paper_networks import create_network
from lthlib.util.errors import CorruptRecordError
from lthlib.store.run_store import RunStore, TrialRecord

Masks = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]


# --- reading tickets from the store ---------------------------------------------------------

def mask_trials(arch: str = "lenet", dataset: str = "mnist", profile: str = "quick",
                experiment: str = "imp", runs_dir: str | Path | None = None
                ) -> list[TrialRecord]:
    """Finished trials of one experiment group that stored their masks, by seed."""
    store = RunStore(runs_dir)
    group = store.root / experiment / f"{arch}-{dataset}-{profile}"
    out = []
    for rec_file in sorted(group.glob("seed*/record.json")):
        if not any((rec_file.parent / "stages").glob(f"*{MASK_SUFFIX}")):
            continue
        try:
            out.append(store.read(rec_file.parent))
        except (FileNotFoundError, CorruptRecordError):
            continue
    return sorted(out, key=lambda tr: tr.config.seed)


def theta0(trial: TrialRecord) -> State:
    """The trial's initial weights, regenerated from its seed; checked against the record."""
    m = trial.config.model
    state = create_network(m.arch, m.num_classes, m.in_shape, seed=trial.config.seed).state_dict()
    expected = trial.record.get("theta0_sha256")
    if expected is not None and theta0_digest(state) != expected:
        raise ValueError(f"θ0 regenerated for seed {trial.config.seed} does not match the "
                         f"digest in {trial.path}/record.json")
    return {k: v.detach().clone() for k, v in state.items()}


def full_masks(state: Mapping[str, torch.Tensor], layers: Sequence[str]) -> Masks:
    """All-ones masks (the dense network, level 0) for ``layers`` of ``state``."""
    return {name: torch.ones_like(state[f"{name}.weight"]) for name in layers}


def ticket_masks(trial: TrialRecord, level: int, stage_prefix: str = "ticket") -> Masks:
    """The masks the ticket of ``level`` trained with (level 0: dense)."""
    if level == 0:
        probe = load_masks(trial.path, f"{stage_prefix}-L01")
        return {k: torch.ones_like(v) for k, v in probe.items()}
    return load_masks(trial.path, f"{stage_prefix}-L{level:02d}")


def reinit_mask_matches(trial: TrialRecord) -> dict[int, bool]:
    """Per level: did the re-init control train with exactly the ticket's mask (digests)?"""
    path = trial.path / "stages" / REINIT_DIGESTS
    digests = json.loads(path.read_text())
    return {int(level): mask_digest(ticket_masks(trial, int(level))) == d
            for level, d in digests.items()}


def level_pm(trial: TrialRecord) -> dict[int, float]:
    """Pm of each ticket level, from the trial's summary."""
    s = trial.summary[trial.summary["variant"] == "ticket"]
    return {int(lv): float(pm) for lv, pm in zip(s["level"], s["pm"])}


# --- the analyses ------------------------------------------------------------------------------

def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of weights kept over all layers of a mask set."""
    kept = sum(float(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    if total == 0:
        raise ValueError("empty mask set: no layers given")
    return kept / total


def input_connectivity(first_layer_mask: torch.Tensor,
                       image_shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Surviving outgoing connections of every input pixel, as an image.

    ``first_layer_mask`` is ``(out, in)`` with ``in = H * W`` (LeNet's ``fc1``).
    """
    m = first_layer_mask.detach().cpu()
    if m.dim() != 2 or m.shape[1] != image_shape[0] * image_shape[1]:
        raise ValueError(f"first-layer mask of shape {tuple(m.shape)} does not fit images of "
                         f"{image_shape}; allowed: (out, {image_shape[0] * image_shape[1]})")
    return m.sum(0).reshape(image_shape).numpy()


def border_and_centre(picture: np.ndarray, border: int = 4) -> tuple[float, float]:
    """Mean of a connectivity picture on its outer ``border`` pixels and on the rest."""
    if not 0 < 2 * border < min(picture.shape):
        raise ValueError(f"border {border} does not fit a picture of shape {picture.shape}")
    inner = np.zeros(picture.shape, dtype=bool)
    inner[border:-border, border:-border] = True
    return float(picture[~inner].mean()), float(picture[inner].mean())


def random_masks_like(masks: Mapping[str, torch.Tensor], seed: int) -> Masks:
    """Uniformly random masks keeping as many weights per layer as ``masks`` do."""
    gen = torch.Generator().manual_seed(int(seed))
    out: Masks = {}
    for name in sorted(masks):
        m = masks[name]
        flat = torch.zeros(m.numel())
        flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = 1.0
        out[name] = flat.reshape(m.shape)
    return out


def survivor_values(init: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                    layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(all initial weights, initial weights of the survivors) of one layer."""
    if layer not in masks:
        raise ValueError(f"unknown layer {layer!r}; allowed: {', '.join(sorted(masks))}")
    w = init[f"{layer}.weight"].detach().cpu().reshape(-1)
    keep = masks[layer].detach().cpu().reshape(-1) > 0
    return w.numpy(), w[keep].numpy()


def small_share(values: np.ndarray, reference: np.ndarray, quantile: float = 0.25) -> float:
    """Fraction of ``values`` whose magnitude is below the ``quantile`` of |reference|
    (for all weights it is ``quantile``; pruning the small ones drives it towards 0)."""
    if len(values) == 0:
        return float("nan")
    cut = np.quantile(np.abs(reference), quantile)
    return float(np.mean(np.abs(values) < cut))


def jaccard(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
            layers: Sequence[str] | None = None) -> float:
    """|a ∩ b| / |a ∪ b| of two mask sets over ``layers`` (default: all of them)."""
    names = sorted(a) if layers is None else list(layers)
    missing = [n for n in names if n not in a or n not in b]
    if missing:
        raise ValueError(f"layers {missing} are not in both mask sets; allowed: "
                         f"{', '.join(sorted(set(a) & set(b)))}")
    inter = union = 0.0
    for n in names:
        x, y = a[n].detach().cpu() > 0, b[n].detach().cpu() > 0
        if x.shape != y.shape:
            raise ValueError(f"layer {n!r}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        inter += float((x & y).sum())
        union += float((x | y).sum())
    return inter / union if union else 1.0


def chance_jaccard(d: float) -> float:
    """Expected Jaccard of two independent random masks of density ``d``: d / (2 - d)
    (|a ∩ b| ≈ d²n, |a ∪ b| ≈ (2d - d²)n)."""
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"density must lie in [0, 1], got {d}")
    return d / (2.0 - d) if d > 0 else 0.0


def chance_jaccard_layers(densities: Sequence[float], sizes: Sequence[int]) -> float:
    """Expected Jaccard of two independent random mask sets with these per-layer densities
    and sizes, pooled over the layers: sum n d² / sum n (2d - d²). (Pooling layers of
    different densities and using the pooled density alone would understate it.)"""
    inter = sum(n * d * d for d, n in zip(densities, sizes))
    union = sum(n * (2 * d - d * d) for d, n in zip(densities, sizes))
    return inter / union if union else 0.0


def pairwise_jaccard(mask_sets: Sequence[Mapping[str, torch.Tensor]],
                     layers: Sequence[str] | None = None) -> list[float]:
    """Jaccard of every pair of mask sets (e.g. one per seed at equal Pm)."""
    return [jaccard(a, b, layers) for a, b in itertools.combinations(mask_sets, 2)]


def map_correlation(pictures: Sequence[np.ndarray]) -> list[float]:
    """Pearson correlation of every pair of connectivity pictures (e.g. across seeds)."""
    return [float(np.corrcoef(p.reshape(-1), q.reshape(-1))[0, 1])
            for p, q in itertools.combinations(pictures, 2)]


# --- tables for the chapter ------------------------------------------------------------------

def ensure_mask_trials(dataset: str, profile: str, trials: int, seed: int,
                       arch: str = "lenet", runs_dir: str | Path | None = None,
                       compute: bool = True) -> list[TrialRecord]:
    """IMP trials ``seed .. seed + trials - 1`` with stored masks, computing missing ones
    (finished trials are read back, never recomputed)."""
    want = set(range(seed, seed + trials))
    have = [tr for tr in mask_trials(arch, dataset, profile, runs_dir=runs_dir)
            if tr.config.seed in want and tr.config == _default_imp(tr, arch, dataset, profile)]
    if len(have) < trials and compute:
        run("imp", arch, dataset, profile, trials, runs_dir, seed=seed, progress=False)
        have = [tr for tr in mask_trials(arch, dataset, profile, runs_dir=runs_dir)
                if tr.config.seed in want]
    return have


def _default_imp(tr: TrialRecord, arch: str, dataset: str, profile: str):
    return replace(make_experiment("imp", arch, dataset, profile, 1), seed=tr.config.seed)


def nearest_levels(pm_by_level: Mapping[int, float], targets: Sequence[float]) -> list[int]:
    """The stored levels whose Pm is nearest (in log scale) to each target, deduplicated."""
    if not pm_by_level:
        raise ValueError("no levels to choose from")
    out: list[int] = []
    for t in targets:
        lv = min(pm_by_level, key=lambda k: abs(np.log(pm_by_level[k]) - np.log(t)))
        if lv not in out:
            out.append(lv)
    return sorted(out)


def connectivity_table(trials: Sequence[TrialRecord], levels: Sequence[int],
                       layer: str = "fc1", border: int = 4) -> pd.DataFrame:
    """Per level: share of a pixel's connections kept on the image border and in its centre,
    for the ticket (mean over trials) and a random mask of the same per-layer density, and
    how alike the trials' connectivity pictures are (mean pairwise correlation)."""
    rows = []
    for level in levels:
        pics, rand = [], []
        for tr in trials:
            m = ticket_masks(tr, level)[layer]
            pics.append(input_connectivity(m) / m.shape[0])
            r = random_masks_like({layer: m}, seed=tr.config.seed * 1000 + level)[layer]
            rand.append(input_connectivity(r) / r.shape[0])
        tb, tc = border_and_centre(np.mean(pics, axis=0), border)
        rb, rc = border_and_centre(np.mean(rand, axis=0), border)
        corr = map_correlation(pics) if len(pics) > 1 else []
        rows.append({"level": level, "pm": level_pm(trials[0])[level],
                     "ticket_border": tb, "ticket_centre": tc, "random_border": rb,
                     "random_centre": rc,
                     "map_correlation": float(np.mean(corr)) if corr else float("nan")})
    return pd.DataFrame(rows)


def survivor_table(trials: Sequence[TrialRecord], levels: Sequence[int],
                   quantile: float = 0.25) -> pd.DataFrame:
    """Per level and layer: the share of survivors whose |θ0| lies below the ``quantile`` of
    all |θ0| of the layer (``quantile`` when survival ignores θ0), and mean |θ0| of the
    survivors over the mean of all, averaged over trials."""
    rows = []
    for level in levels:
        per: dict[str, list[tuple[float, float]]] = {}
        for tr in trials:
            init, masks = theta0(tr), ticket_masks(tr, level)
            for layer in sorted(masks):
                all_w, kept = survivor_values(init, masks, layer)
                per.setdefault(layer, []).append(
                    (small_share(kept, all_w, quantile),
                     float(np.abs(kept).mean() / np.abs(all_w).mean())))
        for layer, vals in per.items():
            rows.append({"level": level, "pm": level_pm(trials[0])[level], "layer": layer,
                         "small_share": float(np.mean([v[0] for v in vals])),
                         "magnitude_ratio": float(np.mean([v[1] for v in vals]))})
    return pd.DataFrame(rows)


def overlap_table(trials: Sequence[TrialRecord], levels: Sequence[int]) -> pd.DataFrame:
    """Per level and layer (and all layers pooled): mean pairwise Jaccard of the trials'
    masks; ``chance``, its expectation for independent random masks of the same per-layer
    densities; ``random``, the same measured on random masks with the trials' per-layer
    counts (one draw per trial: how far chance itself scatters); and jaccard / chance."""
    rows = []
    for level in levels:
        sets = [ticket_masks(tr, level) for tr in trials]
        rand = [random_masks_like(m, seed=tr.config.seed * 1000 + level + 500)
                for m, tr in zip(sets, trials)]
        for layer in [*sorted(sets[0]), "all"]:
            names = sorted(sets[0]) if layer == "all" else [layer]
            sub = [{n: m[n] for n in names} for m in sets]
            dens = [float(np.mean([density({n: m[n]}) for m in sets])) for n in names]
            sizes = [sets[0][n].numel() for n in names]
            jac = pairwise_jaccard(sub)
            rj = pairwise_jaccard([{n: m[n] for n in names} for m in rand])
            chance = chance_jaccard_layers(dens, sizes)
            mean = float(np.mean(jac)) if jac else float("nan")
            rows.append({"level": level, "pm": level_pm(trials[0])[level], "layer": layer,
                         "density": float(np.mean([density(m) for m in sub])),
                         "jaccard": mean, "chance": chance,
                         "random": float(np.mean(rj)) if rj else float("nan"),
                         "ratio": mean / chance if jac and chance else float("nan"),
                         "pairs": len(jac)})
    return pd.DataFrame(rows)


def resolve_profile(profile: str, datasets: Sequence[str], trials: int,
                    arch: str = "lenet", runs_dir: str | Path | None = None) -> str:
    """``profile`` itself, or for ``"auto"`` the largest profile whose stored IMP trials with
    masks number at least ``trials`` for every dataset (else ``"quick"``)."""
    profile = check_choice("profile", profile, ("auto",) + PROFILES)
    if profile != "auto":
        return profile
    for p in PROFILE_ORDER:
        if all(len(mask_trials(arch, d, p, runs_dir=runs_dir)) >= max(1, trials)
               for d in datasets):
            return p
    return "quick"

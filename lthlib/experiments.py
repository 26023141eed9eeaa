"""The paper's experiments: one-shot and iterative pruning with their controls.

Procedures (paper Sections 1, 2 and 4; ../shared/spec/paper-facts.md):

* **imp** (Figures 3, 4a): train θ0, prune p% of the remaining weights per layer from the
  weights at the END of training, reset survivors to θ0, repeat for ``rounds`` levels; every
  level trains the full budget. Controls: ``reinits`` random re-initialisations per level
  (same mask, fresh θ0'). With ``rewind_iteration = k > 0`` (late rewinding, Frankle et al.
  2019) the survivors restart from θk of the dense run instead (:mod:`lthlib.rewind`).
* **global-imp** (Figure 8): the same with one global threshold over the conv weights.
* **oneshot** (Figures 1, 4c): train θ0 once, then for each target Pm prune once and retrain
  the ticket (θ0), re-initialised copies (θ0') and randomly sampled sparse networks (a fresh
  random mask with the ticket's per-layer counts and a fresh init).
* **random-sparse** (Figure 1, dashed): randomly sampled sparse networks only.

Each trial is stored on its own (see :mod:`lthlib.store`), so adding trials never recomputes
old ones. Networks of one stage across trials are trained together by the population engine
when the architecture allows (LeNet, MLP); all networks of a trial share its minibatch order
(a paired design: the ticket and its controls see the same data).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import conv_engine, engine
from .config import ExperimentConfig, make_experiment
from .data import TensorSplit, load_tensors_for
from .device import default_device, describe_hardware
from .lock import TrialLock
from .masks import mask_digest, save_masks, save_reinit_digests, seal, theta0_digest
from .models import create_network, prunable_layers
from .prune import (apply_masks, get_masks, plain_state, prune_network, random_masks,
                    remaining_fraction)
from .reuse import reuse_note, seed_missing
from .rewind import load_rewind_state, save_rewind_state
from .store import MEMBER_KEYS, ExperimentResult, RunStore, git_commit
from .train import early_stop_summary, train

State = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (e.g. trial seed, "reinit", level, replicate)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


def trial_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One single-trial config per trial: trial t has seed ``cfg.seed + t``."""
    return cfg.trial_configs()


@dataclass
class Member:
    """One network to train: which trial, which variant, its init and mask."""

    trial: ExperimentConfig
    variant: str  # "ticket" | "reinit" | "random"
    level: int
    replicate: int
    init: State
    mask: Masks | None
    pm: float


# --- building networks ---------------------------------------------------------------------

def _net(cfg: ExperimentConfig, seed: int) -> torch.nn.Module:
    m = cfg.model
    return create_network(m.arch, m.num_classes, m.in_shape, seed=seed)


def _masked_net(cfg: ExperimentConfig, state: State, mask: Masks | None) -> torch.nn.Module:
    net = _net(cfg, 0)
    net.load_state_dict(state)
    if mask is not None:
        apply_masks(net, mask)
    return net


def _pm(cfg: ExperimentConfig, mask: Masks | None) -> float:
    return remaining_fraction(_masked_net(cfg, _net(cfg, 0).state_dict(), mask))


def imp_next_mask(cfg: ExperimentConfig, final_state: State, mask: Masks | None) -> Masks:
    """Prune p% of the remaining weights of a trained network (the paper's rates)."""
    net = _masked_net(cfg, final_state, mask)
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
    net = _net(cfg, 0)
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
    net = _masked_net(cfg, final_state, None)
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


# --- training a stage ----------------------------------------------------------------------

def train_members(members: list[Member], cfg: ExperimentConfig, data: TensorSplit,
                  device: torch.device, progress: bool | str = False
                  ) -> list[tuple[pd.DataFrame, State]]:
    """Train every member; the population engine when it supports the arch, else one by one."""
    if not members:
        return []
    if engine.supports(cfg.model.arch) and not cfg.data.augment:
        results = engine.train_population(
            cfg.model.arch, [m.init for m in members], [m.mask for m in members], data,
            cfg.train, [m.trial.seed for m in members], device=device, progress=progress)
        return [(r.history, r.final_state) for r in results]
    if conv_engine.supports(cfg.model.arch):  # a few ResNets at once as one grouped network
        size = conv_engine.group_size(device, len(members))
        grouped: list[tuple[pd.DataFrame, State]] = []
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            desc = (f"{progress} [{i + 1}-{i + len(chunk)}/{len(members)}]"
                    if isinstance(progress, str) else progress)
            res = conv_engine.train_group(
                [m.init for m in chunk], [m.mask for m in chunk], data, cfg.train,
                [m.trial.seed for m in chunk], device=device, augment=cfg.data.augment,
                bf16=cfg.precision == "bf16", progress=desc)
            grouped += [(r.history, r.final_state) for r in res]
        return grouped
    if cfg.precision != "fp32":
        raise ValueError(f"precision {cfg.precision!r} is implemented for "
                         f"{', '.join(conv_engine.SUPPORTED)} only, not {cfg.model.arch!r}; "
                         f"allowed: fp32")
    out = []
    for i, m in enumerate(members):
        net = _masked_net(cfg, m.init, m.mask)
        desc = f"{progress} [{i + 1}/{len(members)}]" if isinstance(progress, str) else progress
        res = train(net, data, cfg.train, batch_seed=m.trial.seed, device=device,
                    progress=desc, augment=cfg.data.augment)
        out.append((res.history, {k: v.detach().cpu() for k, v in plain_state(res.net).items()}))
    return out


def _tag(m: Member, history: pd.DataFrame) -> pd.DataFrame:
    df = history.copy()
    df.insert(0, "pm", m.pm)
    df.insert(0, "replicate", m.replicate)
    df.insert(0, "level", m.level)
    df.insert(0, "variant", m.variant)
    return df


class _Runner:
    """Runs the stages of one experiment across its unfinished trials, stage by stage."""

    def __init__(self, cfg: ExperimentConfig, store: RunStore, data: TensorSplit,
                 device: torch.device, progress: bool) -> None:
        self.cfg, self.store, self.data, self.device = cfg, store, data, device
        self.progress = progress
        self.metrics: dict[int, list[pd.DataFrame]] = {}
        self.resumed: dict[int, list[str]] = {}  # stages an earlier process trained
        # seconds of partly reused stages (lthlib.reuse), None where they were not timed
        self.carried: dict[int, list[float | None]] = {}
        self.settings: dict[str, Any] = {}  # numeric settings recorded with every stage

    def stage(self, name: str, trials: list[ExperimentConfig],
              build: Callable[[ExperimentConfig], list[Member]],
              keep_state: Callable[[Member], bool] = lambda m: False
              ) -> dict[int, list[tuple[Member, State | None]]]:
        """Train (or load) a stage for every trial; returns members with final states kept."""
        out: dict[int, list[tuple[Member, State | None]]] = {}
        todo: list[Member] = []
        earlier: dict[int, tuple[list[Member], pd.DataFrame, dict[str, State]]] = {}
        members_of: dict[int, list[Member]] = {}
        for t in trials:
            members = members_of[t.seed] = build(t)
            done = self.store.load_stage(t, name)
            states = self._load_states(t, name) if any(map(keep_state, members)) else {}
            done_keys = [] if done is None else _row_keys(done)
            have = set(done_keys)
            ready = [m for m in members if _key(m) in have
                     and (not keep_state(m) or _key(m) in states)]
            if done is not None and len(ready) == len(members):
                self.metrics.setdefault(t.seed, []).append(done)
                self.resumed.setdefault(t.seed, []).append(name)
                out[t.seed] = [(m, states.get(_key(m))) for m in members]
                continue
            keys = {_key(m) for m in ready}
            if ready:  # part of the stage came from a trial this one extends (lthlib.reuse)
                rows = done[[k in keys for k in done_keys]]
                earlier[t.seed] = (ready, rows, states)
            todo.extend(m for m in members if _key(m) not in keys)
        label = f"{self.cfg.model.arch}/{self.cfg.data.dataset} {name}"
        t0 = time.perf_counter()
        results = train_members(todo, self.cfg, self.data, self.device,
                                progress=label if self.progress else False)
        per_member = (time.perf_counter() - t0) / max(1, len(todo))
        by_trial: dict[int, list[tuple[Member, pd.DataFrame, State]]] = {}
        for m, (hist, state) in zip(todo, results):
            by_trial.setdefault(m.trial.seed, []).append((m, hist, state))
        for seed, rows in by_trial.items():
            t = rows[0][0].trial
            kept = {_key(m): s for m, _, s in rows if keep_state(m)}
            wall = per_member * len(rows)
            parts = [_tag(m, h) for m, h, _ in rows]
            finished: dict[str, State | None] = {_key(m): s for m, _, s in rows}
            if seed in earlier:
                ready, old_rows, old_states = earlier[seed]
                parts.insert(0, old_rows)
                kept = {**{_key(m): old_states[_key(m)] for m in ready if keep_state(m)}, **kept}
                finished.update({_key(m): old_states.get(_key(m)) for m in ready})
                old_wall = self.store.stage_times(t).get(name)
                self.carried.setdefault(seed, []).append(old_wall)
                wall += old_wall or 0.0
            if kept:
                self._save_states(t, name, kept)
            metrics = pd.concat(parts, ignore_index=True)
            # trials trained together share the stage's time by their number of networks
            self.store.save_stage(t, name, metrics, wall_time_s=wall, settings=self.settings)
            self.metrics.setdefault(seed, []).append(metrics)
            out[seed] = [(m, finished[_key(m)] if keep_state(m) else None)
                         for m in members_of[seed]]
        return out

    def _state_file(self, t: ExperimentConfig, name: str) -> Path:
        return self.store.ckpt_dir(t) / f"{name}.pt"

    def _save_states(self, t: ExperimentConfig, name: str, states: dict[str, State]) -> None:
        path = self._state_file(t, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(states, tmp)
        tmp.replace(path)

    def _load_states(self, t: ExperimentConfig, name: str) -> dict[str, State]:
        path = self._state_file(t, name)
        if not path.exists():
            return {}
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated checkpoint is recomputed, never used
            return {}

    def finish(self, trials: list[ExperimentConfig], wall: float, extra: dict[str, Any],
               code_version: str | None = None) -> None:
        for t in trials:
            metrics = pd.concat(self.metrics[t.seed], ignore_index=True)
            metrics = metrics.sort_values(MEMBER_KEYS + ["iteration"], kind="stable")
            summary = summarize(metrics)
            note = reuse_note(self.store, t)
            self.store.finish(t, metrics.reset_index(drop=True), summary, wall / len(trials),
                              describe_hardware(self.device),
                              {**extra, **({"reused_from": note} if note else {})},
                              code_version, self.resumed.get(t.seed, []),
                              self.carried.get(t.seed, []))
            # masks (written per stage) join the sha256 set; θ0's digest checks regeneration
            seal(self.store.trial_dir(t),
                 {"theta0_sha256": theta0_digest(_net(self.cfg, t.seed).state_dict())})


def _key(m: Member) -> str:
    return f"{m.variant}-L{m.level}-r{m.replicate}"


def _row_keys(df: pd.DataFrame) -> list[str]:
    """:func:`_key` of every metrics row (one per evaluation of a network)."""
    return [f"{v}-L{lv}-r{rp}" for v, lv, rp in df[MEMBER_KEYS].itertuples(index=False)]


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per network: its Pm, retroactive early-stop point and final accuracies."""
    rows = []
    for key, hist in metrics.groupby(MEMBER_KEYS, sort=True):
        row = dict(zip(MEMBER_KEYS, key))
        row["pm"] = float(hist["pm"].iloc[0])
        row.update(early_stop_summary(hist.sort_values("iteration")))
        rows.append(row)
    return pd.DataFrame(rows)


# --- the experiments -----------------------------------------------------------------------

def _rewind_states(r: _Runner, trials: list[ExperimentConfig],
                   theta0: dict[int, State]) -> dict[int, State]:
    """θk of each trial's dense run (late rewinding): read from its stages, else trained.

    The dense network is trained from θ0 for k iterations with the trial's whole schedule
    (warmup, milestones) and batch order, so its state is the dense run's at iteration k."""
    k = r.cfg.rewind_iteration
    out: dict[int, State] = {}
    todo = []
    for t in trials:
        state = load_rewind_state(r.store.trial_dir(t), k)
        if state is None:
            todo.append(Member(t, "ticket", 0, 0, theta0[t.seed], None, 1.0))
        else:
            out[t.seed] = state
    if todo:
        short = replace(r.cfg, rewind_iteration=0, train=replace(r.cfg.train, iterations=k))
        t0 = time.perf_counter()
        results = train_members(todo, short, r.data, r.device,
                                progress=f"rewind to iteration {k}" if r.progress else False)
        per_member = (time.perf_counter() - t0) / len(todo)
        for m, (_, state) in zip(todo, results):
            save_rewind_state(r.store.trial_dir(m.trial), k, state, per_member)
            out[m.trial.seed] = state
    return out


def _imp(r: _Runner, trials: list[ExperimentConfig]) -> None:
    cfg = r.cfg
    theta0 = {t.seed: _net(cfg, t.seed).state_dict() for t in trials}
    # survivors restart from θ0 (the paper) or from θk of the dense run (late rewinding)
    rewound = _rewind_states(r, trials, theta0) if cfg.rewind_iteration else theta0
    masks: dict[int, Masks | None] = {t.seed: None for t in trials}
    level_masks: dict[int, dict[int, Masks | None]] = {t.seed: {} for t in trials}
    for level in range(cfg.prune.rounds + 1):
        for t in trials:
            level_masks[t.seed][level] = masks[t.seed]
            if masks[t.seed] is not None:  # packed bits beside the stage (lthlib.masks)
                save_masks(r.store.trial_dir(t), f"ticket-L{level:02d}", masks[t.seed])

        def build(t: ExperimentConfig, level: int = level) -> list[Member]:
            mask = masks[t.seed]
            init = theta0[t.seed] if level == 0 else rewound[t.seed]
            return [Member(t, "ticket", level, 0, init, mask, _pm(cfg, mask))]

        out = r.stage(f"ticket-L{level:02d}", trials, build, keep_state=lambda m: True)
        if level < cfg.prune.rounds:
            for t in trials:
                member, state = out[t.seed][0]
                masks[t.seed] = imp_next_mask(cfg, state, member.mask)

    def build_reinit(t: ExperimentConfig) -> list[Member]:
        members = []
        if cfg.prune.rounds > 0:
            save_reinit_digests(r.store.trial_dir(t), {
                level: mask_digest(level_masks[t.seed][level])  # type: ignore[arg-type]
                for level in range(1, cfg.prune.rounds + 1)})
        for level in range(1, cfg.prune.rounds + 1):
            mask = level_masks[t.seed][level]
            for rep in range(cfg.reinits):
                init = _net(cfg, derive_seed(t.seed, "reinit", level, rep)).state_dict()
                members.append(Member(t, "reinit", level, rep, init, mask, _pm(cfg, mask)))
        return members

    r.stage("reinit", trials, build_reinit)


def _oneshot(r: _Runner, trials: list[ExperimentConfig], with_ticket: bool = True) -> None:
    cfg = r.cfg
    theta0 = {t.seed: _net(cfg, t.seed).state_dict() for t in trials}
    dense: dict[int, State] = {}
    if with_ticket:
        out = r.stage("dense", trials, lambda t: [
            Member(t, "ticket", 0, 0, theta0[t.seed], None, 1.0)], keep_state=lambda m: True)
        dense = {seed: members[0][1] for seed, members in out.items()}
    targets = [p for p in cfg.oneshot_targets if p < 1.0]

    def build(t: ExperimentConfig) -> list[Member]:
        members = []
        for i, target in enumerate(targets, start=1):
            if with_ticket:
                mask = oneshot_mask(cfg, dense[t.seed], target)
            else:  # the ticket's per-layer counts without training: prune θ0 (counts only)
                mask = oneshot_mask(cfg, theta0[t.seed], target)
            pm = _pm(cfg, mask)
            if with_ticket:
                save_masks(r.store.trial_dir(t), f"oneshot-L{i:02d}", mask)
                members.append(Member(t, "ticket", i, 0, theta0[t.seed], mask, pm))
                for rep in range(cfg.reinits):
                    init = _net(cfg, derive_seed(t.seed, "reinit", i, rep)).state_dict()
                    members.append(Member(t, "reinit", i, rep, init, mask, pm))
            for rep in range(max(1, cfg.reinits)):
                gen = torch.Generator().manual_seed(derive_seed(t.seed, "random-mask", i, rep))
                rmask = random_masks(_masked_net(cfg, theta0[t.seed], mask), gen)
                init = _net(cfg, derive_seed(t.seed, "random-init", i, rep)).state_dict()
                members.append(Member(t, "random", i, rep, init, rmask, pm))
        return members

    r.stage("oneshot" if with_ticket else "random", trials, build)


EXPERIMENT_FUNCS: dict[str, Callable[..., None]] = {
    "imp": _imp, "global-imp": _imp, "oneshot": _oneshot,
    "random-sparse": lambda r, trials: _oneshot(r, trials, with_ticket=False),
}


def check_combination(cfg: ExperimentConfig, allow: bool = False) -> None:
    """Refuse combinations the paper never ran unless ``allow`` (e.g. global-imp on LeNet)."""
    paper_global = cfg.model.arch in ("resnet18", "vgg19")
    if cfg.experiment == "global-imp" and not paper_global and not allow:
        raise ValueError(f"global-imp is the paper's procedure for resnet18/vgg19, not "
                         f"{cfg.model.arch!r}; pass allow=True (CLI: --allow) to run it anyway")


def numeric_settings(cfg: ExperimentConfig, device: torch.device) -> dict[str, Any]:
    """The settings that change a trial's numbers beyond its config: torch's thread count
    (float reductions) and the sparse-path threshold (engine architectures only)."""
    sparse = engine.sparse_threshold(device) if engine.supports(cfg.model.arch) else None
    if conv_engine.supports(cfg.model.arch):  # kernels differ by group size: recorded
        return {"threads": torch.get_num_threads(), "sparse_path_below_density": sparse,
                "conv_group_size": conv_engine.group_size(device, 4)}
    return {"threads": torch.get_num_threads(), "sparse_path_below_density": sparse}


def check_resume_settings(store: RunStore, trial: ExperimentConfig,
                          settings: dict[str, Any]) -> None:
    """Refuse to resume a trial whose stored stages ran with another sparse-path threshold:
    the paths differ by float rounding, so one trial must not mix them. (A different thread
    count is recorded per stage instead, see :meth:`RunStore.finish`.)"""
    want = settings.get("sparse_path_below_density")
    for stage, got in store.stage_settings(trial).items():
        have = got.get("sparse_path_below_density", want)
        if have != want:
            path = store.trial_dir(trial)
            raise ValueError(
                f"trial {path} has stages trained with sparse_path_below_density={have!r} "
                f"(stage {stage}); this process would use {want!r}; allowed: resume with "
                f"LTH_SPARSE_BELOW={have if have is not None else 0}, or delete "
                f"{path / 'stages'} to train the trial again from scratch")


def _check_run_args(cfg: object, runs_dir: object, device: object, flags: dict[str, object],
                    data_root: object) -> None:
    if not isinstance(cfg, ExperimentConfig):
        raise ValueError(f"cfg must be an ExperimentConfig (lthlib.make_experiment builds one), "
                         f"got {type(cfg).__name__}")
    for name, value in (("runs_dir", runs_dir), ("data_root", data_root)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name} must be a path (str or os.PathLike) or None, got "
                             f"{type(value).__name__} {value!r}")
    if device is not None and not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a str, torch.device or None, got "
                         f"{type(device).__name__} {device!r}; allowed: cpu, cuda, cuda:<index>")
    if isinstance(device, str):
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:<index>, "
                             f"mps") from None
    for name, value in flags.items():
        if not isinstance(value, bool) and not (name == "progress" and isinstance(value, str)):
            raise ValueError(f"{name} must be True or False, got {type(value).__name__} "
                             f"{value!r}")


def _compute(cfg: ExperimentConfig, store: RunStore, missing: list[ExperimentConfig],
             dev: torch.device, data_root: str | Path | None, progress: bool,
             reuse: bool) -> None:
    """Train the ``missing`` trials (their locks are held by the caller)."""
    for t in missing:
        store.claim(t)  # a damaged or misplaced folder's files are never resumed from
    if reuse:
        seed_missing(store, missing)
    settings = numeric_settings(cfg, dev)
    for t in missing:
        check_resume_settings(store, t, settings)
    data = load_tensors_for(cfg.data, root=data_root, device=dev)
    runner = _Runner(cfg, store, data, dev, progress)
    runner.settings = settings
    code_version = git_commit()  # the code that computes, not HEAD when it finishes
    t0 = time.perf_counter()
    EXPERIMENT_FUNCS[cfg.experiment](runner, missing)
    runner.finish(missing, time.perf_counter() - t0,
                  {"population_engine": engine.supports(cfg.model.arch),
                   "sparse_path_below_density": settings["sparse_path_below_density"]},
                  code_version)


def run_experiment(cfg: ExperimentConfig, runs_dir: str | Path | None = None,
                   device: torch.device | str | None = None, progress: bool = True,
                   data_root: str | Path | None = None, allow: bool = False,
                   compute: bool = True, reuse: bool = True, wait: bool = True
                   ) -> ExperimentResult:
    """Return every trial of ``cfg`` from the store, computing (and storing) what is missing.

    With ``compute=False`` only finished trials are returned (nothing is trained). With
    ``reuse`` (the default) a new trial that only adds IMP rounds or controls to a finished
    one starts from that trial's networks (:mod:`lthlib.reuse`; its record says so).
    One process trains a trial at a time (:class:`lthlib.lock.TrialLock`): a trial that
    another process is training is waited for (``wait=True``, with a message on stderr)
    and then read from the store, or skipped with a message (``wait=False``; the result
    then lacks it). Every call rebuilds a missing or stale store index.
    """
    _check_run_args(cfg, runs_dir, device, {"progress": progress, "allow": allow,
                                            "compute": compute, "reuse": reuse, "wait": wait},
                    data_root)
    check_combination(cfg, allow)
    cfg = cfg.canonical()
    store = RunStore(runs_dir)
    trials = trial_configs(cfg)
    missing = [t for t in trials if store.load(t) is None]
    dev = default_device(device) if missing and compute else None
    while missing and compute and dev is not None:
        locks = [TrialLock(store.trial_dir(t)) for t in missing]
        mine = [(t, lk) for t, lk in zip(missing, locks) if lk.try_acquire()]
        busy = [(t, lk) for t, lk in zip(missing, locks) if not lk.held]
        try:
            todo = [t for t, _ in mine if store.load(t) is None]  # finished meanwhile?
            if todo:
                _compute(cfg, store, todo, dev, data_root, progress, reuse)
        finally:
            for _, lk in mine:
                lk.release()
        missing = []
        for t, lk in busy:
            where = store.trial_dir(t)
            if not wait:
                print(f"lthlib: skipping {where}: process {lk.holder()} is training it",
                      file=sys.stderr)
                continue
            print(f"lthlib: waiting for process {lk.holder()}, which is training {where}",
                  file=sys.stderr)
            with lk:  # blocks until the other process is done (or died)
                pass
            if store.load(t) is None:  # the other process stopped early: train it here
                missing.append(t)
    store.ensure_index()
    return store.results(cfg)


def run(experiment: str, arch: str = "lenet", dataset: str = "mnist", profile: str = "quick",
        trials: int = 1, runs_dir: str | Path | None = None, **kwargs: Any) -> ExperimentResult:
    """Convenience wrapper: ``lth.run("imp", "lenet", "mnist", profile="quick", trials=2)``."""
    run_kwargs = {k: kwargs.pop(k) for k in ("device", "progress", "data_root", "allow",
                                             "compute", "reuse", "wait") if k in kwargs}
    cfg = make_experiment(experiment, arch, dataset, profile, trials, **kwargs)
    return run_experiment(cfg, runs_dir, **run_kwargs)

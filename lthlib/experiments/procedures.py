"""The paper's experiments, each one function that reads top to bottom.

* :func:`imp` (Figures 3, 4a; ``global-imp``: Figure 8): train θ0, prune p% of the remaining
  weights from the weights at the END of training, reset the survivors to θ0, repeat for
  ``rounds`` levels, every level with the full budget; then ``reinits`` random
  re-initialisations per pruned level (same mask, fresh θ0'). With ``rewind_iteration = k``
  (late rewinding, Frankle et al. 2019, 2020) the survivors restart from θk of the dense run
  and train iterations k..T with the schedule resumed at k and a fresh optimizer state; the
  re-init controls, which have no θk, train the whole schedule from 0. Trials stored before
  this definition (``rewind_schedule = "restart"``) trained the rewound ticket T iterations.
* :func:`oneshot` (Figures 1, 4c): train θ0 once, then for each target Pm prune once and
  train the ticket (θ0), re-initialised copies (θ0') and random sparse networks (a fresh
  random mask with the ticket's per-layer counts and a fresh init).
* :func:`random_sparse` (Figure 1, dashed): the random sparse networks only.

Every stage follows one pattern: ``job.pending`` (what an earlier process has not trained),
:func:`train_members` (all trials' networks of the stage at once), ``job.record`` (stored
per trial: the resume point). From a chapter cell to the optimizer step is five calls:
``run_experiment`` (or ``run``) -> ``imp`` -> ``train_members`` -> the engine -> the step.
All networks of a trial share its minibatch order (a paired design: the ticket and its
controls see the same data).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lthlib.experiments.trial_assignment import Claim, check_combination
from lthlib.config.experiment import ExperimentConfig, make_experiment
from lthlib.experiments.trial_batch import Job
from lthlib.store.run_store import summarize
from lthlib.pruning.next_masks import (imp_next_mask, oneshot_mask, oneshot_rates,
                                       stored_next_mask, stored_oneshot_masks)
from lthlib.pruning.mask_files import mask_digest, save_masks, save_reinit_digests
from lthlib.pruning.prune import Masks, State, density, masked_network, network
from lthlib.training.stage_networks import Member, derive_seed, train_members
from lthlib.pruning.prune import random_masks
from lthlib.experiments.rewind_state import (load_rewind_state, rewind_state_seconds,
                                             save_rewind_state)
from lthlib.store.run_store import ExperimentResult

__all__ = ["imp", "oneshot", "random_sparse", "run", "run_experiment", "PROCEDURES",
           "Member", "train_members", "derive_seed", "summarize", "check_combination",
           "imp_next_mask", "oneshot_mask", "oneshot_rates", "trial_configs"]


def imp(job: Job) -> None:
    """Iterative pruning with resetting, then the re-init controls (see the module doc)."""
    cfg, trials, rounds = job.cfg, job.trials, job.cfg.prune.rounds
    theta0 = {t.seed: network(cfg, t.seed).state_dict() for t in trials}
    # survivors restart from θ0 (the paper) or from θk of the dense run (late rewinding)
    rewound = _rewind_states(job, theta0) if cfg.rewind_iteration else theta0
    masks: dict[int, dict[int, Masks]] = {t.seed: {} for t in trials}  # the pruned levels'
    for level in range(rounds + 1):
        # 1. train this level's ticket: θ0 dense at level 0, else the rewound survivors
        stage, after = f"ticket-L{level:02d}", f"ticket-L{level + 1:02d}"
        tickets = {t.seed: [Member(t, "ticket", level, 0,
                                   theta0[t.seed] if level == 0 else rewound[t.seed],
                                   masks[t.seed].get(level),
                                   density(cfg, masks[t.seed].get(level)))] for t in trials}
        # a stored next mask stands in for the final weights (a fresh clone has no ckpt/)
        stored = {t.seed: stored_next_mask(cfg, job.trial_dir(t), after,
                                           masks[t.seed].get(level), theta0[t.seed])
                  if level < rounds else None for t in trials}
        todo = job.pending(stage, tickets, needs_state=lambda m: level < rounds
                           and stored[m.trial.seed] is None)
        # a rewound ticket trains k..T ("from-k"); the dense level 0 always trains 0..T
        done = job.record(stage, todo, train_members(
            todo, cfg, job.data, job.device, job.label(stage),
            start=cfg.rewound_start if level > 0 else 0), keep_states=True)
        if level == rounds:
            break
        # 2. prune p% of the survivors by their final magnitude; store the mask at once
        for t in trials:
            ticket, final = done[t.seed][0]
            nxt = stored[t.seed] if final is None else imp_next_mask(cfg, final, ticket.mask)
            if nxt is None:
                raise RuntimeError(f"{stage} of {job.trial_dir(t)} left neither its final "
                                   f"weights nor the next mask")
            if final is not None:
                save_masks(job.trial_dir(t), after, nxt)
            masks[t.seed][level + 1] = nxt
    # 3. the controls: each pruned level's mask with fresh random weights θ0'
    controls: dict[int, list[Member]] = {}
    for t in trials:
        if rounds > 0:  # checks that the controls trained with the ticket's masks
            save_reinit_digests(job.trial_dir(t), {
                level: mask_digest(masks[t.seed][level]) for level in range(1, rounds + 1)})
        controls[t.seed] = [
            Member(t, "reinit", level, rep,
                   network(cfg, derive_seed(t.seed, "reinit", level, rep)).state_dict(),
                   masks[t.seed][level], density(cfg, masks[t.seed][level]))
            for level in range(1, rounds + 1) for rep in range(cfg.reinits)]
    todo = job.pending("reinit", controls)
    job.record("reinit", todo, train_members(todo, cfg, job.data, job.device,
                                             job.label("reinit")))
    # 4. metrics, summary and record of every trial
    job.finish()


def oneshot(job: Job) -> None:
    """One-shot pruning with the ticket's controls (see the module doc)."""
    cfg, trials = job.cfg, job.trials
    theta0 = {t.seed: network(cfg, t.seed).state_dict() for t in trials}
    # 1. train the dense network from θ0; its final weights are what one-shot prunes
    dense = {t.seed: [Member(t, "ticket", 0, 0, theta0[t.seed], None, 1.0)] for t in trials}
    # stored masks of every target stand in for the final weights (a fresh clone has no ckpt/)
    stored = {t.seed: stored_oneshot_masks(cfg, job.trial_dir(t), _targets(cfg), theta0[t.seed])
              for t in trials}
    todo = job.pending("dense", dense, needs_state=lambda m: stored[m.trial.seed] is None)
    done = job.record("dense", todo, train_members(todo, cfg, job.data, job.device,
                                                   job.label("dense")), keep_states=True)
    # 2. prune once to each target Pm: the ticket restarts from θ0, its controls do not
    members: dict[int, list[Member]] = {}
    for t in trials:
        members[t.seed] = []
        final = done[t.seed][0][1]
        for i, target in enumerate(_targets(cfg), start=1):
            if final is None:
                mask = stored[t.seed][i]  # type: ignore[index]
            else:
                mask = oneshot_mask(cfg, final, target)
                save_masks(job.trial_dir(t), f"oneshot-L{i:02d}", mask)
            pm = density(cfg, mask)
            members[t.seed].append(Member(t, "ticket", i, 0, theta0[t.seed], mask, pm))
            members[t.seed] += [
                Member(t, "reinit", i, rep,
                       network(cfg, derive_seed(t.seed, "reinit", i, rep)).state_dict(),
                       mask, pm) for rep in range(cfg.reinits)]
            members[t.seed] += _random_controls(cfg, t, i, theta0[t.seed], mask, pm)
    # 3. train them all at once; 4. store the trials
    todo = job.pending("oneshot", members)
    job.record("oneshot", todo, train_members(todo, cfg, job.data, job.device,
                                              job.label("oneshot")))
    job.finish()


def random_sparse(job: Job) -> None:
    """Randomly sampled sparse networks only, at the one-shot targets (Figure 1, dashed)."""
    cfg, trials = job.cfg, job.trials
    members: dict[int, list[Member]] = {}
    for t in trials:
        theta0 = network(cfg, t.seed).state_dict()
        members[t.seed] = []
        for i, target in enumerate(_targets(cfg), start=1):
            # the ticket's per-layer counts without training: prune θ0 (its counts only)
            mask = oneshot_mask(cfg, theta0, target)
            members[t.seed] += _random_controls(cfg, t, i, theta0, mask, density(cfg, mask))
    todo = job.pending("random", members)
    job.record("random", todo, train_members(todo, cfg, job.data, job.device,
                                             job.label("random")))
    job.finish()


PROCEDURES: dict[str, Callable[[Job], None]] = {
    "imp": imp, "global-imp": imp, "oneshot": oneshot, "random-sparse": random_sparse}
RUN_OPTIONS = ("device", "progress", "data_root", "allow", "reuse", "wait")


def run_experiment(cfg: ExperimentConfig, runs_dir: str | Path | None = None,
                   device: torch.device | str | None = None, progress: bool = True,
                   data_root: str | Path | None = None, allow: bool = False,
                   reuse: bool = True, wait: bool = True) -> ExperimentResult:
    """Return every trial of ``cfg`` from the store, computing (and storing) what is missing.

    (To read finished trials without training: ``RunStore(runs_dir).results(cfg)``.) With
    ``reuse`` (the default) a new trial that only adds IMP rounds or controls to a finished
    one starts from that trial's networks (:mod:`lthlib.store.extension`; its record says so).
    One process trains a trial at a time (:mod:`lthlib.experiments.trial_assignment`): a trial that another
    process is training is waited for (``wait=True``, with a message on stderr) and then
    read from the store, or skipped with a message (``wait=False``; the result then lacks
    it). Every call rebuilds a missing or stale store index.
    """
    with Claim(cfg, runs_dir, device, progress, data_root, allow, reuse, wait) as claim:
        for job in claim:
            PROCEDURES[claim.cfg.experiment](job)  # imp, oneshot or random_sparse
    return claim.results()


def run(experiment: str, arch: str = "lenet", dataset: str = "mnist", profile: str = "quick",
        trials: int = 1, runs_dir: str | Path | None = None, **kwargs: Any) -> ExperimentResult:
    """``lth.run("imp", "lenet", "mnist", profile="quick", trials=2)``: the config from
    :func:`lthlib.make_experiment` (its keyword arguments), then as :func:`run_experiment`
    (the keywords in :data:`RUN_OPTIONS`)."""
    options = {k: kwargs.pop(k) for k in RUN_OPTIONS if k in kwargs}
    cfg = make_experiment(experiment, arch, dataset, profile, trials, **kwargs)
    return run_experiment(cfg, runs_dir, **options)


def trial_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One single-trial config per trial: trial t has seed ``cfg.seed + t``."""
    return cfg.trial_configs()


# --- the steps the experiments share ---------------------------------------------------------

def _targets(cfg: ExperimentConfig) -> list[float]:
    return [p for p in cfg.oneshot_targets if p < 1.0]


def _random_controls(cfg: ExperimentConfig, t: ExperimentConfig, level: int, theta0: State,
                     mask: Masks, pm: float) -> list[Member]:
    """Random sparse networks of one level: a random mask with ``mask``'s per-layer counts
    and a fresh init, ``max(1, reinits)`` of them."""
    out = []
    for rep in range(max(1, cfg.reinits)):
        gen = torch.Generator().manual_seed(derive_seed(t.seed, "random-mask", level, rep))
        rmask = random_masks(masked_network(cfg, theta0, mask), gen)
        init = network(cfg, derive_seed(t.seed, "random-init", level, rep)).state_dict()
        out.append(Member(t, "random", level, rep, init, rmask, pm))
    return out


def _rewind_states(job: Job, theta0: dict[int, State]) -> dict[int, State]:
    """θk of each trial's dense run (late rewinding): read from its stages, else trained.

    The dense network is trained from θ0 for k iterations with the trial's whole schedule
    (warmup, milestones) and batch order, so its state is the dense run's at iteration k."""
    k = job.cfg.rewind_iteration
    out: dict[int, State] = {}
    todo = []
    for t in job.trials:
        state = load_rewind_state(job.trial_dir(t), k)
        if state is None:
            todo.append(Member(t, "ticket", 0, 0, theta0[t.seed], None, 1.0))
        else:  # trained by an earlier process: its seconds join the trial's wall time
            out[t.seed] = state
            job.carried.setdefault(t.seed, []).append(rewind_state_seconds(job.trial_dir(t), k))
    if todo:
        short = replace(job.cfg, rewind_iteration=0,
                        train=replace(job.cfg.train, iterations=k))
        t0 = time.perf_counter()
        results = train_members(todo, short, job.data, job.device,
                                progress=f"rewind to iteration {k}" if job.progress else False)
        per_member = (time.perf_counter() - t0) / len(todo)
        for m, (_, state) in zip(todo, results):
            save_rewind_state(job.trial_dir(m.trial), k, state, per_member)
            out[m.trial.seed] = state
    return out

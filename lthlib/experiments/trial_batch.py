"""The trials one process trains for an experiment, and their resume points.

An experiment is a sequence of stages (``ticket-L00``, ``reinit``, ``oneshot`` ...). Each
stage is trained for all of this process's trials at once and stored per trial as soon as it
ends (:meth:`lthlib.store.run_store.RunStore.save_stage`), so a killed process loses one stage at most.
The experiment functions in :mod:`lthlib.experiments.procedures` use a :class:`Job` around each
training call: :meth:`Job.pending` says what an earlier process has not trained yet,
:meth:`Job.record` stores what was just trained, :meth:`Job.finish` writes the records.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lthlib.training.population import engine
from lthlib.config.experiment import ExperimentConfig
from lthlib.data.datasets import TensorSplit
from lthlib.util.device import describe_hardware
from lthlib.pruning.mask_files import MASK_SUFFIX, REINIT_DIGESTS, theta0_digest
from lthlib.training.stage_networks import Member, member_key
from lthlib.pruning.prune import State, network
from lthlib.store.extension import reuse_note
from lthlib.experiments.rewind_state import state_path
from lthlib.experiments.stage_identity import (load_checkpoint, load_stage, save_checkpoint,
                                               stage_identity, trusted_run_ids)
from lthlib.store.run_store import MEMBER_KEYS, RunStore, git_commit, summarize

Trained = list[tuple[pd.DataFrame, State]]
__all__ = ["Job", "summarize", "trial_files"]


def trial_files(cfg: ExperimentConfig, stages: list[str]) -> list[str]:
    """The stage files a trial of ``cfg`` writes (``stages/<name>`` paths): each stage's
    metrics, hash and JSON, the masks it derives, the re-init digests and θk. The record
    hashes only these: anything else in ``stages/`` is unknown, listed and ignored."""
    names = [f"stages/{s}{suffix}" for s in stages for suffix in (".csv", ".sha256", ".json")]
    if cfg.experiment in ("imp", "global-imp"):
        names += [f"stages/ticket-L{level:02d}{MASK_SUFFIX}"
                  for level in range(1, cfg.prune.rounds + 1)]
        names += [f"stages/{REINIT_DIGESTS}"] if cfg.prune.rounds else []
    elif cfg.experiment == "oneshot":
        targets = [p for p in cfg.oneshot_targets if p < 1.0]
        names += [f"stages/oneshot-L{i:02d}{MASK_SUFFIX}" for i in range(1, len(targets) + 1)]
    if cfg.rewind_iteration:
        names.append(f"stages/{state_path(Path('.'), cfg.rewind_iteration).name}")
    return names


def _row_keys(df: pd.DataFrame) -> list[str]:
    """:func:`member_key` of every metrics row (one per evaluation of a network)."""
    return [member_key(v, lv, rp) for v, lv, rp in df[MEMBER_KEYS].itertuples(index=False)]


def _tag(m: Member, history: pd.DataFrame) -> pd.DataFrame:
    df = history.copy()
    df.insert(0, "pm", m.pm)
    df.insert(0, "replicate", m.replicate)
    df.insert(0, "level", m.level)
    df.insert(0, "variant", m.variant)
    return df


@dataclass
class _OpenStage:
    """What :meth:`Job.pending` found, kept until :meth:`Job.record` stores the rest."""

    members_of: dict[int, list[Member]]
    done: dict[int, list[tuple[Member, State | None]]] = field(default_factory=dict)
    # trials whose stage was partly trained before (lthlib.store.extension): members, rows, states
    earlier: dict[int, tuple[list[Member], pd.DataFrame, dict[str, State]]] = field(
        default_factory=dict)
    started: float = 0.0


class Job:
    """This process's unfinished trials of one experiment (their locks are held), with the
    data, device and numeric settings they train with."""

    def __init__(self, cfg: ExperimentConfig, store: RunStore, trials: list[ExperimentConfig],
                 data: TensorSplit, device: torch.device, progress: bool,
                 settings: dict[str, Any]) -> None:
        self.cfg, self.store, self.trials = cfg, store, trials
        self.data, self.device, self.progress, self.settings = data, device, progress, settings
        self.code_version = git_commit()  # the code that computes, not HEAD when it ends
        self.started = time.perf_counter()
        self.metrics: dict[int, list[pd.DataFrame]] = {}
        self.resumed: dict[int, list[str]] = {}  # stages an earlier process trained
        # seconds of partly reused stages (lthlib.store.extension), None where they were not timed
        self.carried: dict[int, list[float | None]] = {}
        self._open: dict[str, _OpenStage] = {}
        self.stages: list[str] = []  # in the order pended: the record hashes their files

    def trial_dir(self, trial: ExperimentConfig) -> Path:
        """The trial's folder, checked to be safe to write into (no linked subfolder)."""
        return self.store.writable_dir(trial)

    def label(self, stage: str) -> str | bool:
        """The progress bar's text for ``stage`` (False: no bar)."""
        return f"{self.cfg.model.arch}/{self.cfg.data.dataset} {stage}" if self.progress else False

    def pending(self, stage: str, members_of: dict[int, list[Member]],
                needs_state: Callable[[Member], bool] = lambda m: False) -> list[Member]:
        """The members of ``stage`` still to train. A stored stage counts as done when its
        metrics pass the store's checks and carry this trial's identity, and, for members
        where ``needs_state``, their final weights are in ``ckpt/`` with the same identity
        (a later step reads them). A stored file that fails is discarded with a warning
        naming it; its networks are trained again."""
        open_ = _OpenStage(members_of)
        self.stages.append(stage)
        todo: list[Member] = []
        for t in self.trials:
            members = members_of[t.seed]
            done, problem = load_stage(self.store, t, stage, members)
            if problem:
                self._discard(self.store.stage_path(t, stage), problem)
            states = self._load_states(t, stage, members) if any(
                map(needs_state, members)) else {}
            done_keys = [] if done is None else _row_keys(done)
            have = set(done_keys)
            ready = [m for m in members if m.key in have
                     and (not needs_state(m) or m.key in states)]
            if done is not None and len(ready) == len(members):
                self.metrics.setdefault(t.seed, []).append(done)
                self.resumed.setdefault(t.seed, []).append(stage)
                open_.done[t.seed] = [(m, states.get(m.key)) for m in members]
                continue
            keys = {m.key for m in ready}
            if ready:  # part of the stage came from a trial this one extends (lthlib.store.extension)
                rows = done[[k in keys for k in done_keys]]
                open_.earlier[t.seed] = (ready, rows, states)
            todo.extend(m for m in members if m.key not in keys)
        self._open[stage] = open_
        open_.started = time.perf_counter()
        return todo

    @staticmethod
    def _discard(path: Path, reason: str) -> None:
        warnings.warn(f"discarding {path}: {reason}; its networks will be recomputed",
                      stacklevel=3)

    def record(self, stage: str, todo: list[Member], trained: Trained,
               keep_states: bool = False) -> dict[int, list[tuple[Member, State | None]]]:
        """Store the stage of every trial that trained some of ``todo`` (its metrics, time and
        settings; with ``keep_states`` the final weights too, in ``ckpt/``). Returns each
        trial's members with their final weights where kept (None elsewhere)."""
        open_ = self._open.pop(stage)
        per_member = (time.perf_counter() - open_.started) / max(1, len(todo))
        out = dict(open_.done)
        by_trial: dict[int, list[tuple[Member, pd.DataFrame, State]]] = {}
        for m, (hist, state) in zip(todo, trained):
            by_trial.setdefault(m.trial.seed, []).append((m, hist, state))
        for seed, rows in by_trial.items():
            t = rows[0][0].trial
            wall = per_member * len(rows)
            parts = [_tag(m, h) for m, h, _ in rows]
            states: dict[str, State | None] = {m.key: s for m, _, s in rows}
            if seed in open_.earlier:
                ready, old_rows, old_states = open_.earlier[seed]
                parts.insert(0, old_rows)
                states = {**{m.key: old_states.get(m.key) for m in ready}, **states}
                old_wall = self.store.stage_times(t).get(stage)
                self.carried.setdefault(seed, []).append(old_wall)
                wall += old_wall or 0.0
            kept = {k: s for k, s in states.items() if s is not None}
            identity = stage_identity(t.run_id(), t.seed, stage, open_.members_of[seed])
            if keep_states and kept:
                save_checkpoint(self._state_file(t, stage), identity, kept)
            metrics = pd.concat(parts, ignore_index=True)
            # trials trained together share the stage's time by their number of networks
            self.store.save_stage(t, stage, metrics, wall_time_s=wall, settings=self.settings,
                                  identity=identity)
            self.metrics.setdefault(seed, []).append(metrics)
            out[seed] = [(m, states.get(m.key) if keep_states else None)
                         for m in open_.members_of[seed]]
        return out

    def _state_file(self, t: ExperimentConfig, stage: str) -> Path:
        return self.store.ckpt_dir(t) / f"{stage}.pt"

    def _load_states(self, t: ExperimentConfig, stage: str, members: list[Member]
                     ) -> dict[str, State]:
        """The final weights ``ckpt/`` holds for ``members``, if the checkpoint is this
        stage's (else discarded with a warning: a checkpoint of another trial, seed or
        stage, or a damaged one, is never trained on)."""
        path = self._state_file(t, stage)
        identity = stage_identity(t.run_id(), t.seed, stage, members)
        states, problem = load_checkpoint(path, identity, trusted_run_ids(
            self.store.trial_dir(t), t.run_id()), [m.key for m in members])
        if problem:
            self._discard(path, problem)
        return states

    def finish(self) -> None:
        """Write every trial's metrics, summary and record; the stored masks join its sha256
        set, with θ0's digest so that regenerating θ0 from the seed can be checked."""
        wall = time.perf_counter() - self.started
        extra = {"population_engine": engine.supports(self.cfg.model.arch),
                 "sparse_path_below_density": self.settings["sparse_path_below_density"]}
        for t in self.trials:
            metrics = pd.concat(self.metrics[t.seed], ignore_index=True)
            metrics = metrics.sort_values(MEMBER_KEYS + ["iteration"], kind="stable")
            note = reuse_note(self.store, t)
            folder = self.trial_dir(t)
            written = [n for n in trial_files(t, self.stages)
                       if not (p := folder.joinpath(*n.split("/"))).is_symlink()
                       and p.is_file()]
            theta0 = theta0_digest(network(self.cfg, t.seed).state_dict())
            self.store.finish(t, metrics.reset_index(drop=True), summarize(metrics),
                              wall / len(self.trials), describe_hardware(self.device),
                              {**extra, **({"reused_from": note} if note else {}),
                               "theta0_sha256": theta0},
                              self.code_version, self.resumed.get(t.seed, []),
                              self.carried.get(t.seed, []), stage_files=written)

"""Which trials this process trains: the missing ones whose lock it wins.

One process trains a trial at a time (:class:`lthlib.store.trial_lock.TrialLock`). :func:`claimed_jobs`
yields a :class:`lthlib.experiments.trial_batch.Job` for the missing trials this process locked, holding the
locks while the caller runs the experiment; trials another process is training are waited
for (then read from the store) or skipped. Before a job starts, each trial's folder is
claimed (files of another config are removed, never resumed from), may be seeded from a
finished trial it extends (:mod:`lthlib.store.extension`), and its stored stages must have run with
this process's numeric settings.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch

from lthlib.training import conv_engine
from lthlib.training.population import engine
from lthlib.config.experiment import ExperimentConfig
from lthlib.data.datasets import load_tensors_for
from lthlib.util.device import default_device
from lthlib.experiments.trial_batch import Job
from lthlib.store.trial_lock import TrialLock
from lthlib.store.extension import seed_missing
from lthlib.experiments.stage_identity import own_stages
from lthlib.store.run_store import ExperimentResult, RunStore

MAX_TRIALS = 10_000
MAX_SEED = 2**31 - 1  # seeds derive 31-bit generator seeds (lthlib.training.stage_networks.derive_seed)


def check_combination(cfg: ExperimentConfig, allow: bool = False) -> None:
    """Refuse combinations the paper never ran unless ``allow`` (e.g. global-imp on LeNet)."""
    paper_global = cfg.model.arch in ("resnet18", "vgg19")
    if cfg.experiment == "global-imp" and not paper_global and not allow:
        raise ValueError(f"global-imp is the paper's procedure for resnet18/vgg19, not "
                         f"{cfg.model.arch!r}; pass allow=True (CLI: --allow) to run it anyway")


def check_run_args(cfg: object, runs_dir: object, device: object, flags: dict[str, object],
                   data_root: object) -> None:
    """Refuse arguments of the wrong type with one line naming the value and what is allowed."""
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
    check_trial_range(cfg.seed, cfg.trials)


def check_trial_range(seed: object, trials: object) -> None:
    """Trials and seeds within what lthlib can train and seed, stated in the error."""
    if isinstance(trials, int) and not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"trials {trials} is out of range; allowed: 1 to {MAX_TRIALS}")
    if isinstance(seed, int) and isinstance(trials, int) and not (
            0 <= seed and seed + trials - 1 <= MAX_SEED):
        raise ValueError(f"seed {seed} with {trials} trial(s) is out of range; allowed: "
                         f"0 <= seed and seed + trials - 1 <= {MAX_SEED}")


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
    count is recorded per stage instead, see :meth:`RunStore.finish`.) Only the trial's own
    stages count: a stage file of another trial is discarded on resume, not obeyed."""
    want = settings.get("sparse_path_below_density")
    for stage, got in store.stage_settings(trial, stages=own_stages(store, trial)).items():
        have = got.get("sparse_path_below_density", want)
        if have != want:
            path = store.trial_dir(trial)
            raise ValueError(
                f"trial {path} has stages trained with sparse_path_below_density={have!r} "
                f"(stage {stage}); this process would use {want!r}; allowed: resume with "
                f"LTH_SPARSE_BELOW={have if have is not None else 0}, or delete "
                f"{path / 'stages'} to train the trial again from scratch")


def new_folders(root: Path, trial_dir: Path) -> list[Path]:
    """The folders from ``trial_dir`` up to ``root`` (included) that do not exist yet."""
    out = []
    rel = trial_dir.relative_to(root)
    for part in (rel, *rel.parents):
        path = root / part
        if path.exists() or path.is_symlink():
            break
        out.append(path)
    return out


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _start(cfg: ExperimentConfig, store: RunStore, trials: list[ExperimentConfig],
           device: torch.device, data_root: str | Path | None, progress: bool,
           reuse: bool) -> Job:
    for t in trials:
        store.claim(t)  # a damaged or misplaced folder's files are never resumed from
    if reuse:
        seed_missing(store, trials)
    settings = numeric_settings(cfg, device)
    for t in trials:
        check_resume_settings(store, t, settings)
    data = load_tensors_for(cfg.data, root=data_root, device=device)
    return Job(cfg, store, trials, data, device, progress, settings)


def claimed_jobs(cfg: ExperimentConfig, store: RunStore, device: torch.device | str | None,
                 progress: bool, data_root: str | Path | None, reuse: bool, wait: bool
                 ) -> Generator[Job, None, None]:
    """Yield a job for the missing trials of ``cfg`` (a canonical config) that this process
    locks, holding their locks until the caller asks for the next one; then wait for the
    trials others are training (``wait``) or skip them with a message on stderr, and train
    here those a stopped process left unfinished. Close it (:class:`Claim` does) so that an
    error in the caller releases the locks at once."""
    missing = [t for t in cfg.trial_configs() if store.load(t) is None]
    dev = default_device(device) if missing else None
    while missing and dev is not None:
        created = {t.seed: new_folders(store.root, store.trial_dir(t)) for t in missing}
        mine: list[tuple[ExperimentConfig, TrialLock]] = []
        busy: list[tuple[ExperimentConfig, TrialLock]] = []
        started = False
        try:
            for t in missing:
                lk = TrialLock(store.trial_dir(t))
                (mine if lk.try_acquire() else busy).append((t, lk))
            todo = [t for t, _ in mine if store.load(t) is None]  # finished meanwhile?
            if todo:
                job = _start(cfg, store, todo, dev, data_root, progress, reuse)
                started = True
                yield job
            started = True
        finally:
            for t, lk in mine:  # a failed start leaves no lock file and no empty folder
                lk.release(remove=not started)
                if not started:
                    remove_empty(created[t.seed])
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


class Claim:
    """``with Claim(cfg, runs_dir) as claim: for job in claim: ...``: the jobs this process
    trains for ``cfg`` (see :func:`claimed_jobs`), then :meth:`results` reads every finished
    trial back (:meth:`lthlib.store.run_store.RunStore.results` reads without training).
    Arguments are checked first (one line naming the bad value and what is allowed)."""

    def __init__(self, cfg: ExperimentConfig, runs_dir: str | os.PathLike | None = None,
                 device: torch.device | str | None = None, progress: bool = True,
                 data_root: str | Path | None = None, allow: bool = False,
                 reuse: bool = True, wait: bool = True) -> None:
        check_run_args(cfg, runs_dir, device, {"progress": progress, "allow": allow,
                                               "reuse": reuse, "wait": wait}, data_root)
        check_combination(cfg, allow)
        self.store = RunStore(runs_dir)  # an empty name or a file is refused here
        self.cfg = cfg.canonical()
        self._jobs = claimed_jobs(self.cfg, self.store, device, progress, data_root, reuse,
                                  wait)

    def __enter__(self) -> Claim:
        return self

    def __iter__(self) -> Iterator[Job]:
        return self._jobs

    def __exit__(self, *exc: object) -> None:
        self._jobs.close()  # releases the locks now, even when the caller raised

    def results(self) -> ExperimentResult:
        """Every finished trial of the config; rebuilds a missing or stale store index."""
        self.store.ensure_index()
        return self.store.results(self.cfg)

"""Sweeps: many experiments at once, in-process or as Ray tasks on a cluster.

A sweep's unit of work is one trial of one experiment config (``trial_configs``): a trial's
IMP levels are sequential, so a trial is the largest piece that runs independently. Units
already finished in the store are skipped before anything is scheduled (the store's identity
rules: the run id hashes the whole config), so an interrupted sweep restarted with the same
arguments only runs what is missing.

Executors:

* ``"local"`` (default): units run one after another in this process; Ray is never imported.
* ``"ray"``: one Ray task per unit (``num_gpus=1`` when the cluster has GPUs, else
  ``num_cpus=threads``). Workers need no shared filesystem: a task trains into a temporary
  runs dir on its node and returns the trial's files as text (config, metrics, summary,
  record, stage CSVs and their hashes; never checkpoints); the driver writes them into its
  own store atomically, the record last, and verifies them with :meth:`RunStore.load`.
  Failed tasks are retried by Ray (``max_retries``, application errors included) and then
  reported with their config; the rest of the sweep completes.

Numbers: each unit runs with ``threads`` torch intra-op threads (default 1) in BOTH
executors. CPU float reductions depend on the thread count, so this is what makes
``--executor ray`` give byte-identical CSVs to ``--executor local`` on CPU. On a multi-core
machine, parallelism comes from running units side by side (``--executor ray`` without an
address starts a local Ray instance over all cores), not from threads inside one unit.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from lthlib.config.experiment import ExperimentConfig, experiment_from_dict
from lthlib.config.paper import check_int
from lthlib.experiments.trial_assignment import check_combination
from lthlib.experiments.procedures import run_experiment, trial_configs
from lthlib.store.trial_lock import TrialLock
from lthlib.store.run_store import RunStore
from lthlib.store.transfer import trial_files, write_trial_files

EXECUTORS = ("local", "ray")


# --- units of work --------------------------------------------------------------------------

def sweep_units(configs: list[ExperimentConfig], allow: bool = False
                ) -> list[ExperimentConfig]:
    """Single-trial configs of every experiment, in order, without duplicates.

    Validates every combination first, so a bad config fails the sweep before any work.
    """
    units: list[ExperimentConfig] = []
    seen: set[tuple[str, str, int]] = set()
    for cfg in configs:
        if not isinstance(cfg, ExperimentConfig):
            raise ValueError(f"sweep configs must be ExperimentConfig, got {type(cfg).__name__}")
        check_combination(cfg, allow)
        # the identity run_experiment stores global-imp under (it forces the global scope)
        if cfg.experiment == "global-imp" and cfg.prune.scope != "global":
            cfg = replace(cfg, prune=replace(cfg.prune, scope="global"))
        for t in trial_configs(cfg):
            key = (t.experiment, t.run_id(), t.seed)
            if key not in seen:
                seen.add(key)
                units.append(t)
    return units


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_unit(cfg_dict: dict[str, Any], device: str | None, data_root: str | None,
             allow: bool, threads: int) -> dict[str, str]:
    """Ray task body: train one trial into a temporary store, return its files as text."""
    cfg = experiment_from_dict(cfg_dict)
    with tempfile.TemporaryDirectory(prefix="lthlib-unit-") as tmp, _torch_threads(threads):
        run_experiment(cfg, tmp, device=device, progress=False, data_root=data_root,
                       allow=allow)
        return trial_files(RunStore(tmp).trial_dir(cfg))


def _error_text(err: BaseException) -> str:
    cause = getattr(err, "cause", None)  # RayTaskError wraps the task's own exception
    if isinstance(cause, BaseException):
        err = cause
    return f"{type(err).__name__}: {str(err).strip()}"


# --- executors ------------------------------------------------------------------------------

def _run_local(units: list[ExperimentConfig], store: RunStore, device: str | None,
               data_root: str | None, max_retries: int, allow: bool, threads: int,
               on_done: Callable[[ExperimentConfig, str | None], None]) -> None:
    for cfg in units:
        error = None
        for _ in range(max_retries + 1):
            try:
                with _torch_threads(threads):
                    run_experiment(cfg, store.root, device=device, progress=False,
                                   data_root=data_root, allow=allow)
                error = None if store.load(cfg) is not None else \
                    "RuntimeError: the trial did not produce a finished record"
            except Exception as err:  # noqa: BLE001 - reported per unit; the sweep goes on
                error = _error_text(err)
            if error is None:
                break
        on_done(cfg, error)


def _run_ray(units: list[ExperimentConfig], store: RunStore, ray_address: str | None,
             device: str | None, data_root: str | None, max_retries: int, allow: bool,
             threads: int, on_done: Callable[[ExperimentConfig, str | None], None]) -> None:
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor 'ray' needs Ray: pip install ray (on the driver and on "
                          "every worker); or use executor 'local'") from err
    started = False
    if not ray.is_initialized():
        if ray_address in (None, "", "local"):
            os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
        try:
            ray.init(address=ray_address or None, include_dashboard=False)
        except ConnectionError as err:
            raise ValueError(f"cannot join a Ray cluster at {ray_address!r} ({err}); start one "
                             f"with `ray start --head`, or give no address to start a local "
                             f"Ray instance") from err
        started = True
    pending: dict[Any, ExperimentConfig] = {}
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        resources = {"num_gpus": 1} if gpus else {"num_cpus": threads}
        task = ray.remote(run_unit).options(max_retries=max_retries, retry_exceptions=True,
                                            **resources)
        for cfg in units:
            ref = task.remote(cfg.to_dict(), device, data_root, allow, threads)
            pending[ref] = cfg
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cfg = pending.pop(ref)
                try:
                    files = ray.get(ref)
                    with TrialLock(store.trial_dir(cfg)):  # not while a local run trains it
                        write_trial_files(store, cfg, files)
                    store.write_index()
                    on_done(cfg, None)
                except Exception as err:  # noqa: BLE001 - reported per unit
                    on_done(cfg, _error_text(err))
    finally:
        for ref in pending:  # interrupted driver: do not leave tasks running
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def run_sweep(configs: list[ExperimentConfig], runs_dir: str | os.PathLike | None = None,
              executor: str = "local", ray_address: str | None = None,
              device: str | None = None, data_root: str | os.PathLike | None = None,
              max_retries: int = 2, allow: bool = False, progress: bool = True,
              threads: int = 1) -> dict[str, Any]:
    """Run every trial of ``configs`` that the store lacks; return a JSON-ready report.

    ``executor``: "local" (in-process) or "ray" (``ray_address`` None starts a local Ray
    instance, "auto" or "host:port" joins a cluster; an initialised Ray is reused).
    ``device``/``data_root``: passed to every unit as given (None = each worker's default,
    e.g. its LTH_DEVICE / LTH_DATA_DIR). ``max_retries``: extra attempts per failed unit.
    ``threads``: torch threads per unit (see the module docstring: equal numbers across
    executors). Report: executor, runs_dir, tasks (units), done (computed now), skipped
    (already finished), failed ([{"config", "error"}]), wall_time_s.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    check_int("max_retries", max_retries, 0)
    check_int("threads", threads, 1)
    if isinstance(configs, ExperimentConfig):
        raise ValueError("configs must be a list of ExperimentConfig, got one ExperimentConfig; "
                         "pass [cfg]")
    t0 = time.perf_counter()
    store = RunStore(runs_dir)
    units = sweep_units(list(configs), allow)
    todo = [u for u in units if store.load(u) is None]
    report: dict[str, Any] = {
        "executor": executor, "runs_dir": str(store.root), "tasks": len(units), "done": 0,
        "skipped": len(units) - len(todo), "failed": [], "wall_time_s": 0.0}
    dev = None if device is None else str(device)
    root = None if data_root is None else str(data_root)
    from tqdm.auto import tqdm
    bar = tqdm(total=len(units), initial=report["skipped"], unit="trial", desc="sweep",
               disable=not progress or not todo, dynamic_ncols=True)

    def on_done(cfg: ExperimentConfig, error: str | None) -> None:
        if error is None:
            report["done"] += 1
        else:
            report["failed"].append({"config": cfg.to_dict(), "error": error})
        bar.set_postfix(failed=len(report["failed"]), refresh=False)
        bar.update(1)

    try:
        if todo and executor == "local":
            _run_local(todo, store, dev, root, max_retries, allow, threads, on_done)
        elif todo:
            _run_ray(todo, store, ray_address, dev, root, max_retries, allow, threads, on_done)
    finally:
        bar.close()
    report["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return report

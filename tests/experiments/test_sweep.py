"""Sweeps: the local executor (CLI included), restarts, failures, and Ray == local.

The Ray tests start a local Ray instance with 2 CPUs (no dashboard, no usage stats) and are
skipped when ``import ray`` fails. Both executors run each trial with one torch thread (the
sweep's default), so their CSVs must be byte-identical.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lthlib.experiments import sweep
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import trial_configs
from lthlib.store.run_store import RunStore
from lthlib.store.transfer import import_trials
from lthlib.experiments.sweep import run_sweep
from lthlib.store.transfer import write_trial_files

REPO = Path(__file__).resolve().parents[2]
COMPARED = ("summary.csv", "metrics.csv")


def smoke_imp(trials: int = 2, seed: int = 0):
    return make_experiment("imp", "lenet", "mnist", "smoke", trials=trials, seed=seed, rounds=1)


def csv_files(store: RunStore, trial) -> dict[str, str]:
    """The trial's result CSVs (summary, metrics, stages) as text."""
    d = store.trial_dir(trial)
    names = list(COMPARED) + sorted(f"stages/{p.name}" for p in (d / "stages").glob("*.csv"))
    return {n: (d / n).read_text() for n in names}


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    """`python -m lthlib sweep` (executor local) with a poisoned `ray` on the path."""
    runs = tmp_path_factory.mktemp("cli-runs")
    fake = tmp_path_factory.mktemp("no-ray")
    (fake / "ray").mkdir()
    (fake / "ray" / "__init__.py").write_text("raise ImportError('local sweeps must not "
                                              "import ray')\n")
    env = {**os.environ, "LTH_DEVICE": "cpu", "PYTHONPATH": str(fake)}
    proc = subprocess.run(
        [sys.executable, "-m", "lthlib", "sweep", "--experiment", "imp", "--arch", "lenet",
         "--dataset", "mnist", "--profile", "smoke", "--trials", "2", "--rounds", "1",
         "--runs-dir", str(runs), "--no-progress"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    return runs, proc


def test_cli_sweep_local(cli_store):
    runs, proc = cli_store
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["executor"] == "local"
    assert (report["tasks"], report["done"], report["skipped"], report["failed"]) == (2, 2, 0, [])
    store = RunStore(runs)
    for t in trial_configs(smoke_imp()):
        rec = store.load(t)
        assert rec is not None and set(rec.summary["variant"]) == {"ticket", "reinit"}
    assert (runs / "index.csv").exists()


def test_restart_skips_finished_trials(cli_store, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(cli_store[0], runs)
    store = RunStore(runs)
    t0, t1 = trial_configs(smoke_imp())
    before = csv_files(store, t1)
    stamp = (store.trial_dir(t0) / "record.json").stat().st_mtime_ns

    report = run_sweep([smoke_imp()], runs, progress=False)
    assert (report["tasks"], report["done"], report["skipped"]) == (2, 0, 2)

    # an interrupted sweep: trial 1 has stages but no record yet
    (store.trial_dir(t1) / "record.json").unlink()
    report = run_sweep([smoke_imp()], runs, device="cpu", progress=False)
    assert (report["tasks"], report["done"], report["skipped"], report["failed"]) == (2, 1, 1, [])
    assert (store.trial_dir(t0) / "record.json").stat().st_mtime_ns == stamp
    assert csv_files(store, t1) == before


def test_local_failure_is_retried_then_reported(monkeypatch, tmp_path):
    calls: list[int] = []
    real = sweep.run_experiment

    def flaky(cfg, *args, **kwargs):
        calls.append(cfg.seed)
        if cfg.seed == 1:
            raise RuntimeError("boom")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_experiment", flaky)
    report = run_sweep([smoke_imp()], tmp_path, device="cpu", max_retries=1, progress=False)
    assert report["done"] == 1 and len(report["failed"]) == 1
    failed = report["failed"][0]
    assert failed["config"]["seed"] == 1 and failed["config"]["experiment"] == "imp"
    assert failed["error"] == "RuntimeError: boom"
    assert calls == [0, 1, 1]  # one attempt plus one retry for the failing trial
    json.dumps(report)  # the CLI prints it
    assert RunStore(tmp_path).load(trial_configs(smoke_imp())[0]) is not None


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="local, ray"):
        run_sweep([smoke_imp()], tmp_path, executor="spark")
    with pytest.raises(ValueError, match="allow=True"):
        run_sweep([smoke_imp(), make_experiment("global-imp", "lenet", "mnist", "smoke")],
                  tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
    cfg = trial_configs(smoke_imp())[0]
    with pytest.raises(ValueError, match="outside the trial"):
        write_trial_files(RunStore(tmp_path), cfg, {"config.json": "", "metrics.csv": "",
                                                    "summary.csv": "", "record.json": "",
                                                    "../evil.csv": ""})


def test_empty_and_duplicate_configs(cli_store):
    assert run_sweep([], cli_store[0], progress=False)["tasks"] == 0
    report = run_sweep([smoke_imp(), smoke_imp(trials=1)], cli_store[0], progress=False)
    assert (report["tasks"], report["skipped"]) == (2, 2)


def test_import_copies_verified_trials_and_never_overwrites(cli_store, tmp_path):
    """`runs import`: results brought back from another machine join the store."""
    src = tmp_path / "brought-back"
    shutil.copytree(cli_store[0], src)
    t0, t1 = trial_configs(smoke_imp())
    s = RunStore(src)
    partial = make_experiment("imp", "lenet", "mnist", "smoke", seed=5, rounds=1)
    s._write_config(partial)  # a trial that never finished
    dest = tmp_path / "runs"
    RunStore(dest).root.mkdir()
    proc = subprocess.run([sys.executable, "-m", "lthlib", "runs", "import", str(src),
                           "--runs-dir", str(dest)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["imported"]) == 2 and report["partial"] == [
        str(s.trial_dir(partial).relative_to(src))]
    d = RunStore(dest)
    for t in (t0, t1):
        assert d.load(t) is not None
        assert csv_files(d, t) == csv_files(s, t)
        assert d.stage_times(t) == s.stage_times(t)  # stage timings travel too
        assert not (d.trial_dir(t) / "ckpt").exists()
    assert "finished" in (dest / "index.csv").read_text()

    stamp = (d.trial_dir(t0) / "record.json").stat().st_mtime_ns
    (s.trial_dir(t1) / "summary.csv").write_text("tampered\n")
    again = import_trials(src, dest)
    assert len(again["already_present"]) == 1 and len(again["corrupt"]) == 1
    assert "sha256" in again["corrupt"][0] and again["imported"] == []
    assert (d.trial_dir(t0) / "record.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="same store"):
        import_trials(dest, dest)
    with pytest.raises(FileNotFoundError, match="no runs store"):
        import_trials(tmp_path / "absent", dest)


# --- Ray ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    try:
        import ray
    except ImportError as err:
        pytest.skip(f"Ray is not installed (pip install ray): {err}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_DISABLE_USAGE_STATS", "1")
        mp.setenv("LTH_DEVICE", "cpu")
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False)
        yield ray
        if started:
            ray.shutdown()


def test_ray_equals_local_and_restarts(ray_session, cli_store, tmp_path):
    local = RunStore(cli_store[0])
    report = run_sweep([smoke_imp()], tmp_path, executor="ray", device="cpu", progress=True)
    assert report["executor"] == "ray"
    assert (report["tasks"], report["done"], report["skipped"], report["failed"]) == (2, 2, 0, [])
    store = RunStore(tmp_path)
    for t in trial_configs(smoke_imp()):
        rec = store.load(t)
        assert rec is not None, t.seed
        assert not (store.trial_dir(t) / "ckpt").exists()  # checkpoints never travel
        assert csv_files(store, t) == csv_files(local, t)
        assert rec.record["run_id"] == local.load(t).record["run_id"]
    assert (tmp_path / "index.csv").exists() and (tmp_path / "README.md").exists()
    assert ray_session.is_initialized()  # a Ray the caller started is reused, not shut down

    again = run_sweep([smoke_imp()], tmp_path, executor="ray", progress=False)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 2, [])


def test_ray_failed_task_is_reported_and_others_finish(ray_session, tmp_path):
    # an unreachable one-shot target fails on the worker after training the dense net
    bad = make_experiment("oneshot", "lenet", "mnist", "smoke", oneshot_targets=(1.0, 0.0))
    good = smoke_imp(trials=1, seed=5)
    report = run_sweep([bad, good], tmp_path, executor="ray", device="cpu", max_retries=1,
                       progress=False)
    assert report["done"] == 1 and len(report["failed"]) == 1
    failed = report["failed"][0]
    assert failed["config"]["experiment"] == "oneshot"
    assert failed["error"].startswith("ValueError: target Pm 0.0")
    assert RunStore(tmp_path).load(trial_configs(good)[0]) is not None
    assert RunStore(tmp_path).load(trial_configs(bad)[0]) is None


@pytest.mark.parametrize("kwargs,words", [
    ({"threads": "2"}, ["threads", "'2'", "integer"]), ({"threads": 0}, ["threads", ">= 1"]),
    ({"max_retries": -1}, ["max_retries", "-1"]), ({"executor": "dask"}, ["'dask'", "ray"])])
def test_sweep_arguments_are_checked_before_any_work(kwargs, words, tmp_path):
    cfg = make_experiment("imp", "lenet", "mnist", "smoke")
    with pytest.raises(ValueError) as err:
        run_sweep([cfg], runs_dir=tmp_path, progress=False, **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)
    with pytest.raises(ValueError, match="list of ExperimentConfig"):
        run_sweep(cfg, runs_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())

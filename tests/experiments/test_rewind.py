"""Late rewinding (``rewind_iteration``): hash stability, k = 0 equals IMP, k > 0 and resume."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lthlib.experiments import procedures as experiments
from lthlib.config.paper import EXPERIMENTS
from lthlib.config.experiment import experiment_from_dict, make_experiment
from lthlib.experiments.procedures import run_experiment

RUNS = Path(__file__).resolve().parents[2] / "runs"
_REAL_TRAIN_MEMBERS = experiments.train_members


def test_committed_trials_resolve_to_their_folders() -> None:
    configs = sorted(p for e in EXPERIMENTS for p in RUNS.glob(f"{e}/*/seed*-*/config.json"))
    assert configs, "no committed trials found"
    for path in configs:
        cfg = experiment_from_dict(json.loads(path.read_text()))
        assert path.parent.name.endswith(cfg.run_id()), path
        if cfg.rewind_iteration == 0:  # hash-neutral at the default: older ids unchanged
            assert "rewind_iteration" not in cfg.to_dict()


def test_rewind_iteration_is_hashed_only_when_set() -> None:
    base = make_experiment("global-imp", "resnet18", "fashionmnist", "smoke")
    late = replace(base, rewind_iteration=5)
    assert late.run_id() != base.run_id()
    assert late.to_dict()["rewind_iteration"] == 5
    assert experiment_from_dict(late.to_dict()) == late
    with pytest.raises(ValueError, match="rewind_iteration"):
        replace(base, rewind_iteration=-1)
    with pytest.raises(ValueError, match="rewind_iteration"):
        replace(base, rewind_iteration=base.train.iterations)
    with pytest.raises(ValueError, match="rewind_iteration"):
        replace(make_experiment("oneshot", "lenet", "mnist", "smoke"), rewind_iteration=5)


class _Killed(RuntimeError):
    """Stands for a process killed part-way through a trial."""


def _cfg(k: int):
    return replace(make_experiment("imp", "lenet", "mnist", "smoke"), rewind_iteration=k)


def _spy(monkeypatch, calls: list, fail_at_level: int | None = None) -> None:
    real = _REAL_TRAIN_MEMBERS

    def spy(members, cfg, *args, **kwargs):
        calls.append((cfg.train.iterations, [(m.variant, m.level, m.init) for m in members]))
        if fail_at_level is not None and any(m.level == fail_at_level for m in members):
            raise _Killed("simulated kill")
        return real(members, cfg, *args, **kwargs)

    monkeypatch.setattr(experiments, "train_members", spy)


def _metrics_text(res) -> str:
    return (res.trials[0].path / "metrics.csv").read_text()


def test_k0_is_todays_imp(tmp_path, monkeypatch) -> None:
    torch.set_num_threads(1)
    plain = run_experiment(make_experiment("imp", "lenet", "mnist", "smoke"),
                           tmp_path / "a", progress=False)

    def never(*args, **kwargs):
        raise AssertionError("k = 0 must not rewind")

    monkeypatch.setattr(experiments, "_rewind_states", never)
    zero = run_experiment(_cfg(0), tmp_path / "b", progress=False)
    assert zero.trials[0].path.name == plain.trials[0].path.name
    assert _metrics_text(zero) == _metrics_text(plain)


def test_late_rewinding_starts_from_stored_state_and_resumes(tmp_path, monkeypatch) -> None:
    from lthlib.experiments.rewind_state import load_rewind_state, state_path
    torch.set_num_threads(1)
    k = 10
    whole = run_experiment(_cfg(k), tmp_path / "whole", progress=False)
    calls: list = []
    _spy(monkeypatch, calls, fail_at_level=1)
    with pytest.raises(_Killed):
        run_experiment(_cfg(k), tmp_path / "cut", progress=False)
    trial_dir = next((tmp_path / "cut").glob("imp/*/seed0-*"))
    theta_k = load_rewind_state(trial_dir, k)
    assert theta_k is not None
    assert calls[0][0] == k  # the dense network trained for k iterations first
    theta0 = calls[0][1][0][2]
    assert any(not torch.equal(theta_k[n], theta0[n]) for n in theta0)
    calls.clear()
    _spy(monkeypatch, calls)
    resumed = run_experiment(_cfg(k), tmp_path / "cut", progress=False)
    assert all(iters != k for iters, _ in calls)  # θk read back, never retrained
    tickets = [(lv, init) for _, ms in calls for v, lv, init in ms if v == "ticket"]
    assert tickets and all(lv >= 1 for lv, _ in tickets)
    for _, init in tickets:  # every pruned ticket restarts from the stored θk
        assert all(torch.equal(init[n], theta_k[n]) for n in theta_k)
    reinits = [init for _, ms in calls for v, _, init in ms if v == "reinit"]
    assert reinits and all(any(not torch.equal(i[n], theta_k[n]) for n in theta_k)
                           for i in reinits)
    assert _metrics_text(resumed) == _metrics_text(whole)
    record = json.loads((resumed.trials[0].path / "record.json").read_text())
    assert f"stages/{state_path(trial_dir, k).name}" in record["sha256"]
    # θk's seconds, spent by the killed process, count in the trial's wall time
    from lthlib.experiments.rewind_state import rewind_state_seconds
    earlier = sum(record["stage_wall_time_s"][s] for s in ("ticket-L00",))
    assert record["wall_time_s"] == pytest.approx(
        record["process_wall_time_s"] + earlier + rewind_state_seconds(trial_dir, k), abs=0.02)


def test_cli_rewind_iter() -> None:
    from lthlib.cli import _configs, build_parser
    args = build_parser().parse_args(["run", "global-imp", "--arch", "resnet18", "--dataset",
                                      "fashionmnist", "--profile", "smoke", "--rewind-iter", "7"])
    assert _configs(args, [args.experiment])[0].rewind_iteration == 7
    args = build_parser().parse_args(["run", "imp", "--profile", "smoke"])
    assert _configs(args, ["imp"])[0] == make_experiment("imp", "lenet", "mnist", "smoke")


def test_rewind_state_of_another_trial_is_discarded(tmp_path) -> None:
    from lthlib.experiments.rewind_state import load_rewind_state, save_rewind_state, state_path
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    mine, other = tmp_path / "seed0-aaaaaaaaaaaa", tmp_path / "seed1-bbbbbbbbbbbb"
    save_rewind_state(other, 7, state, 1.0)
    assert torch.equal(load_rewind_state(other, 7)["w"], state["w"])
    (mine / "stages").mkdir(parents=True)
    state_path(mine, 7).write_bytes(state_path(other, 7).read_bytes())
    with pytest.warns(UserWarning, match="belongs to trial 'seed1-bbbbbbbbbbbb'"):
        assert load_rewind_state(mine, 7) is None

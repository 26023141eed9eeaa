"""Experiments end to end at the smoke profile, and the runs/ store's identity rules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

import lthlib
from lthlib.experiments import procedures as experiments
from lthlib.config.experiment import make_experiment
from lthlib.pruning.next_masks import oneshot_rates
from lthlib.experiments.procedures import run_experiment, trial_configs
from lthlib.store.run_store import RunStore

REPO = Path(__file__).resolve().parents[2]


def smoke(experiment: str, **kw):
    kw.setdefault("trials", 1)
    return make_experiment(experiment, kw.pop("arch", "lenet"), kw.pop("dataset", "mnist"),
                           "smoke", **kw)


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = smoke("imp", trials=2, rounds=3)
    return runs, cfg, run_experiment(cfg, runs, device="cpu", progress=False)


def test_imp_levels_pm_and_controls(imp_run):
    _, cfg, res = imp_run
    s = res.summary
    assert sorted(s["seed"].unique()) == [0, 1]
    tickets = s[s.variant == "ticket"].groupby("level")["pm"].mean()
    assert list(tickets.index) == [0, 1, 2, 3]
    # LeNet: fc weights 265,200 keep 0.8^n, output weights 1,000 keep 0.9^n (paper-facts)
    for n, pm in tickets.items():
        assert pm == pytest.approx((265_200 * 0.8 ** n + 1_000 * 0.9 ** n) / 266_200, abs=2e-5)
    reinit = s[s.variant == "reinit"]
    assert sorted(reinit["level"].unique()) == [1, 2, 3]
    assert len(reinit) == 2 * 3 * cfg.reinits
    m = res.metrics()
    assert {"iteration", "val_loss", "test_acc", "train_acc", "pm", "seed"} <= set(m.columns)
    assert m["iteration"].max() == cfg.train.iterations


def test_records_sum_the_timed_stages(imp_run):
    """Two trials trained together split each stage's time; nothing was resumed, so the
    record's wall time is the process's share."""
    runs, cfg, res = imp_run
    for tr in res.trials:
        rec = tr.record
        stages = rec["stage_wall_time_s"]
        assert sorted(stages) == ["reinit"] + [f"ticket-L{i:02d}" for i in range(4)]
        assert rec["wall_time_complete"] is True
        assert rec["wall_time_s"] == rec["process_wall_time_s"]
        assert 0 < sum(stages.values()) <= rec["wall_time_s"] + 0.05


def test_finished_trials_are_never_recomputed(imp_run, monkeypatch):
    runs, cfg, res = imp_run

    def boom(*a, **k):
        raise AssertionError("recomputed a finished trial")

    monkeypatch.setattr(experiments, "train_members", boom)
    again = run_experiment(cfg, runs, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again.summary, res.summary)


def test_more_trials_compute_only_the_new_one(imp_run, monkeypatch):
    runs, cfg, _ = imp_run
    seen = []
    real = experiments.train_members

    def spy(members, *a, **k):
        seen.extend({m.trial.seed for m in members})
        return real(members, *a, **k)

    monkeypatch.setattr(experiments, "train_members", spy)
    res = run_experiment(replace(cfg, trials=3), runs, device="cpu", progress=False)
    assert set(seen) == {2} and len(res.trials) == 3


def test_changed_config_never_reuses_a_record(imp_run):
    runs, cfg, _ = imp_run
    changed = replace(cfg, train=replace(cfg.train, lr=1e-3))
    store = RunStore(runs)
    for a, b in zip(trial_configs(cfg), trial_configs(changed)):
        assert a.run_id() != b.run_id()
        assert store.load(b) is None and store.load(a) is not None


def test_corrupted_record_is_detected_and_recomputed(tmp_path):
    cfg = smoke("imp", rounds=1)
    first = run_experiment(cfg, tmp_path, device="cpu", progress=False)
    metrics = first.trials[0].path / "metrics.csv"
    original = metrics.read_text()
    metrics.write_text(original[: len(original) // 2])  # truncated
    store = RunStore(tmp_path)
    with pytest.warns(UserWarning, match="sha256"):
        assert store.load(trial_configs(cfg)[0]) is None
    assert store.list()["status"].tolist() == ["corrupt"]
    with pytest.warns(UserWarning):
        again = run_experiment(cfg, tmp_path, device="cpu", progress=False)
    assert metrics.read_text() == original
    pd.testing.assert_frame_equal(again.summary, first.summary)
    (first.trials[0].path / "record.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert store.load(trial_configs(cfg)[0]) is None


def test_oneshot_has_ticket_reinit_and_matching_random_sparse(tmp_path):
    res = run_experiment(smoke("oneshot"), tmp_path, device="cpu", progress=False)
    s = res.summary
    assert set(s["variant"]) == {"ticket", "reinit", "random"}
    for level, g in s[s.level > 0].groupby("level"):
        assert g["pm"].nunique() == 1  # random sparse nets keep the ticket's per-layer counts
    targets = [p for p in res.config.oneshot_targets if p < 1]
    got = s[(s.variant == "ticket") & (s.level > 0)].sort_values("level")["pm"].tolist()
    assert got == pytest.approx(targets, abs=2e-3)


def test_oneshot_rates_match_imp_layer_ratios():
    cfg = smoke("oneshot")
    rates = oneshot_rates(cfg, (265_200 * 0.8 ** 3 + 1_000 * 0.9 ** 3) / 266_200)
    assert rates["fc"] == pytest.approx(1 - 0.8 ** 3, abs=1e-6)
    assert rates["output"] == pytest.approx(1 - 0.9 ** 3, abs=1e-6)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="outside"):
            oneshot_rates(cfg, bad)


def test_random_sparse_only(tmp_path, monkeypatch):
    """Also: the record names the commit the run started from, not HEAD when it finished
    (a long run outlives commits made meanwhile)."""
    from lthlib.experiments import trial_batch as job
    from lthlib.store import run_store as store

    monkeypatch.setattr(job, "git_commit", lambda: "commit-at-start")
    monkeypatch.setattr(store, "git_commit", lambda: "commit-at-finish")
    res = run_experiment(smoke("random-sparse"), tmp_path, device="cpu", progress=False)
    assert set(res.summary["variant"]) == {"random"}
    assert res.trials[0].record["git_commit"] == "commit-at-start"


def test_global_imp_needs_allow_outside_resnet_vgg(tmp_path):
    with pytest.raises(ValueError, match="allow"):
        run_experiment(smoke("global-imp"), tmp_path)


@pytest.mark.slow
def test_global_imp_resnet18_smoke(tmp_path):
    cfg = smoke("global-imp", arch="resnet18", rounds=1, reinits=1, lr_setting="lr0.01")
    # keep the test short: a few small batches are enough to exercise the procedure
    cfg = replace(cfg, train=replace(cfg.train, iterations=8, batch_size=16, eval_every=4))
    res = run_experiment(cfg, tmp_path, device="cpu", progress=False)
    s = res.summary
    t = s[s.variant == "ticket"].sort_values("level")
    # global pruning removes 20% of the 3x3 conv weights (267,696); all weights count in Pm
    assert t["pm"].tolist() == pytest.approx([1.0, (267_696 * 0.8 + 3_200) / 270_896], abs=1e-4)
    assert res.trials[0].record["lr_setting"] == "lr0.01"


def _cli(runs: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "LTH_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "lthlib", "run", "imp", "--profile", "smoke",
                             "--rounds", "6", "--no-progress", "--runs-dir", str(runs), *extra],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_metrics(tmp_path):
    """SIGKILL a real run mid-way, resume it: the same bytes as an uninterrupted run."""
    straight = _cli(tmp_path / "a")
    assert straight.wait(timeout=300) == 0, straight.stdout.read().decode()
    victim = _cli(tmp_path / "b")
    deadline = time.time() + 240
    while time.time() < deadline:
        if list((tmp_path / "b").glob("imp/*/*/stages/ticket-L02.csv")):
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not list((tmp_path / "b").glob("imp/*/*/record.json")), "killed too late"
    resumed = _cli(tmp_path / "b")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read().decode()
    [a] = list((tmp_path / "a").glob("imp/*/*/metrics.csv"))
    [b] = list((tmp_path / "b").glob("imp/*/*/metrics.csv"))
    assert a.read_bytes() == b.read_bytes()
    assert a.parent.name == b.parent.name  # same run identity
    # the wall time still counts the stages the killed process trained
    rec = json.loads((b.parent / "record.json").read_text())
    assert rec["wall_time_complete"] is True
    assert {"ticket-L00", "ticket-L01", "reinit"} <= set(rec["stage_wall_time_s"])
    assert rec["wall_time_s"] > rec["process_wall_time_s"]


def test_cli_run_and_ls(tmp_path, capsys):
    from lthlib.cli import main
    assert main(["run", "random-sparse", "--profile", "smoke", "--no-progress",
                 "--runs-dir", str(tmp_path)]) == 0
    assert main(["runs", "ls", "--json", "--runs-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert rows[0]["experiment"] == "random-sparse" and rows[0]["status"] == "finished"
    assert {"arch", "dataset", "profile", "trials", "levels"} <= set(rows[0])
    assert (tmp_path / "README.md").exists() and (tmp_path / "index.csv").exists()
    # another config of the same seed is another experiment, not a second trial
    assert main(["run", "random-sparse", "--profile", "smoke", "--no-progress", "--reinits",
                 "2", "--runs-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["runs", "ls", "--json", "--runs-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["trials"] for r in rows] == [1, 1] and rows[0]["variant"] != rows[1]["variant"]
    from lthlib.store.run_store import RunStore
    done = next(tmp_path.glob("random-sparse/*/*/config.json"))
    (done.parent.parent / "seed9-partial").mkdir()  # a trial still training: no record yet
    (done.parent.parent / "seed9-partial" / "config.json").write_bytes(done.read_bytes())
    RunStore(tmp_path).write_index()
    index = (tmp_path / "README.md").read_text()
    assert "| partial |" in index
    for r in RunStore(tmp_path).list().query("status == 'finished'").itertuples():  # not "2.0"
        assert f"| {int(r.seed)} | {int(r.levels)} | {int(r.networks)} |" in index


def test_cli_errors_name_allowed_values(tmp_path, capsys, monkeypatch):
    from lthlib.cli import main
    with pytest.raises(SystemExit):
        main(["run", "imp", "--arch", "alexnet"])
    assert "lenet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "bogus"])
    assert "oneshot" in capsys.readouterr().err
    assert main(["run", "global-imp", "--profile", "smoke", "--runs-dir", str(tmp_path)]) == 2
    assert "--allow" in capsys.readouterr().err
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("LTH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", "imp", "--profile", "smoke", "--runs-dir", str(tmp_path)]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_public_api_is_importable():
    for name in ("create_network", "get_dataloaders", "evaluate", "train", "prune_network",
                 "copy_mask", "remaining_fraction", "run", "run_experiment"):
        assert hasattr(lthlib, name)

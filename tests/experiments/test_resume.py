"""Resuming an interrupted IMP trial on a fresh clone: the stored masks are all it needs.

``ckpt/`` is not in git, so a clone of an unfinished trial has its stage metrics and masks
but no trained weights. A finished level whose next mask is stored is not trained again;
a stored mask that this trial could not have produced is refused, naming the file.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lthlib.experiments import procedures as experiments
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run_experiment
from lthlib.pruning.mask_files import mask_path

_REAL = experiments.train_members


class _Killed(RuntimeError):
    """Stands for a process killed part-way through a trial."""


def _cfg():
    return make_experiment("imp", "lenet", "mnist", "smoke", rounds=2)


def _spy(monkeypatch, trained: list[str], kill_at: str | None = None) -> None:
    def spy(members, *args, **kwargs):
        keys = [m.key for m in members]
        if kill_at is not None and kill_at in keys:
            raise _Killed("simulated kill")
        trained.extend(keys)
        return _REAL(members, *args, **kwargs)

    monkeypatch.setattr(experiments, "train_members", spy)


def _interrupted(tmp_path: Path, monkeypatch, name: str) -> Path:
    """A trial killed while its last ticket level trained, its ``ckpt/`` deleted."""
    with pytest.raises(_Killed):
        _spy(monkeypatch, [], kill_at="ticket-L2-r0")
        run_experiment(_cfg(), tmp_path / name, device="cpu", progress=False)
    [trial] = list((tmp_path / name).glob("imp/*/seed0-*"))
    assert sorted(p.name for p in (trial / "stages").glob("*.csv")) == [
        "ticket-L00.csv", "ticket-L01.csv"]
    assert mask_path(trial, "ticket-L02").is_file()  # stored as soon as it was computed
    shutil.rmtree(trial / "ckpt")  # what a fresh clone lacks
    return trial


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    torch.set_num_threads(1)
    res = run_experiment(_cfg(), tmp_path_factory.mktemp("straight"), device="cpu",
                         progress=False)
    return res.trials[0].path


def test_fresh_clone_resume_trains_only_missing_stages(straight, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    trial = _interrupted(tmp_path, monkeypatch, "cut")
    trained: list[str] = []
    _spy(monkeypatch, trained)
    res = run_experiment(_cfg(), tmp_path / "cut", device="cpu", progress=False)
    assert sorted(trained) == ["reinit-L1-r0", "reinit-L2-r0", "ticket-L2-r0"]
    assert res.trials[0].path == trial
    for name in ("metrics.csv", "summary.csv"):
        assert (trial / name).read_bytes() == (straight / name).read_bytes()
    for stage in ("ticket-L01", "ticket-L02"):
        assert mask_path(trial, stage).read_bytes() == mask_path(straight, stage).read_bytes()
    record = json.loads((trial / "record.json").read_text())
    assert {"ticket-L00", "ticket-L01"} <= set(record["stage_wall_time_s"])
    assert "stages/ticket-L02.mask.json" in record["sha256"]


def test_same_machine_resume_reads_the_checkpoint(straight, tmp_path, monkeypatch):
    """Killed after the last level's metrics were stored but before its successor existed:
    the checkpoint still gives the final weights; nothing finished is trained again."""
    torch.set_num_threads(1)
    with pytest.raises(_Killed):
        _spy(monkeypatch, [], kill_at="reinit-L1-r0")
        run_experiment(_cfg(), tmp_path / "b", device="cpu", progress=False)
    [trial] = list((tmp_path / "b").glob("imp/*/seed0-*"))
    mask_path(trial, "ticket-L02").unlink()  # as if killed before it was written
    trained: list[str] = []
    _spy(monkeypatch, trained)
    run_experiment(_cfg(), tmp_path / "b", device="cpu", progress=False)
    assert sorted(trained) == ["reinit-L1-r0", "reinit-L2-r0"]
    assert (trial / "metrics.csv").read_bytes() == (straight / "metrics.csv").read_bytes()


def test_a_tampered_mask_is_refused(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    trial = _interrupted(tmp_path, monkeypatch, "t")
    two = mask_path(trial, "ticket-L02")
    original = two.read_text()
    doc = json.loads(original)
    flipped = bytearray(doc["bits"].encode())
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    two.write_text(json.dumps({**doc, "bits": flipped.decode()}))
    _spy(monkeypatch, [])
    with pytest.raises(ValueError, match="ticket-L02.mask.json.*damaged"):
        run_experiment(_cfg(), tmp_path / "t", device="cpu", progress=False)
    # a self-consistent mask of the wrong level: its digest holds, its counts do not
    shutil.copyfile(mask_path(trial, "ticket-L01"), two)
    with pytest.raises(ValueError, match="ticket-L02.mask.json keeps"):
        run_experiment(_cfg(), tmp_path / "t", device="cpu", progress=False)
    two.write_text(original)  # the genuine mask resumes
    res = run_experiment(_cfg(), tmp_path / "t", device="cpu", progress=False)
    assert len(res.trials) == 1


def test_a_oneshot_trial_resumes_from_its_stored_masks(tmp_path, monkeypatch):
    """One-shot: killed after the dense network, ``ckpt/`` deleted. The stored masks of every
    target stand in for the dense network's final weights, so it is not trained again."""
    torch.set_num_threads(1)
    cfg = make_experiment("oneshot", "lenet", "mnist", "smoke")
    straight = run_experiment(cfg, tmp_path / "straight", device="cpu", progress=False)
    with pytest.raises(_Killed):
        _spy(monkeypatch, [], kill_at="random-L1-r0")
        run_experiment(cfg, tmp_path / "cut", device="cpu", progress=False)
    [trial] = list((tmp_path / "cut").glob("oneshot/*/seed0-*"))
    shutil.rmtree(trial / "ckpt")
    trained: list[str] = []
    _spy(monkeypatch, trained)
    res = run_experiment(cfg, tmp_path / "cut", device="cpu", progress=False)
    assert "ticket-L0-r0" not in trained and trained
    assert (trial / "metrics.csv").read_bytes() == (
        straight.trials[0].path / "metrics.csv").read_bytes()
    # a mask of the wrong target is refused: its digest holds, its counts do not
    shutil.rmtree(trial / "ckpt", ignore_errors=True)
    for name in ("record.json", "metrics.csv", "summary.csv"):
        (trial / name).unlink()
    for f in (trial / "stages").glob("oneshot.*"):
        f.unlink()
    shutil.copyfile(mask_path(trial, "oneshot-L01"), mask_path(trial, "oneshot-L02"))
    with pytest.raises(ValueError, match="oneshot-L02.mask.json keeps"):
        run_experiment(cfg, tmp_path / "cut", device="cpu", progress=False)
    assert len(res.trials) == 1

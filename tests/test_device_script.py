"""scripts/device_runs.sh, rehearsed on the CPU: the prepared call for a lent GPU machine.

The GPU itself is never needed here (LTH_DEVICE=cpu); what is checked is everything around
it: staging the gzipped data, the smoke check, the plan loop and its budget, and that what
comes back under $OUT imports into a store with `runs import`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lthlib.store.run_store import RunStore
from lthlib.store.transfer import import_trials

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_runs.sh"


def _go(tmp: Path, out: Path, budget: int, plan: str) -> subprocess.CompletedProcess:
    (tmp / "plan.txt").write_text(plan)
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "LTH_DEVICE": "cpu", "PYTHON": sys.executable,
           "PLAN": str(tmp / "plan.txt")}
    return subprocess.run(["bash", str(SCRIPT), "go", str(budget)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_plan_lines_are_valid_cli_arguments():
    from lthlib.cli import build_parser
    lines = [ln for ln in (REPO / "scripts" / "device_plan.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines
    for ln in lines:
        args = build_parser().parse_args(["run", *ln.split()])
        assert args.profile in ("paper", "quick"), ln  # the GPU is for the large budgets


def test_rehearsal_on_cpu_then_import(tmp_path):
    source = os.environ.get("LTH_DATA_DIR")
    if not source or not (Path(source) / "MNIST" / "raw").is_dir():
        pytest.skip("LTH_DATA_DIR does not point at the gzipped datasets")
    staged = subprocess.run(["bash", str(SCRIPT), "stage"], cwd=REPO, capture_output=True,
                            text=True)
    assert staged.returncode == 0, staged.stderr
    assert sorted(p.name for p in (REPO / "data" / "MNIST" / "raw").glob("*.gz")) == sorted(
        p.name for p in (Path(source) / "MNIST" / "raw").glob("*.gz"))
    out = tmp_path / "out"
    proc = _go(tmp_path, out, 300, "# a comment, skipped\n\n"
               "imp --profile smoke --rounds 1 --seed 3 --trials 1\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done in" in proc.stdout
    assert "torch" in (out / "device.txt").read_text()
    assert not (out / "smoke").exists()  # the smoke check leaves nothing to import
    assert not list((out / "runs").rglob("ckpt"))  # checkpoints never come back

    dest = tmp_path / "runs"
    report = import_trials(out / "runs", dest)
    assert len(report["imported"]) == 1 and not report["corrupt"]
    rec = RunStore(dest).list()
    assert list(rec["status"]) == ["finished"] and list(rec["seed"]) == [3]
    record = json.loads((dest / rec["path"][0] / "record.json").read_text())
    assert record["hardware"]["device"] == "cpu" and record["wall_time_s"] > 0


def test_spent_budget_starts_nothing(tmp_path):
    proc = _go(tmp_path, tmp_path / "out", 1, "imp --profile smoke --rounds 1\n")
    assert proc.returncode == 0, proc.stderr
    assert "budget spent" in proc.stdout
    assert not (tmp_path / "out" / "runs").exists()

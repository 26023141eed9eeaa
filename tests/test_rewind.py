"""Late rewinding (``rewind_iteration``): hash stability, k = 0 equals IMP, k > 0 and resume."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lthlib import experiments
from lthlib.config import experiment_from_dict, make_experiment
from lthlib.experiments import run_experiment

RUNS = Path(__file__).resolve().parents[1] / "runs"


def test_committed_trials_resolve_to_their_folders() -> None:
    configs = sorted(RUNS.glob("*/*/seed*-*/config.json"))
    assert configs, "no committed trials found"
    for path in configs:
        cfg = experiment_from_dict(json.loads(path.read_text()))
        assert path.parent.name.endswith(cfg.run_id()), path
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

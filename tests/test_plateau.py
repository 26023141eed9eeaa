"""The plateau run's schedule and naming (the run itself is hours; lthlib.plateau)."""
from __future__ import annotations

import pytest

from lthlib.plateau import PlateauConfig, schedule


def test_schedule_has_the_papers_shape() -> None:
    t = schedule(PlateauConfig(epochs=30), per_epoch=429)
    assert t.iterations == 12_870 and t.milestones == (8_580, 10_725)
    assert (t.optimizer, t.lr, t.batch_size, t.momentum, t.weight_decay) == (
        "sgd", 0.1, 128, 0.9, 1e-4)
    assert t.eval_every == 429


def test_config_names_and_checks() -> None:
    cfg = PlateauConfig(epochs=10, precision="BF16")
    assert cfg.name() == "resnet18-fashionmnist-lr0.1-10ep-bf16-seed0"
    with pytest.raises(ValueError, match="precision"):
        PlateauConfig(precision="fp8")
    with pytest.raises(ValueError, match="epochs"):
        PlateauConfig(epochs=0)

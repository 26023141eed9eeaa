"""The plateau run's schedule and naming (the run itself is hours; lthlib.studies.plateau)."""
from __future__ import annotations

import pytest

from lthlib.studies.plateau import PlateauConfig, schedule


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


def test_converged_cpu_profile_is_the_smallest_budget_within_1pp() -> None:
    """The profile's budget follows from the committed curves: the smallest complete budget
    whose final dense test accuracy is within 1 pp of the longest complete one's."""
    import json
    from pathlib import Path

    import pandas as pd

    from lthlib.config.experiment import make_experiment
    from lthlib.config.profiles import profile_deviations
    root = Path(__file__).resolve().parents[2] / "runs" / "plateau"
    finals = {}
    for rec_path in root.glob("resnet18-fashionmnist-lr0.1-*ep-bf16-seed0/record.json"):
        rec = json.loads(rec_path.read_text())
        if rec["complete"]:
            curve = pd.read_csv(rec_path.parent / "curve.csv")
            assert rec["test_size"] == 10_000 and rec["val_size"] == 5_000
            finals[rec["train"]["iterations"]] = float(curve["test_acc"].iloc[-1])
    assert len(finals) >= 2
    plateau = finals[max(finals)]
    chosen = min(b for b, acc in finals.items() if acc >= plateau - 0.01)
    cfg = make_experiment("global-imp", "resnet18", "fashionmnist", "converged-cpu")
    assert cfg.train.iterations == chosen
    assert (cfg.data.eval_subset, cfg.data.train_subset) == (0, 0)  # full val/test sets
    assert cfg.precision == "bf16" and cfg.prune.conv_rate == 0.36
    assert len(profile_deviations("converged-cpu", "resnet18")) == 5


def test_augment_and_warmup_are_their_own_curves_and_old_names_hold():
    assert PlateauConfig(epochs=5, precision="bf16").name() == \
        "resnet18-fashionmnist-lr0.1-5ep-bf16-seed0"
    warm = PlateauConfig(epochs=20, lr=0.03, warmup_fraction=2 / 3, augment=True)
    assert warm.name() == "resnet18-fashionmnist-lr0.03-warmup0.667-augment-20ep-fp32-seed0"
    t = schedule(warm, per_epoch=429)
    assert t.warmup == round(20 * 429 * 2 / 3) and t.milestones[0] == t.warmup
    with pytest.raises(ValueError, match="warmup_fraction"):
        PlateauConfig(warmup_fraction=1.0)

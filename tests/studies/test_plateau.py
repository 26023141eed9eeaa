"""The plateau run's schedule and naming (the run itself is hours; lthlib.studies.plateau)."""
from __future__ import annotations

import json as _json
from pathlib import Path as _Path

import pytest
import torch

from lthlib.data.datasets import TensorSplit
from lthlib.studies import plateau as pl
from lthlib.studies.plateau import PlateauConfig, schedule
from lthlib.training import conv_engine
from lthlib.util.errors import CorruptRecordError


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


# --- the curve trained through the engines (a few iterations on a tiny split) ---------------

RUNS = _Path(__file__).resolve().parents[2] / "runs"


def _split(n: int = 256, m: int = 16) -> TensorSplit:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 1, 28, 28), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorSplit("tiny", x, y, x[:m], y[:m], x[:m], y[:m], x[:m], y[:m],
                       num_classes=10, in_shape=(1, 28, 28))


def _numbers(folder):
    return pl.read_plateau(folder)[0].drop(columns="wall_s")


@pytest.mark.parametrize("arch, precision, epochs", [("resnet18", "bf16", 3),
                                                     ("lenet", "fp32", 2)])
def test_a_stopped_curve_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch, arch,
                                                          precision, epochs):
    """ResNet-18 trains in the conv engine, LeNet in the single-network loop; both stop
    after the first epoch past --stop-after-s and resume bit for bit from their checkpoint."""
    torch.set_num_threads(1)
    cfg = PlateauConfig(arch=arch, dataset="mnist", epochs=epochs, precision=precision)
    whole = pl.run_plateau(cfg, tmp_path / "whole", data=_split())
    part = pl.run_plateau(cfg, tmp_path / "part", data=_split(), stop_after_s=0)
    curve, record = pl.read_plateau(part)
    assert curve["epoch"].tolist() == [0, 1] and not record["complete"]
    assert record["verified"] and record["epochs_done"] == 1
    assert pl.run_plateau(cfg, tmp_path / "part", data=_split()) == part
    curve, record = pl.read_plateau(part)
    assert list(curve.columns) == pl.CURVE_COLUMNS
    assert curve["epoch"].tolist() == list(range(epochs + 1)) and record["complete"]
    assert record["train_metrics"] == pl.TRAIN_METRICS and record["train_eval_size"] == 16
    assert _numbers(part).equals(_numbers(whole))
    assert curve["wall_s"].is_monotonic_increasing and not curve["train_loss"].isna().any()
    assert curve["lr"].iloc[-1] == pytest.approx(0.1 * 0.01)  # after both drops

    def trains(*args, **kwargs):
        raise AssertionError("a complete curve is read back, not trained")

    monkeypatch.setattr(conv_engine, "train_group", trains)
    monkeypatch.setattr(pl, "train_one", trains)
    assert pl.run_plateau(cfg, tmp_path / "whole", data=_split()) == whole


def test_the_command_shows_a_progress_bar_named_after_the_curve(tmp_path, capsys):
    cfg = PlateauConfig(arch="lenet", dataset="mnist", epochs=1)
    pl.run_plateau(cfg, tmp_path, data=_split(), progress=True)
    assert cfg.name() in capsys.readouterr().err


def test_a_changed_curve_is_refused_and_left_out(tmp_path):
    cfg = PlateauConfig(arch="lenet", dataset="mnist", epochs=1)
    out = pl.run_plateau(cfg, tmp_path, data=_split())
    (out / "curve.csv").write_text((out / "curve.csv").read_text().replace("0.", "1.", 1))
    with pytest.raises(CorruptRecordError, match="does not match its sha256"):
        pl.read_plateau(out)
    with pytest.warns(UserWarning, match="left out"):
        assert pl.plateau_curves(tmp_path) == []


def test_committed_curves_read_as_before_and_unverified():
    got = pl.plateau_curves(RUNS)
    assert len(got) >= 4
    for folder, curve, record in got:
        on_disk = _json.loads((folder / "record.json").read_text())
        assert record == {**on_disk, "verified": "sha256" in on_disk}
        assert list(curve.columns) == pl.CURVE_COLUMNS


def test_bf16_outside_the_conv_engine_is_a_one_line_error():
    with pytest.raises(ValueError, match="allowed for lenet: 'fp32'"):
        PlateauConfig(arch="lenet", precision="bf16")

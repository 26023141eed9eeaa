"""The plateau plan and the rule that chooses Figure 8's budget (lthlib.studies.plateau_plan)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from lthlib.report import figure8
from lthlib.store.file_checks import df_to_csv_text
from lthlib.store.records import write_record
from lthlib.studies import plateau_plan as pp
from lthlib.studies.plateau import CURVE_COLUMNS, PlateauConfig


def _store_curve(root: Path, cfg: PlateauConfig, test_acc: float, complete: bool = True,
                 epochs_done: int | None = None) -> None:
    """A stored curve whose last row has ``test_acc`` (written as the plateau run writes it)."""
    done = cfg.epochs if epochs_done is None else epochs_done
    rows = [{c: 0.0 for c in CURVE_COLUMNS} | {"epoch": e, "iteration": 429 * e,
                                                "test_acc": test_acc, "train_acc": 0.99}
            for e in range(done + 1)]
    write_record(root / "plateau" / cfg.name(),
                 {"curve.csv": df_to_csv_text(pd.DataFrame(rows, columns=CURVE_COLUMNS))},
                 {"config": asdict(cfg), "train": {"iterations": 429 * cfg.epochs},
                  "hardware": {"cpu": "test cpu"}, "complete": complete,
                  "epochs_done": done, "wall_time_s": 60.0 * done})


def _cfg(setting: str, epochs: int, seed: int) -> PlateauConfig:
    lr, wf = pp.PLAN_SETTINGS[setting]
    return PlateauConfig(epochs=epochs, lr=lr, warmup_fraction=wf, augment=True, seed=seed)


def test_the_plan_is_18_augmented_fp32_curves_longest_first():
    plan = pp.plan_configs()
    assert len(plan) == 18 and len({c.name() for c in plan}) == 18
    assert all(c.augment and c.precision == "fp32" for c in plan)
    assert [(c.epochs, c.seed) for c in plan[::3]] == [(30, 0), (10, 0), (30, 1), (10, 1),
                                                      (20, 0), (20, 1)]
    assert plan[2].name() == "resnet18-fashionmnist-lr0.03-warmup0.667-augment-30ep-fp32-seed0"


def test_the_smallest_budget_within_tolerance_of_the_plateau_is_chosen(tmp_path):
    # lr 0.1: 10 epochs 1 pp below, 20 within 0.1 pp of 30 -> 20; two seeds each: final
    for seed, shift in ((0, 0.001), (1, -0.001)):
        for epochs, acc in ((10, 0.920), (20, 0.929), (30, 0.930)):
            _store_curve(tmp_path, _cfg("lr0.1", epochs, seed), acc + shift)
    # lr 0.01: one seed, 10 epochs already within -> 10, provisional
    for epochs, acc in ((10, 0.925), (30, 0.927)):
        _store_curve(tmp_path, _cfg("lr0.01", epochs, 0), acc)
    # warmup: only the longest budget, and an incomplete 10-epoch curve that must not count
    _store_curve(tmp_path, _cfg("lr0.03-warmup", 30, 0), 0.93)
    _store_curve(tmp_path, _cfg("lr0.03-warmup", 10, 0), 0.5, complete=False, epochs_done=3)

    table = pp.budget_table(tmp_path)
    lr01 = table[table["setting"] == "lr 0.1, augmented, fp32"].set_index("epochs")
    assert lr01["seeds"].tolist() == [2, 2, 2]
    assert lr01.loc[10, "below the plateau (pp)"] == pytest.approx(1.0)
    assert lr01.loc[10, "per seed (%)"] == "92.10, 91.90"
    choice = pp.budget_choice(table)
    assert choice == {"lr 0.1, augmented, fp32": (20, True),
                      "lr 0.01, augmented, fp32": (10, False),
                      "lr 0.03, warmup 0.667, augmented, fp32": (None, False)}
    assert pp.figure8_budget(choice) == (None, False)  # warmup has no plateau yet
    choice["lr 0.03, warmup 0.667, augmented, fp32"] = (10, True)
    assert pp.figure8_budget(choice) == (20, False)  # largest; lr 0.01 still provisional

    progress = pp.plan_progress(tmp_path)
    assert progress["complete"].sum() == 9
    partial = progress[(progress["epochs done"] > 0) & ~progress["complete"]]
    assert partial["epochs"].tolist() == [10] and partial["epochs done"].tolist() == [3]
    text = figure8.budget_text(tmp_path)
    assert "**9** are complete" in text and "**20 epochs**" in text
    assert "not chosen yet" in text
    assert "only the longest budget" not in text  # lr 0.1's 20 epochs is below its longest
    _store_curve(tmp_path, _cfg("lr0.03-warmup", 10, 1), 0.90)
    assert "only the longest budget, **30 epochs**" in figure8.budget_text(tmp_path)


def test_an_empty_store_has_no_budget(tmp_path):
    assert pp.budget_table(tmp_path).empty and pp.budget_choice(pd.DataFrame()) == {}
    assert figure8.plateau_table(tmp_path).empty
    assert "**0** are complete" in figure8.budget_text(tmp_path)


def test_the_command_names_the_allowed_indices(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"--runs \[18\]: allowed plan indices 0..17"):
        pp.main(["--runs", "18", "--runs-dir", str(tmp_path)])
    assert pp.main(["--list", "--runs-dir", str(tmp_path)]) == 0
    assert "lr 0.03, warmup 0.667, augmented, fp32" in capsys.readouterr().out

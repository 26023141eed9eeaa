"""Chapter 7.7's reading of Figure 8: the ordering of ticket advantages judged against noise,
and the resume commands for what is missing. Built on small hand-made summaries."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from lthlib.report import figure8
from lthlib.report.chapters import Need
from lthlib.store.run_store import ExperimentResult, TrialRecord

PMS = (1.0, 0.644, 0.417, 0.271, 0.178, 0.118)


def _summary(gaps: list[float], base: float = 0.92) -> pd.DataFrame:
    """One trial's summary: a dense ticket, then per pruned level a ticket ``gap`` above its
    re-initialised copy."""
    rows = [{"variant": "ticket", "level": 0, "replicate": 0, "pm": 1.0,
             "final_test_acc": base}]
    for level, gap in enumerate(gaps, start=1):
        rows.append({"variant": "ticket", "level": level, "replicate": 0, "pm": PMS[level],
                     "final_test_acc": base + gap})
        rows.append({"variant": "reinit", "level": level, "replicate": 0, "pm": PMS[level],
                     "final_test_acc": base})
    return pd.DataFrame(rows)


def _result(setting: str, per_seed: dict[int, list[float]], rewind: int = 0
            ) -> ExperimentResult:
    cfg = Need("global-imp", "resnet18", setting, rewind).config(
        "fashionmnist", "converged-cpu", 1, None)
    trials = [TrialRecord(replace(cfg, seed=s), Path("."), _summary(g), {})
              for s, g in per_seed.items()]
    return ExperimentResult(cfg, trials)


def test_one_trial_noise_is_the_test_sets_sampling() -> None:
    res = _result("lr0.1", {0: [0.0] * 5})
    se, source = figure8.gap_noise(res)
    p = float(res.summary["final_test_acc"].mean())
    assert se == pytest.approx((2 * p * (1 - p) / 10_000 / 5) ** 0.5)
    assert "lower bound" in source


def test_several_trials_use_their_spread() -> None:
    res = _result("lr0.1", {0: [0.01] * 5, 1: [0.03] * 5})
    se, source = figure8.gap_noise(res)
    assert se == pytest.approx(pd.Series([0.01, 0.03]).std() / 2 ** 0.5)
    assert source == "trial-to-trial spread"
    # two nearly equal trials: the test set's sampling error is the floor
    close = _result("lr0.1", {0: [0.010] * 5, 1: [0.0101] * 5})
    se, source = figure8.gap_noise(close)
    p = float(close.summary["final_test_acc"].mean())
    assert se == pytest.approx((2 * p * (1 - p) / 10_000 / 10) ** 0.5)
    assert source == "test-set sampling (above the trials' spread)"


@pytest.mark.parametrize("lr01, lr001, word", [
    ({0: [0.0] * 5, 1: [0.001] * 5}, {0: [0.02] * 5, 1: [0.021] * 5}, "as in the paper"),
    ({0: [0.0070] * 5, 1: [0.0057] * 5}, {0: [0.0085] * 5, 1: [0.0076] * 5},
     "not distinguishable"),  # 2 close trials: the sampling floor, not a tiny spread
    ({0: [0.007] * 5}, {0: [0.0085] * 5}, "not distinguishable"),
    ({0: [0.02] * 5, 1: [0.021] * 5}, {0: [0.0] * 5, 1: [0.001] * 5}, "the reverse"),
])
def test_ordering_counts_only_differences_beyond_two_standard_errors(lr01, lr001, word
                                                                      ) -> None:
    text = figure8.ordering_text({"lr0.1": _result("lr0.1", lr01),
                                  "lr0.01": _result("lr0.01", lr001)})
    assert word in text
    assert "lr0.01: mean gap" in text


def test_ordering_needs_lr01_and_another_setting() -> None:
    text = figure8.ordering_text({"lr0.1": _result("lr0.1", {0: [0.0] * 5})})
    assert "cannot be read yet" in text


def test_missing_text_names_each_missing_seed_with_its_command() -> None:
    late = figure8.late_rewind_label(429)
    results = {"lr0.1": _result("lr0.1", {0: [0.0] * 5}),
               "lr0.01": _result("lr0.01", {0: [0.0] * 5, 1: [0.0] * 5}),
               late: ExperimentResult(_result("lr0.1", {}, 429).config, [])}
    text = figure8.missing_text(results, 1)
    assert "lr0.1, seed 1: `python -m lthlib run global-imp" in text
    assert "lr0.01, seed" not in text
    assert text.count("--rewind-iter 429") == 2  # seeds 0 and 1 of the late-rewind panel
    assert ("--dataset fashionmnist --profile converged-cpu --rounds 5 --lr-setting lr0.1 "
            "--seed 0 --trials 1 --rewind-iter 429") in text


def test_late_rewinding_is_never_pooled_with_the_papers_setting(tmp_path) -> None:
    """The ledger and the run overview keep lr 0.1 with late rewinding apart from lr 0.1:
    no claim of the paper is judged on it, and it has its own row."""
    import shutil

    from lthlib.report.claims.claims_csv import store_inventory
    from lthlib.report.overview import runs_overview
    from lthlib.store.run_store import RunStore
    root = Path(__file__).resolve().parents[2] / "runs"
    group = root / "global-imp" / "resnet18-fashionmnist-converged-cpu-lr0.1"
    store = RunStore(root)
    paper = Need("global-imp", "resnet18", "lr0.1").config("fashionmnist", "converged-cpu")
    late = Need("global-imp", "resnet18", "lr0.1", 429).config("fashionmnist", "converged-cpu")
    if not store.trial_dir(late).exists():  # the committed trials restarted the schedule
        late = replace(late, rewind_schedule="restart")
    if not (store.trial_dir(paper).exists() and store.trial_dir(late).exists()):
        pytest.skip("needs the committed seed-0 trials of lr0.1 and its late rewinding")
    copy = tmp_path / "global-imp" / group.name
    for trial in (store.trial_dir(paper), store.trial_dir(late)):
        shutil.copytree(trial, copy / trial.name, ignore=shutil.ignore_patterns("ckpt"))
    inventory = store_inventory(tmp_path)
    key = ("global-imp", "resnet18", "fashionmnist", "lr0.1", "converged-cpu")
    assert inventory[key].rewind_iteration == 0
    late_keys = [k for k, cfg in inventory.items() if k != key]
    assert len(late_keys) == 1 and late_keys[0][3].startswith("lr0.1/rewind429")
    assert inventory[late_keys[0]].rewind_iteration == 429
    rows = runs_overview(tmp_path)
    assert sorted(rows["lr"])[0] == "lr0.1" and len(set(rows["lr"])) == 2
    assert sorted(rows["lr"])[1].startswith("lr0.1, rewind to it. 429")

"""Training loop: early stopping, exact re-runs, checkpoints, resume, both data paths."""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from lthlib import create_network, prune_network
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import get_dataloaders, load_tensors
from lthlib.store.history import early_stop_summary
from lthlib.training.schedule import eval_iterations, lr_factor
from lthlib.training.one_network import evaluate, load_checkpoint, save_checkpoint, train

CFG = TrainConfig("adam", 1.2e-3, 60, 60, eval_every=20)


@pytest.fixture(scope="module")
def small_mnist():
    return load_tensors("mnist", seed=0, train_subset=3000, eval_subset=500,
                        train_eval_size=300)


def test_early_stop_picks_minimum_validation_loss_first_on_ties():
    hist = pd.DataFrame({
        "iteration": [0, 100, 200, 300, 400],
        "train_loss": [2.3, 0.5, 0.3, 0.2, 0.1], "train_acc": [.1, .8, .9, .95, .99],
        "val_loss": [2.3, 0.40, 0.30, 0.30, 0.35], "val_acc": [.1, .85, .9, .91, .9],
        "test_loss": [2.3, 0.41, 0.31, 0.29, 0.33], "test_acc": [.1, .84, .89, .9, .92]})
    es = early_stop_summary(hist)
    assert es["early_stop_iteration"] == 200
    assert es["early_stop_test_acc"] == pytest.approx(.89)
    assert es["early_stop_train_acc"] == pytest.approx(.9)
    assert es["final_iteration"] == 400 and es["final_test_acc"] == pytest.approx(.92)


def test_early_stop_rejects_empty_history():
    with pytest.raises(ValueError, match="empty"):
        early_stop_summary(pd.DataFrame(columns=["iteration", "val_loss"]))


def test_lr_schedule_warmup_and_milestones():
    cfg = TrainConfig("sgd", 0.1, 128, 100, milestones=(50, 75), warmup=10)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(49, cfg) == pytest.approx(1.0)
    assert lr_factor(50, cfg) == pytest.approx(0.1)
    assert lr_factor(80, cfg) == pytest.approx(0.01)
    assert eval_iterations(replace(cfg, eval_every=30)) == [0, 30, 60, 90, 100]


def test_rerun_from_same_init_is_bit_identical(small_mnist):
    """Assignment 7.3(g): same init, same batch order => exactly the same numbers on CPU."""
    runs = []
    for _ in range(2):
        net = create_network("lenet", seed=3)
        res = train(net, small_mnist, CFG, batch_seed=5, device="cpu")
        runs.append(res)
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history, check_exact=True)
    for (k, a), b in zip(runs[0].net.state_dict().items(), runs[1].net.state_dict().values()):
        assert torch.equal(a, b), k


def test_different_batch_seed_changes_result(small_mnist):
    a = train(create_network("lenet", seed=3), small_mnist, CFG, batch_seed=1, device="cpu")
    b = train(create_network("lenet", seed=3), small_mnist, CFG, batch_seed=2, device="cpu")
    assert not a.history.equals(b.history)


def test_history_columns_and_eval_points(small_mnist):
    res = train(create_network("lenet", seed=0), small_mnist, CFG, device="cpu")
    assert list(res.history.columns) == ["iteration", "train_loss", "train_acc", "val_loss",
                                         "val_acc", "test_loss", "test_acc"]
    assert res.history["iteration"].tolist() == [0, 20, 40, 60]
    assert res.early_stop["early_stop_iteration"] in (0, 20, 40, 60)


def test_loader_path_equals_tensor_path(small_mnist):
    """The plain DataLoader path and the in-memory path give identical numbers."""
    train_l, val_l, test_l = get_dataloaders("mnist", batch_size=60, seed=0, batch_seed=9)
    full = load_tensors("mnist", seed=0)
    n_val = 500
    val = (full.val_x[:n_val], full.val_y[:n_val])
    test = (full.test_x[:n_val], full.test_y[:n_val])
    tr_eval = (full.train_eval_x[:300], full.train_eval_y[:300])
    cfg = replace(CFG, iterations=30, eval_every=10)
    as_loaders = (train_l, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*val),
                                                       batch_size=5000),
                  torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*test),
                                              batch_size=5000),
                  torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tr_eval),
                                              batch_size=5000))
    a = train(create_network("lenet", seed=1), as_loaders, cfg, batch_seed=9, device="cpu")
    split = replace(full, val_x=val[0], val_y=val[1], test_x=test[0], test_y=test[1],
                    train_eval_x=tr_eval[0], train_eval_y=tr_eval[1])
    b = train(create_network("lenet", seed=1), split, cfg, batch_seed=9, device="cpu")
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=False, rtol=1e-6)


def test_pruned_weights_stay_zero_and_checkpoints_round_trip(small_mnist, tmp_path):
    net = create_network("lenet", seed=0)
    prune_network(net)
    cfg = TrainConfig("sgd", 0.05, 60, 40, eval_every=20, weight_decay=1e-3, momentum=0.9)
    res = train(net, small_mnist, cfg, device="cpu", run_dir=tmp_path / "run")
    for name in ("fc1", "fc2", "fc3"):
        mod = getattr(res.net, name)
        assert torch.all(mod.weight[mod.weight_mask == 0] == 0)
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"start.pt", "best.pt", "end.pt",
                                                              "history.csv"}
    fresh = create_network("lenet", seed=99)
    load_checkpoint(tmp_path / "run" / "end.pt", fresh)
    assert torch.equal(fresh.fc1.weight_mask, res.net.fc1.weight_mask)
    assert torch.equal(fresh.fc1.weight, res.net.fc1.weight)
    x = small_mnist.test_x[:50]
    assert torch.equal(fresh(x), res.net(x))


def test_finished_run_dir_is_reused_not_retrained(small_mnist, tmp_path):
    first = train(create_network("lenet", seed=0), small_mnist, CFG, run_dir=tmp_path)
    again = train(create_network("lenet", seed=0), small_mnist, CFG, run_dir=tmp_path)
    assert again.wall_time == 0.0
    pd.testing.assert_frame_equal(first.history, again.history, check_exact=False, rtol=1e-9)


def test_resume_from_checkpoint_is_bitwise_equal(small_mnist, tmp_path):
    """Stop after 40 of 60 iterations, resume from resume.pt: identical to a straight run."""
    straight = train(create_network("lenet", seed=2), small_mnist, CFG, batch_seed=4)
    partial_cfg = replace(CFG)
    run_dir = tmp_path / "r"
    # simulate a kill: run with a budget of 60 but interrupt by raising after 40 iterations
    net = create_network("lenet", seed=2)
    calls = {"n": 0}
    real_forward = net.forward

    def flaky_forward(x):
        calls["n"] += 1
        if calls["n"] > 41 and net.training:
            raise KeyboardInterrupt
        return real_forward(x)

    net.forward = flaky_forward
    with pytest.raises(KeyboardInterrupt):
        train(net, small_mnist, partial_cfg, batch_seed=4, run_dir=run_dir)
    assert (run_dir / "resume.pt").exists()
    resumed = train(create_network("lenet", seed=2), small_mnist, CFG, batch_seed=4,
                    run_dir=run_dir)
    pd.testing.assert_frame_equal(straight.history, resumed.history, check_exact=True)
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_accepts_tensors_and_loaders(small_mnist):
    net = create_network("lenet", seed=0)
    X, y = small_mnist.val_x, small_mnist.val_y
    loss_t, acc_t = evaluate(net, (X, y))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=128)
    loss_l, acc_l = evaluate(net, loader)
    assert acc_t == pytest.approx(acc_l) and loss_t == pytest.approx(loss_l, rel=1e-5)
    assert math.isfinite(loss_t) and 0 <= acc_t <= 1


@pytest.mark.slow
def test_short_real_training_beats_90_percent():
    data = load_tensors("mnist", seed=0)
    cfg = TrainConfig("adam", 1.2e-3, 60, 1000, eval_every=500)
    res = train(create_network("lenet", seed=0), data, cfg, device="cpu")
    assert res.history["test_acc"].iloc[-1] > 0.90

"""Stability for networks with BatchNorm (lthlib.studies.stability): statistics re-estimated on the path.

The case below is built so that the interpolated running statistics and the statistics of the
interpolated network disagree: two endpoints with opposite first-layer weights, ReLU, then
BatchNorm. Halfway, the first layer is zero, so every activation is 0 (mean 0, variance 0),
while the interpolated running mean is the endpoints' positive mean. Read with interpolated
statistics the path has a barrier that the interpolated network does not have.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from lthlib.studies import stability as st
from lthlib.data.datasets import TensorSplit
from lthlib.studies.lmc import path_errors as interpolated_path_errors


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(1, 1, bias=False), nn.ReLU(), nn.BatchNorm1d(1),
                         nn.Linear(1, 2))


def _endpoint(sign: float, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net = _net()
    with torch.no_grad():
        net[0].weight.fill_(sign)
        net[2].weight.fill_(1.0)
        net[2].bias.fill_(0.3)
        net[3].weight.copy_(torch.tensor([[1.0], [0.0]]))
        net[3].bias.zero_()
    st.reestimate_bn(net, x)  # the endpoint's own, correct statistics
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_reestimated_statistics_differ_from_interpolated_ones_and_change_the_answer():
    x = torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(4096, dtype=torch.long)  # class 0 everywhere
    a, b = _endpoint(1.0, x), _endpoint(-1.0, x)
    net = _net()
    re = st.path_errors_bn(net, a, b, x, y, bn_x=x, points=3)
    interp = st.path_errors_bn(net, a, b, x, y, bn_x=None, points=3)
    # the endpoints carry their own statistics: both readings agree there (about half of
    # the inputs, those with x < 0 for a, fall below the decision threshold)
    assert re["test_error"].iloc[[0, 2]].tolist() == interp["test_error"].iloc[[0, 2]].tolist()
    ends = float(re["test_error"].iloc[[0, 2]].mean())
    assert 0.4 < ends < 0.7
    # halfway every activation is 0: its true statistics put every input in class 0, the
    # interpolated running mean (the endpoints' positive mean) puts every input in class 1
    assert re["test_error"].iloc[1] == 0.0 and interp["test_error"].iloc[1] == 1.0
    assert st.instability(re["test_error"]) == pytest.approx(0.0, abs=0.02)
    assert st.instability(interp["test_error"]) == pytest.approx(1.0 - ends)
    # lthlib.studies.lmc's LeNet path (no re-estimation) gives the interpolated reading
    assert interpolated_path_errors(net, a, b, x, y, points=3)["test_error"].tolist() == \
        interp["test_error"].tolist()


def test_reestimate_bn_gives_the_exact_statistics_of_the_data():
    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(1)) * 2 + 5
    net = nn.Sequential(nn.BatchNorm1d(3))
    st.reestimate_bn(net, x, batch=100)
    bn = net[0]
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-5)
    # cumulative average of per-batch unbiased variances: equal batches of 100
    per_batch = torch.stack([x[i:i + 100].var(0, unbiased=True) for i in range(0, 1000, 100)])
    assert torch.allclose(bn.running_var, per_batch.mean(0), atol=1e-4)
    assert bn.momentum == 0.1 and not net.training


def _tiny_split(n: int = 32) -> TensorSplit:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 1, 28, 28), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorSplit("tiny", x, y, x[:8], y[:8], x[:8], y[:8], x[:8], y[:8],
                       num_classes=10, in_shape=(1, 28, 28))


def test_a_pair_is_stored_hashed_and_read_back(tmp_path):
    cfg = st.regime_config("lr0.1", 0, profile="smoke", rewind_iteration=2)
    cfg = replace(cfg, train=replace(cfg.train, iterations=4, eval_every=2, batch_size=4,
                                     milestones=(3,)), points=3, bn_examples=8)
    out = st.run_pair(cfg, tmp_path, data=_tiny_split())
    path, record = st.load_pair(out)
    assert len(path) == 3 and record["train_iterations_per_copy"] == 2
    assert out.name == f"lr0.1-dense-k2-seed0-{cfg.run_id()}"
    sums, _ = st.stability_results(tmp_path)
    assert sums["instability"].iloc[0] >= 0 and sums["rewind_iteration"].iloc[0] == 2
    assert st.run_pair(cfg, tmp_path, data=_tiny_split()) == out  # read back, not retrained
    assert not (out / "stages").exists()  # a finished pair keeps its path, not its weights
    assert replace(cfg, augment=True).run_id() != cfg.run_id()


def test_an_interrupted_pair_resumes_from_its_own_stages_only(tmp_path, monkeypatch):
    cfg = st.regime_config("lr0.1", 0, profile="smoke", rewind_iteration=2)
    cfg = replace(cfg, train=replace(cfg.train, iterations=4, eval_every=2, batch_size=4,
                                     milestones=(3,)), points=3, bn_examples=8)
    clean = (st.run_pair(cfg, tmp_path / "clean", data=_tiny_split()) / "path.csv").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after training")

    real_path = st.path_errors_bn
    monkeypatch.setattr(st, "path_errors_bn", killed)
    with pytest.raises(KeyboardInterrupt):
        st.run_pair(cfg, tmp_path / "run", data=_tiny_split())
    out = st.pair_dir(cfg, tmp_path / "run")
    assert sorted(p.name for p in (out / "stages").iterdir()) == [
        "copy0.state.json", "copy1.state.json", "theta-k.state.json"]
    assert st._load_stage(out, "copy0", replace(cfg, seed=1)) is None  # another pair's: no
    monkeypatch.setattr(st, "path_errors_bn", real_path)
    monkeypatch.setattr(st, "_train", killed)  # nothing may train again
    st.run_pair(cfg, tmp_path / "run", data=_tiny_split())
    assert (out / "path.csv").read_text() == clean


def test_networks_outside_the_conv_engine_train_in_the_single_network_loop(tmp_path):
    cfg = st.regime_config("lr0.1", 0, profile="smoke")
    cfg = replace(cfg, arch="conv2", train=replace(cfg.train, iterations=3, eval_every=3,
                                                   batch_size=4, milestones=()),
                  points=3, bn_examples=8, rewind_iteration=1)
    out = st.run_pair(cfg, tmp_path, data=_tiny_split())
    path, record = st.load_pair(out)
    assert len(path) == 3 and record["train_iterations_per_copy"] == 2


def test_vgg19_pairs_reestimate_batchnorm_on_the_path_and_are_read_back(tmp_path, monkeypatch):
    cfg = st.regime_config("lr0.1", 0, profile="smoke")
    cfg = replace(cfg, arch="vgg19", train=replace(cfg.train, iterations=2, eval_every=2,
                                                   batch_size=4, milestones=()),
                  points=3, bn_examples=8)
    seen = []
    real = st.reestimate_bn

    def counting(net, x, batch=256):
        seen.append(len(x))
        return real(net, x, batch)

    monkeypatch.setattr(st, "reestimate_bn", counting)
    out = st.run_pair(cfg, tmp_path, data=_tiny_split())
    path, record = st.load_pair(out)
    assert len(path) == 3 and out.parent.name.startswith("vgg19-fashionmnist-")
    assert seen == [8, 8, 8]  # one re-estimation per point, on bn_examples training images
    sums, paths = st.stability_results(tmp_path, arch="vgg19")
    assert len(sums) == 1 and len(paths) == 3
    assert 0.0 <= sums["instability"].iloc[0] <= 1.0


def test_bad_configs_are_one_line_errors():
    cfg = st.regime_config("lr0.1", 0)
    with pytest.raises(ValueError, match="start"):
        replace(cfg, start="sideways")
    with pytest.raises(ValueError, match="source_run_id"):
        replace(cfg, start="ticket", level=3)
    with pytest.raises(ValueError, match="rewind_iteration"):
        replace(cfg, rewind_iteration=cfg.train.iterations)

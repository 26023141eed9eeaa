"""Exported tickets and sparse weights: the ticket is θ0 with its mask and loads back as
such; the sparse file is smaller and predicts like the masked dense model, and so do the
CSR inference layers."""
from __future__ import annotations

import pytest
import torch

import lthlib as lth
from lthlib.pruning.prune import get_masks, plain_state
from lthlib.nets.sparse_layers import to_sparse_inference
from ticket_helpers import SETTINGS, TinyNet, tiny_data


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_export_ticket_round_trips(tmp_path):
    data = tiny_data()
    result = lth.find_ticket(TinyNet(), data, data, data, runs_dir=tmp_path / "runs",
                             echo=None, **{**SETTINGS, "reinits": 0})
    trial = result.trials[0]
    info = lth.export_ticket(result, 2, tmp_path / "ticket.pt")
    assert info["weights"] == "theta0" and info["pm"] < 0.3 and info["bytes"] > 0
    net = lth.load_ticket(TinyNet(width=8), tmp_path / "ticket.pt")
    loaded = plain_state(net)
    masks = trial.masks[2]
    for key, value in trial.theta0.items():
        layer = key[: -len(".weight")]
        want = value * masks[layer] if layer in masks and key.endswith(".weight") else value
        assert torch.equal(loaded[key], want), key
    assert all(torch.equal(get_masks(net)[name], mask) for name, mask in masks.items())
    with pytest.raises(ValueError, match=r"allowed: \[0, 1, 2\]"):
        lth.export_ticket(result, 5, tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="allowed: weights=.theta0."):
        lth.export_ticket(result, 1, tmp_path / "nope.pt", weights="thetak")


def _pruned(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyNet()
    lth.prune_network(net, rates={"fc": 0.8, "conv": 0.6, "output": 0.4})
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), as after training
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.bias.uniform_(-0.1, 0.1)
    return net.eval()


def test_sparse_export_predicts_like_the_masked_dense_model(tmp_path):
    net = _pruned()
    info = lth.export_sparse(net, None, tmp_path / "sparse.pt")
    assert info["bytes_sparse"] < info["bytes_dense"]
    assert info["size_ratio"] == pytest.approx(info["bytes_sparse"] / info["bytes_dense"])
    assert info["pm"] == pytest.approx(lth.remaining_fraction(net))
    loaded = lth.load_sparse(TinyNet(), tmp_path / "sparse.pt").eval()
    x = tiny_data(64, seed=5).tensors[0]
    with torch.no_grad():
        want = net(x)
        assert (loaded(x) - want).abs().max().item() <= 1e-5
        assert (to_sparse_inference(net)(x) - want).abs().max().item() <= 1e-5
    assert all(torch.equal(a, b) for a, b in zip(get_masks(loaded).values(),
                                                  get_masks(net).values()))


def test_sparse_export_takes_explicit_masks_and_rejects_bad_ones(tmp_path):
    net = TinyNet().eval()
    masks = {"fc1": (torch.rand(16, 128, generator=torch.Generator().manual_seed(1)) > 0.9)
             .float()}
    info = lth.export_sparse(net, masks, tmp_path / "fc1.pt")
    loaded = lth.load_sparse(TinyNet(), tmp_path / "fc1.pt")
    assert torch.equal(plain_state(loaded)["fc1.weight"], net.fc1.weight.detach() * masks["fc1"])
    assert info["pm"] < 1.0
    with pytest.raises(ValueError, match="unknown layers"):
        lth.export_sparse(net, {"nope": masks["fc1"]}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="allowed: a file in format"):
        lth.load_ticket(TinyNet(), tmp_path / "fc1.pt")

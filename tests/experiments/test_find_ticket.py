"""lth.find_ticket on a network and data lthlib does not know: what it prunes, that pruned
weights stay zero, its store identity, resume after kill -9, and one-line errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Subset, TensorDataset

import lthlib as lth
from lthlib.config.paper import TrainConfig
from lthlib.pruning.mask_files import load_masks
from lthlib.data.own_data import own_split
from lthlib.training.one_network import train
from ticket_helpers import SETTINGS, TinyNet, tiny_data

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: fast on a shared machine, and the same float reductions as the
    subprocess of the resume test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    lines: list[str] = []
    data = tiny_data()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        result = lth.find_ticket(TinyNet(), DataLoader(data, batch_size=20), data, data,
                                 runs_dir=runs, echo=lines.append,
                                 **{k: v for k, v in SETTINGS.items() if k != "batch_size"})
    return result, lines, runs


def test_prunes_conv_and_linear_weights_only_output_at_half_rate(found):
    result, lines, _ = found
    assert [(r.name, r.kind, r.rate) for r in result.plan] == [
        ("conv", "conv", 0.5), ("fc1", "fc", 0.5), ("out", "output", 0.25)]
    printed = "\n".join(lines)
    assert "never pruned (biases, norms, other parameters): conv.bias, bn.weight, bn.bias, " \
           "fc1.bias, out.bias" in printed
    masks = result.trials[0].masks
    sizes = {"conv": 72, "fc1": 2048, "out": 48}
    for level in (1, 2):
        for name, rate in (("conv", 0.5), ("fc1", 0.5), ("out", 0.25)):
            kept = sizes[name]
            for _ in range(level):
                kept -= round(rate * kept)
            assert int(masks[level][name].sum()) == kept
    assert all(bool((masks[2][n] <= masks[1][n]).all()) for n in sizes)  # nested
    summary = result.summary
    assert sorted(zip(summary.variant, summary.level)) == [
        ("reinit", 1), ("reinit", 2), ("ticket", 0), ("ticket", 1), ("ticket", 2)]


def test_masks_stay_zero_under_momentum_and_weight_decay(found, tmp_path):
    result, _, _ = found
    path = tmp_path / "ticket.pt"
    lth.export_ticket(result, 2, path)
    net = lth.load_ticket(TinyNet(), path)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-2,
                      batch_size=20, iterations=25, eval_every=25)
    data = own_split(tiny_data(), tiny_data(), tiny_data())
    train(net, data, cfg, batch_seed=0)
    masks = result.trials[0].masks[2]
    for name, mask in masks.items():
        module = dict(net.named_modules())[name]
        effective = module.weight_orig * module.weight_mask
        assert bool((effective[mask == 0] == 0).all())
        assert torch.equal(module.weight_mask, mask)
    buffers = sorted(n for n, _ in net.named_buffers() if n.endswith("_mask"))
    assert buffers == ["conv.weight_mask", "fc1.weight_mask", "out.weight_mask"]
    for name in ("conv.bias", "bn.weight", "bn.bias", "fc1.bias", "out.bias"):
        assert not torch.equal(before[name], dict(net.named_parameters())[name])


def test_dataset_and_dataloader_give_the_same_trial(found):
    result, _, runs = found
    data = tiny_data()
    lines: list[str] = []
    again = lth.find_ticket(TinyNet(), data, DataLoader(data, batch_size=7), data,
                            runs_dir=runs, echo=lines.append, **SETTINGS)
    assert [t.path for t in again.trials] == [t.path for t in result.trials]
    assert any("read back, not retrained" in line for line in lines)
    assert again.summary.equals(result.summary)


def _identity(runs: Path, model: nn.Module, data: TensorDataset) -> Path:
    settings = {**SETTINGS, "rounds": 0, "iterations": 2, "eval_every": 2}
    return lth.find_ticket(model, data, data, data, runs_dir=runs, echo=None,
                           **settings).trials[0].path


def test_changed_layer_or_dataset_gives_a_new_identity(tmp_path):
    data = tiny_data()
    base = _identity(tmp_path, TinyNet(), data)
    assert _identity(tmp_path, TinyNet(), data) == base
    assert _identity(tmp_path, TinyNet(width=6), data) != base
    x, y = data.tensors
    x2 = x.clone()
    x2[5, 0, 0, 0] += 0.5
    assert _identity(tmp_path, TinyNet(), TensorDataset(x2, y)) != base
    assert _identity(tmp_path, TinyNet(), Subset(data, range(200))) != base


KILLED = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import lthlib as lth
from ticket_helpers import SETTINGS, TinyNet, tiny_data
data = tiny_data()
lth.find_ticket(TinyNet(), data, data, data, runs_dir={runs!r}, echo=None,
                **{{**SETTINGS, "iterations": 200, "eval_every": 20}})
"""


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(tmp_path):
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c",
                             KILLED.format(tests=str(HERE), runs=str(runs))])
    first = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("own-network/tinynet/seed0-*/stages/ticket-L01.csv"))
        if found:
            first = found[0].parents[1]
            break
        time.sleep(0.02)
    if first is None:
        proc.kill()
        pytest.fail(f"the trial stored no ticket-L01 stage before exiting ({proc.returncode})")
    time.sleep(0.3)  # land inside the next network's training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (first / "record.json").exists(), "the kill came after the trial finished"
    data = tiny_data()
    settings = {**SETTINGS, "iterations": 200, "eval_every": 20}
    resumed = lth.find_ticket(TinyNet(), data, data, data, runs_dir=runs, echo=None,
                              **settings).trials[0]
    fresh = lth.find_ticket(TinyNet(), data, data, data, runs_dir=tmp_path / "fresh",
                            echo=None, **settings).trials[0]
    assert resumed.path.name == fresh.path.name
    for name in ["metrics.csv", "summary.csv", "stages/ticket-L01.mask.json",
                 "stages/ticket-L02.mask.json"]:
        assert (resumed.path / name).read_bytes() == (fresh.path / name).read_bytes(), name
    assert torch.equal(load_masks(resumed.path, "ticket-L02")["fc1"],
                       fresh.masks[2]["fc1"])


class _Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(1, 8, 8), 0


class _OwnParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale


def _bad_cases():
    data = tiny_data(60)
    x, y = data.tensors
    return [
        ("model", "not a model", data, "allowed: a torch.nn.Module"),
        ("model", nn.Sequential(nn.Flatten(), nn.ReLU()), data, "no nn.Linear or nn.Conv2d"),
        ("model", nn.Sequential(nn.Linear(10, 3)), data, "failed on a batch of shape"),
        ("model", nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), data, "2 outputs"),
        ("model", nn.Conv2d(1, 3, 3), data, "allowed: (N, classes) logits"),
        ("model", _OwnParameter(), data, "no reset_parameters()"),
        ("data", TinyNet(), _Stream(), "IterableDataset"),
        ("data", TinyNet(), [(x[0], 0, 1)], "allowed: an (input, label) pair"),
        ("data", TinyNet(), TensorDataset(x, y.float()), "allowed: an integer class index"),
        ("data", TinyNet(), TensorDataset(x[:0], y[:0]), "is empty"),
        ("data", TinyNet(), 42, "map-style Dataset"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_models_and_datasets_give_one_line_errors(case, tmp_path):
    _, model, data, needle = _bad_cases()[case]
    with pytest.raises(ValueError) as err:
        lth.find_ticket(model, data, tiny_data(60), tiny_data(60), runs_dir=tmp_path,
                        echo=None, **SETTINGS)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option,value,needle", [
    ("scope", "everywhere", "allowed: layer, global"), ("rate", 1.0, "rate must be"),
    ("optimizer", "lion", "allowed: adam, sgd"), ("rounds", -1, "rounds must be"),
    ("rewind_iteration", 30, "rewind_iteration must be below")])
def test_bad_settings_give_one_line_errors(option, value, needle, tmp_path):
    data = tiny_data(60)
    with pytest.raises(ValueError) as err:
        lth.find_ticket(TinyNet(), data, data, data, runs_dir=tmp_path, echo=None,
                        **{**SETTINGS, option: value})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_global_scope_shares_one_threshold_and_rewinding_exports_theta_k(tmp_path):
    data = tiny_data()
    result = lth.find_ticket(TinyNet(), data, data, data, runs_dir=tmp_path, echo=None,
                             scope="global", rewind_iteration=10, reinits=0,
                             **{**SETTINGS, "rounds": 1})
    masks = result.trials[0].masks[1]
    hidden = masks["conv"].numel() + masks["fc1"].numel()
    kept = int(masks["conv"].sum() + masks["fc1"].sum())
    assert kept == hidden - round(0.5 * hidden)  # one threshold over both hidden layers
    assert int(masks["out"].sum()) == 48 - round(0.25 * 48)  # the output layer on its own
    trial = result.trials[0]
    assert trial.rewound is not None
    assert not torch.equal(trial.rewound["fc1.weight"], trial.theta0["fc1.weight"])
    info = lth.export_ticket(result, 1, tmp_path / "ticket.pt")
    assert info["weights"] == "thetak"
    net = lth.load_ticket(TinyNet(), tmp_path / "ticket.pt")
    assert torch.equal(net.fc1.weight_orig, trial.rewound["fc1.weight"] * masks["fc1"])

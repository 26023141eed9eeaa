"""Late rewinding as the literature defines it: θk, then iterations k..T with the schedule at k.

Frankle et al. (2019, arXiv:1903.01611; 2020, arXiv:1912.05671) set the survivors to θk and
train from iteration k to T. These tests pin that the rewound network trains exactly T - k
updates, that its first update uses the schedule's learning rate at k, that k = 0 is the
paper's IMP with its committed hashes, and that trials stored under the older definition
(the whole schedule again) keep their hash under a label of their own.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lthlib.training import conv_engine
from lthlib.config.experiment import experiment_from_dict, make_experiment
from lthlib.data.datasets import TensorSplit
from lthlib.nets.paper_networks import create_network
from lthlib.training.schedule import lr_factor, make_scheduler
from lthlib.training.one_network import train

RUNS = Path(__file__).resolve().parents[2] / "runs"


def _tiny_split(n: int = 96, shape=(1, 28, 28), seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorSplit("tiny", x, y, x[:32], y[:32], x[:32], y[:32], x[:32], y[:32],
                       num_classes=10, in_shape=shape)


class _CountingSGD(torch.optim.SGD):
    """SGD that records the learning rate of every step it takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lrs: list[float] = []

    def step(self, closure=None):
        self.lrs.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_scheduler_resumes_at_k():
    cfg = make_experiment("global-imp", "resnet18", "fashionmnist", "converged-cpu",
                          lr_setting="lr0.03-warmup", precision="fp32").train
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, start=107)
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(107, cfg))
    opt.step(); sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(108, cfg))
    with pytest.raises(ValueError, match="schedule start"):
        make_scheduler(opt, cfg, start=cfg.iterations)


def test_conv_engine_trains_exactly_t_minus_k(monkeypatch):
    base = make_experiment("global-imp", "resnet18", "fashionmnist", "smoke",
                           lr_setting="lr0.03-warmup").train
    cfg = replace(base, iterations=12, eval_every=4, warmup=8, milestones=(9,), batch_size=8)
    made: list[_CountingSGD] = []

    def counting(params, c, *a, **k):
        opt = _CountingSGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        made.append(opt)
        return opt

    monkeypatch.setattr(conv_engine, "make_optimizer", counting)
    data = _tiny_split()
    init = create_network("resnet18", 10, (1, 28, 28), seed=0).state_dict()
    k = 5
    res = conv_engine.train_group([init], [None], data, cfg, [0], start=k)[0]
    assert len(made[0].lrs) == cfg.iterations - k
    assert made[0].lrs[0] == pytest.approx(cfg.lr * lr_factor(k, cfg))
    assert made[0].lrs[-1] == pytest.approx(cfg.lr * lr_factor(cfg.iterations - 1, cfg))
    assert res.history["iteration"].tolist() == [5, 8, 12]


def test_train_trains_exactly_t_minus_k():
    cfg = replace(make_experiment("imp", "lenet", "mnist", "smoke").train, iterations=20,
                  eval_every=10, batch_size=16)
    net = create_network("lenet", seed=0)
    steps = []
    net.register_forward_hook(lambda m, i, o: steps.append(1) if m.training else None)
    res = train(net, _tiny_split(), cfg, batch_seed=0, start_iteration=7)
    assert len(steps) == cfg.iterations - 7
    assert res.history["iteration"].tolist() == [7, 10, 20]


def test_k0_is_the_papers_imp_and_keeps_committed_hashes():
    configs = sorted(p for exp in ("imp", "global-imp", "oneshot", "random-sparse")
                     for p in RUNS.glob(f"{exp}/*/seed*-*/config.json"))
    assert configs, "the committed store holds trials"
    for path in configs:
        cfg = experiment_from_dict(json.loads(path.read_text()))
        assert path.parent.name.endswith(cfg.run_id()), path
        if cfg.rewind_iteration == 0:
            assert cfg.rewind_schedule == "" and cfg.rewound_start == 0
            assert "rewind_schedule" not in cfg.to_dict()


def test_old_definition_keeps_its_hash_under_its_own_label():
    old = [experiment_from_dict(json.loads(p.read_text()))
           for p in sorted(RUNS.glob("global-imp/*/seed*-*/config.json"))]
    old = [c for c in old if c.rewind_iteration]
    assert old, "the committed late-rewinding trials (k = 429) are in the store"
    for cfg in old:
        assert cfg.rewind_schedule == "restart" and cfg.rewound_start == 0
        assert cfg.setting.endswith("-restart")
        new = replace(cfg, rewind_schedule="from-k")
        assert new.run_id() != cfg.run_id()
        assert new.rewound_start == cfg.rewind_iteration
        assert experiment_from_dict(new.to_dict()) == new
    fresh = make_experiment("global-imp", "resnet18", "fashionmnist", "converged-cpu",
                            lr_setting="lr0.1", rewind_iteration=21)
    assert fresh.rewind_schedule == "from-k" and fresh.setting == "lr0.1/rewind21"
    with pytest.raises(ValueError, match="rewind schedule"):
        replace(fresh, rewind_schedule="sometimes")

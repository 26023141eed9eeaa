"""The grouped conv engine trains each ResNet as lthlib.training.one_network.train does (up to float rounding)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lthlib.bench import resnet as conv_bench
from lthlib.training import conv_engine
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import TensorSplit
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import apply_masks, get_masks, plain_state, prune_network
from lthlib.training.one_network import train

SHARED = Path(os.environ.get("LTH_DATA_DIR") or "data").expanduser().resolve()


def _split(device: str = "cpu", n: int = 96, side: int = 8) -> TensorSplit:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, side, side, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return TensorSplit("tiny", x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:], x[:16],
                       y[:16], num_classes=10, in_shape=(1, side, side)).to(device)


def _members(side: int = 8):
    inits, masks = [], []
    for seed in (0, 1):
        net = create_network("resnet18", in_shape=(1, side, side), seed=seed)
        inits.append({k: v.clone() for k, v in net.state_dict().items()})
        if seed == 1:  # one pruned member, one dense: masks are per network
            prune_network(net, amount=0.5, scope="global")
            masks.append(get_masks(net))
        else:
            masks.append(None)
    return inits, masks


CFG = TrainConfig("sgd", 0.02, 16, 4, eval_every=2, weight_decay=1e-4, milestones=(3,),
                  warmup=2)


def _reference(init, mask, data, seed, device="cpu"):
    net = create_network("resnet18", in_shape=data.in_shape)
    net.load_state_dict(init)
    if mask is not None:
        apply_masks(net, mask)
    res = train(net, data, CFG, batch_seed=seed, device=device)
    return res.history, plain_state(res.net)


def _check(device: str) -> None:
    data = _split(device)
    inits, masks = _members()
    got = conv_engine.train_group(inits, masks, data, CFG, [3, 4], device=device)
    for (init, mask, seed, res) in zip(inits, masks, [3, 4], got):
        hist, state = _reference(init, mask, data, seed, device)
        assert list(res.history.iteration) == list(hist.iteration)
        for col in hist.columns[1:]:
            assert torch.allclose(torch.tensor(res.history[col].to_numpy()),
                                  torch.tensor(hist[col].to_numpy()), atol=2e-4), col
        for k, v in state.items():
            assert torch.allclose(res.final_state[k].float().cpu(), v.float().cpu(),
                                  atol=2e-4, rtol=1e-3), k
        if mask is not None:
            for name, m in mask.items():
                w = res.final_state[f"{name}.weight"]
                assert torch.all(w.cpu()[m.cpu() == 0] == 0)


def test_grouped_matches_train_cpu() -> None:
    torch.manual_seed(0)
    _check("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_grouped_matches_train_cuda() -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    _check("cuda")


def test_pack_unpack_roundtrip() -> None:
    inits, masks = _members()
    net = conv_engine.pack(inits, [None, None], 1)
    for a, b in zip(conv_engine.unpack(net), inits):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_bad_arguments() -> None:
    inits, masks = _members()
    with pytest.raises(ValueError, match="equal non-empty"):
        conv_engine.train_group(inits, masks[:1], _split(), CFG, [0, 1])
    with pytest.raises(ValueError, match="sgd"):
        conv_engine.train_group(inits, masks, _split(),
                                TrainConfig("adam", 1e-3, 16, 2), [0, 1])


def test_experiments_train_resnets_grouped(monkeypatch) -> None:
    from dataclasses import replace
    from lthlib.experiments import procedures as experiments
    from lthlib.config.experiment import make_experiment
    cfg = replace(make_experiment("global-imp", "resnet18", "fashionmnist", "smoke"),
                  precision="bf16")
    calls = []

    def fake(inits, masks, data, tcfg, seeds, device="cpu", augment=False, bf16=False,
             progress=False, start=0):
        calls.append((len(inits), bf16))
        return [conv_engine.ConvResult(None, {}, {}, 0.0) for _ in inits]

    monkeypatch.setattr(conv_engine, "train_group", fake)
    members = [experiments.Member(cfg, "reinit", 1, r, {}, None, 1.0) for r in range(6)]
    out = experiments.train_members(members, cfg, _split(), torch.device("cpu"))
    assert len(out) == 6 and calls == [(1, True)] * 6  # one network per group on a CPU
    monkeypatch.setattr(conv_engine, "group_size", lambda device, n: 4)
    calls.clear()
    experiments.train_members(members, cfg, _split(), torch.device("cpu"))
    assert calls == [(4, True), (2, True)]
    lenet = replace(make_experiment("imp", "lenet", "mnist", "smoke"), precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        experiments.train_members([experiments.Member(lenet, "ticket", 0, 0, {}, None, 1.0)],
                                  replace(lenet, model=replace(lenet.model, arch="conv2")),
                                  _split(), torch.device("cpu"))
    with pytest.raises(ValueError, match="paper"):
        make_experiment("imp", "lenet", "mnist", "paper", precision="bf16")


def test_emulated_bf16_warns_and_native_bf16_does_not(monkeypatch) -> None:
    """bf16 without AMX/AVX512-BF16 is emulated (13x slower measured on an AVX2 EPYC): the
    engine says so instead of silently taking days; where bf16 is native it says nothing."""
    import warnings

    from lthlib.util import device as device_mod
    inits, masks = _members()
    tiny = TrainConfig("sgd", 0.02, 16, 2, eval_every=2)
    monkeypatch.setattr(device_mod, "native_bf16", lambda dev: False)
    with pytest.warns(RuntimeWarning, match="--precision fp32"):
        conv_engine.train_group(inits[:1], masks[:1], _split(), tiny, [0], bf16=True)
    monkeypatch.setattr(device_mod, "native_bf16", lambda dev: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        conv_engine.train_group(inits[:1], masks[:1], _split(), tiny, [0], bf16=True)
        conv_engine.train_group(inits[:1], masks[:1], _split(), tiny, [0], bf16=False)


def test_cli_precision_overrides_the_profile_and_changes_the_identity() -> None:
    from lthlib.cli import _configs, build_parser
    base = ["run", "global-imp", "--arch", "resnet18", "--dataset", "fashionmnist",
            "--profile", "converged-cpu", "--lr-setting", "lr0.1"]
    default = _configs(build_parser().parse_args(base), ["global-imp"])[0]
    fp32 = _configs(build_parser().parse_args(base + ["--precision", "fp32"]), ["global-imp"])[0]
    assert default.precision == "bf16" and fp32.precision == "fp32"
    assert default.run_id() != fp32.run_id()
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--precision", "fp16"])


@pytest.mark.skipif(not (SHARED / "FashionMNIST").exists(), reason="needs FashionMNIST")
def test_precision_bench_reports_both_precisions() -> None:
    threads = torch.get_num_threads()
    got = conv_bench.precision_speeds("cpu", rounds=1, seconds=0.05)
    assert torch.get_num_threads() == threads  # the one-thread measurement restores it
    assert got["fp32_it_s"] > 0 and got["bf16_it_s"] > 0
    assert got["native_bf16"] is conv_bench.native_bf16(torch.device("cpu"))
    assert got["bf16_over_fp32"] == pytest.approx(got["bf16_it_s"] / got["fp32_it_s"], rel=0.01)


def test_conv_bench_helpers() -> None:
    assert conv_bench.native_bf16(torch.device("cpu")) in (True, False)
    assert conv_bench.native_bf16(torch.device("meta")) is False
    flop = conv_bench.train_flop("resnet18", "fashionmnist", 128)
    assert 1e10 < flop < 1e11  # about 24 GFLOP per training iteration at batch 128
    idle = conv_bench.cpu_idle_fraction(0.05)
    assert idle is None or 0.0 <= idle <= 1.0


def test_bench_and_conv_bench_import_without_a_cycle() -> None:
    """bench.resnet takes its measuring primitives from bench.common, never from the package
    face or the LeNet bench."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(conv_bench))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "lthlib.bench.common" in imported
    assert not {"lthlib.bench", "lthlib.bench.lenet"} & imported


@pytest.mark.skipif(not (SHARED / "FashionMNIST" / "raw").is_dir(),
                    reason="LTH_DATA_DIR does not hold FashionMNIST")
def test_side_by_side_processes_train_and_report() -> None:
    """Two 1-thread engine processes start together and each reports its speed."""
    speed = conv_bench.side_by_side(2, 0.3)
    assert 0.0 < speed < 1000.0
    assert 0.0 < conv_bench.side_by_side(2, 0.3, ceiling=True) < 1000.0


def test_in_place_block_equals_the_textbook_formula() -> None:
    """The engine's in-place ReLU and residual add give the out-of-place values and
    gradients bit for bit (so stored results do not depend on the rewrite)."""
    torch.manual_seed(0)
    block = conv_engine._GBlock(2, 4, 8, 2).train()
    for conv in block.modules():
        if isinstance(conv, conv_engine._GConv):
            torch.nn.init.normal_(conv.weight)
    x = torch.randn(6, 8, 10, 10)
    outs, grads = [], []
    for in_place in (True, False):
        xi = x.clone().requires_grad_(True)
        if in_place:
            out = block(xi)
        else:
            relu = torch.nn.functional.relu
            out = relu(block.bn2(block.conv2(relu(block.bn1(block.conv1(xi)))))
                       + block.shortcut(xi))
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append((xi.grad, [p.grad.clone() for p in block.parameters()]))
        block.zero_grad()
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def test_ceiling_network_keeps_only_convolutions() -> None:
    net = conv_engine.pack(_members()[0], [None, None], 1)
    names = {type(m).__name__ for m in conv_bench.strip_to_convolutions(net).modules()}
    assert "BatchNorm2d" not in names and "ReLU" not in names and "_GConv" in names
    assert net(torch.rand(3, 2, 8, 8).contiguous(memory_format=torch.channels_last)).shape \
        == (3, 2, 10)


def test_profile_knobs_for_a_cpu_profile(monkeypatch) -> None:
    from lthlib import config
    prof = config.Profile("mini", iterations_scale=0.1, global_rate=0.36, precision="bf16")
    monkeypatch.setitem(config.PROFILE_PRESETS, "mini", prof)
    cfg = config.make_experiment("global-imp", "resnet18", "fashionmnist", "mini")
    assert cfg.prune.conv_rate == 0.36 and cfg.precision == "bf16"
    assert config.make_experiment("imp", "lenet", "mnist", "mini").precision == "fp32"
    devs = config.profile_deviations("mini", "resnet18")
    assert any("36%" in d for d in devs) and any("bf16" in d for d in devs)
    assert not any("augmentation" in d for d in devs)
    monkeypatch.setitem(config.PROFILE_PRESETS, "mini",
                        config.Profile("mini", iterations_scale=0.1, augment=True))
    assert config.make_experiment("global-imp", "resnet18", "fashionmnist", "mini").data.augment
    assert not config.make_experiment("imp", "lenet", "mnist", "mini").data.augment
    assert any("augmentation" in d for d in config.profile_deviations("mini", "resnet18"))
    assert not any("augmentation" in d for d in config.profile_deviations("mini", "lenet"))
    monkeypatch.undo()
    plain = config.make_experiment("global-imp", "resnet18", "fashionmnist", "mini")
    assert "precision" not in plain.to_dict() and not plain.data.augment


def test_compile_failure_falls_back_to_eager(monkeypatch) -> None:
    """Where compiling fails (no C++ compiler, no dynamo), training goes on eagerly: with a
    warning, and with the eager path's numbers."""
    data = _split()
    inits, masks = _members()
    eager = conv_engine.train_group(inits, masks, data, CFG, [3, 4])

    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="training eagerly"):
        got = conv_engine.train_group(inits, masks, data, CFG, [3, 4], compiled=True)
    for a, b in zip(got, eager):
        assert a.history.equals(b.history)
        assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in b.final_state)


@pytest.mark.slow
def test_compiled_matches_train_cpu() -> None:
    """torch.compile changes only float rounding: histories and states as train() gives."""
    data = _split()
    inits, masks = _members()
    got = conv_engine.train_group(inits, masks, data, CFG, [3, 4], compiled=True)
    for init, mask, seed, res in zip(inits, masks, [3, 4], got):
        hist, state = _reference(init, mask, data, seed)
        for col in hist.columns[1:]:
            assert torch.allclose(torch.tensor(res.history[col].to_numpy()),
                                  torch.tensor(hist[col].to_numpy()), atol=2e-4), col
        for k, v in state.items():
            assert torch.allclose(res.final_state[k].float(), v.float(), atol=2e-4,
                                  rtol=1e-3), k


def test_conv_engine_hooks_change_no_number_and_refuse_another_runs_checkpoint(tmp_path):
    """on_eval sees every evaluation point; a checkpointed, hooked run gives the plain run's
    numbers; a checkpoint of other arguments is refused with the file named."""
    torch.set_num_threads(1)
    data, cfg = _split(side=28), TrainConfig("sgd", 0.1, 16, 4, eval_every=2)
    state = create_network("resnet18", 10, (1, 28, 28), seed=0).state_dict()
    plain = conv_engine.train_group([state], [None], data, cfg, [0])[0]
    points = []
    hooked = conv_engine.train_group([state], [None], data, cfg, [0],
                                     checkpoint=tmp_path / "c.pt",
                                     on_eval=lambda p: points.append(p) or False)[0]
    assert hooked.history.equals(plain.history)
    assert all(torch.equal(hooked.final_state[k], v) for k, v in plain.final_state.items())
    assert [(p.iteration, p.final) for p in points] == [(0, False), (2, False), (4, True)]
    assert not (tmp_path / "c.pt").exists()  # removed once the run ended
    conv_engine.train_group([state], [None], data, cfg, [0], checkpoint=tmp_path / "c.pt",
                            on_eval=lambda p: p.iteration == 2)
    assert (tmp_path / "c.pt").exists()
    with pytest.raises(ValueError, match="c.pt is not a checkpoint of this run"):
        conv_engine.train_group([state], [None], data, cfg, [1], checkpoint=tmp_path / "c.pt")


def test_conv_engine_refuses_a_checkpoint_of_other_weights_or_no_checkpoint(tmp_path):
    data, cfg = _split(side=28), TrainConfig("sgd", 0.1, 16, 4, eval_every=2)
    states = [create_network("resnet18", 10, (1, 28, 28), seed=s).state_dict() for s in (0, 1)]
    conv_engine.train_group(states[:1], [None], data, cfg, [0], checkpoint=tmp_path / "c.pt",
                            on_eval=lambda p: p.iteration == 2)
    with pytest.raises(ValueError, match="not a checkpoint of this run"):
        conv_engine.train_group(states[1:], [None], data, cfg, [0],
                                checkpoint=tmp_path / "c.pt")
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="c.pt is no readable checkpoint"):
        conv_engine.train_group(states[:1], [None], data, cfg, [0],
                                checkpoint=tmp_path / "c.pt")

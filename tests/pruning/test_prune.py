"""Pruning: the assignment's and the paper's numbers, mask semantics, interop with torch."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lthlib.nets.paper_networks import create_network, prunable_layers
from lthlib.pruning.prune import (apply_masks, copy_mask, get_masks, plain_state, prune_network,
                                  random_masks, remaining_fraction, reset_to)


def kept_params(net: nn.Module) -> int:
    """The assignment's count: parameters minus zeros in the masks."""
    zeros = sum(int((m == 0).sum()) for m in get_masks(net).values())
    return sum(p.numel() for p in net.parameters()) - zeros


def kept(net: nn.Module) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in get_masks(net).items()}


def effective(net: nn.Module, name: str) -> torch.Tensor:
    return getattr(net.get_submodule(name), "weight")


@pytest.mark.parametrize(("arch", "total", "after"), [
    ("lenet", 266_610, 133_760), ("conv2", 4_301_642, 2_151_786)])
def test_assignment_check_at_half(arch: str, total: int, after: int) -> None:
    net = create_network(arch, seed=0)
    assert kept_params(net) == total
    assert prune_network(net, 0.5) is net
    assert kept_params(net) == after


def test_one_paper_round_on_lenet() -> None:
    net = prune_network(create_network("lenet", seed=0))  # paper rates: fc 20%, output 10%
    assert kept(net) == {"fc1": 188_160, "fc2": 24_000, "fc3": 900}
    assert sum(kept(net).values()) == 213_060
    assert remaining_fraction(net) == pytest.approx(213_060 / 266_200)


def test_iterative_rounds_reach_the_papers_pm_and_masks_only_shrink() -> None:
    net = create_network("lenet", seed=0)
    prev = get_masks(net)
    pm = {}
    for r in range(1, 8):
        prune_network(net, arch="lenet")
        masks = get_masks(net)
        assert all(bool((masks[k] <= prev[k]).all()) for k in masks)
        prev, pm[r] = masks, 100 * remaining_fraction(net)
    assert pm[3] == pytest.approx(51.3, abs=0.05)
    assert pm[7] == pytest.approx(21.1, abs=0.05)


def test_layerwise_magnitude_keeps_the_largest_weights() -> None:
    net = create_network("conv2", seed=1)
    prune_network(net, 0.3)
    for name, module, _ in prunable_layers(net):
        w, m = module.weight_orig.abs(), module.weight_mask.bool()
        assert w[~m].max() <= w[m].min(), name
    assert int(get_masks(net)["features.0"].sum()) == 1728 - round(0.3 * 1728)


def test_rates_override_per_kind() -> None:
    net = prune_network(create_network("lenet", seed=0), 0.5, rates={"output": 0.0})
    assert kept(net)["fc3"] == 1000 and kept(net)["fc1"] == 117_600
    net = prune_network(create_network("lenet", seed=0),
                        rates={"fc": 0.1, "conv": 0.0, "output": 0.5})
    assert kept(net) == {"fc1": 211_680, "fc2": 27_000, "fc3": 500}


def test_global_pruning_on_resnet18() -> None:
    net = create_network("resnet18", seed=0)
    before = {n: m.weight.detach().clone() for n, m, _ in prunable_layers(net)}
    prune_network(net, scope="global")  # the paper's rate for resnet18: 20% of the 3x3 convs
    convs = [(n, m) for n, m, k in prunable_layers(net) if k == "conv"]
    others = [(n, m) for n, m, k in prunable_layers(net) if k != "conv"]
    assert sum(int((m.weight_mask == 0).sum()) for _, m in convs) == round(0.2 * 267_696)
    pruned = torch.cat([m.weight_orig[m.weight_mask == 0].abs() for _, m in convs])
    survivors = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for _, m in convs])
    assert pruned.max() <= survivors.min()  # one threshold across layers
    per_layer = [float((m.weight_mask == 0).float().mean()) for _, m in convs]
    assert max(per_layer) - min(per_layer) > 0.05  # ...so layers lose different shares
    for name, module in others:  # shortcuts and fc untouched
        assert not hasattr(module, "weight_mask"), name
        assert torch.equal(module.weight, before[name])
    assert remaining_fraction(net) == pytest.approx((270_896 - 53_539) / 270_896)
    prune_network(net, 0.2, scope="global")
    assert sum(int((m.weight_mask == 0).sum()) for _, m in convs) == 53_539 + round(
        0.2 * (267_696 - 53_539))


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_random_pruning_hits_the_rate_and_is_seeded(scope: str) -> None:
    def pruned(seed: int) -> dict[str, torch.Tensor]:
        net = create_network("conv2", seed=0)
        gen = torch.Generator().manual_seed(seed)
        prune_network(net, 0.4, scope=scope, method="random", generator=gen)
        return get_masks(net)

    a, b, c = pruned(1), pruned(1), pruned(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    net = create_network("conv2", seed=0)
    sizes = {n: m.weight.numel() for n, m, _ in prunable_layers(net)}
    removed = {k: sizes[k] - int(a[k].sum()) for k in a}
    if scope == "layerwise":
        rates = {"features.0": 0.4, "features.2": 0.4, "fc1": 0.4, "fc2": 0.4, "fc3": 0.2}
        assert removed == {k: round(r * sizes[k]) for k, r in rates.items()}
    else:
        assert removed["features.0"] + removed["features.2"] == round(0.4 * (1728 + 36_864))
        assert removed["fc1"] == removed["fc2"] == removed["fc3"] == 0
    l1 = get_masks(prune_network(create_network("conv2", seed=0), 0.4, scope=scope))
    assert not torch.equal(a["features.2"], l1["features.2"])


def test_random_pruning_iterates_on_remaining() -> None:
    net = create_network("lenet", seed=0)
    gen = torch.Generator().manual_seed(0)
    prune_network(net, 0.5, method="random", generator=gen)
    first = get_masks(net)
    prune_network(net, 0.5, method="random", generator=gen)
    assert all(bool((get_masks(net)[k] <= first[k]).all()) for k in first)
    assert kept(net)["fc1"] == 235_200 - 117_600 - 58_800


def test_copy_mask_moves_only_masks() -> None:
    src = prune_network(create_network("lenet", seed=0), 0.3)
    dst = create_network("lenet", seed=1)
    old = {n: m.weight.detach().clone() for n, m, _ in prunable_layers(dst)}
    assert copy_mask(src, dst) is dst
    src_masks = get_masks(src)
    for name, module, _ in prunable_layers(dst):
        assert torch.equal(module.weight_orig, old[name])
        assert torch.equal(module.weight_mask, src_masks[name])
        assert torch.equal(module.weight, old[name] * src_masks[name])
        assert bool((module.weight[src_masks[name] == 0] == 0).all())
    assert kept_params(dst) == kept_params(src) == 186_900  # the assignment's 7.4(f) number
    assert not torch.equal(src.fc1.weight, dst.fc1.weight)


def test_copy_mask_replaces_a_previous_mask() -> None:
    dst = prune_network(create_network("lenet", seed=1), 0.9)
    src = prune_network(create_network("lenet", seed=0), 0.2)
    copy_mask(src, dst)
    assert kept(dst) == kept(src)


def test_torch_pruned_net_interoperates() -> None:
    net = create_network("lenet", seed=0)
    prune.l1_unstructured(net.fc1, "weight", amount=0.3)  # by hand, with torch
    masks = get_masks(net)
    assert torch.equal(masks["fc1"], net.fc1.weight_mask)
    assert int(masks["fc2"].sum()) == 30_000  # unpruned layer: all ones
    assert remaining_fraction(net) == pytest.approx((266_200 - 70_560) / 266_200)
    dst = copy_mask(net, create_network("lenet", seed=1))
    assert torch.equal(dst.fc1.weight_mask, net.fc1.weight_mask)
    prune_network(net, 0.5)  # on top of torch's container: half of the remaining
    assert kept(net)["fc1"] == 164_640 - 82_320
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)  # forward through torch's hook
    assert torch.equal(net.fc1.weight, net.fc1.weight_orig * net.fc1.weight_mask)
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)  # torch on top of ours
    assert kept(net)["fc1"] == 41_160
    prune.remove(net.fc1, "weight")  # and torch can make it permanent
    assert int(torch.count_nonzero(net.fc1.weight)) == 41_160
    assert kept(net)["fc1"] == 235_200  # no mask any more


def test_random_masks_keep_per_layer_counts() -> None:
    net = prune_network(create_network("conv2", seed=0), 0.6)
    a = random_masks(net, torch.Generator().manual_seed(0))
    b = random_masks(net, torch.Generator().manual_seed(0))
    assert {k: int(v.sum()) for k, v in a.items()} == kept(net)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1"], get_masks(net)["fc1"])
    fresh = apply_masks(create_network("conv2", seed=9), a)
    assert kept(fresh) == kept(net)


def test_reset_to_keeps_masks() -> None:
    net = create_network("lenet", seed=0)
    theta0 = plain_state(net)
    with torch.no_grad():  # "training"
        for p in net.parameters():
            p.add_(1.0)
    prune_network(net, 0.5)
    masks = get_masks(net)
    assert reset_to(net, theta0) is net
    assert all(torch.equal(get_masks(net)[k], masks[k]) for k in masks)
    assert torch.equal(net.fc1.weight_orig, theta0["fc1.weight"])
    assert torch.equal(net.fc1.bias, theta0["fc1.bias"])
    assert torch.equal(net.fc1.weight, theta0["fc1.weight"] * masks["fc1"])
    with pytest.raises(ValueError, match="'conv9.weight'"):
        reset_to(net, {**theta0, "conv9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="fc2.bias"):
        reset_to(net, {k: v for k, v in theta0.items() if k != "fc2.bias"})


@pytest.mark.parametrize("arch", ["lenet", "resnet18"])
def test_plain_state_loads_into_an_unpruned_net(arch: str) -> None:
    net = create_network(arch, seed=0)
    prune_network(net, 0.5, scope="global" if arch == "resnet18" else "layerwise")
    state = plain_state(net)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    plain = create_network(arch, seed=1)
    plain.load_state_dict(state)
    x = torch.rand(4, *((1, 28, 28) if arch == "lenet" else (3, 32, 32)))
    net.eval(), plain.eval()
    assert torch.equal(net(x), plain(x))
    with torch.no_grad():  # a copy, not a view
        net.get_submodule(prunable_layers(net)[0][0]).weight_orig.add_(1.0)
    assert not torch.equal(plain_state(net)[prunable_layers(net)[0][0] + ".weight"],
                           state[prunable_layers(net)[0][0] + ".weight"])


def make_optimizer(kind: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_pruned_weights_stay_zero_through_training_and_save_load(opt: str) -> None:
    net = create_network("lenet", seed=0)
    optimizer = make_optimizer(opt, list(net.parameters()))  # made before pruning: still valid
    prune_network(net, 0.5)
    masks = get_masks(net)
    gen = torch.Generator().manual_seed(0)
    start = net.fc1.weight_orig.detach().clone()
    for _ in range(20):
        x, y = torch.rand(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    assert not torch.equal(net.fc1.weight_orig[masks["fc1"] == 1], start[masks["fc1"] == 1])
    net(torch.rand(1, 1, 28, 28))  # refresh the effective weights
    for name, module, _ in prunable_layers(net):
        assert bool((module.weight[masks[name] == 0] == 0).all()), name
        assert bool((plain_state(net)[name + ".weight"][masks[name] == 0] == 0).all())

    buffer = io.BytesIO()
    torch.save({"state": plain_state(net), "masks": get_masks(net)}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    restored = create_network("lenet", seed=5)
    restored.load_state_dict(saved["state"])
    apply_masks(restored, saved["masks"])
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(restored(x), net(x))
    assert all(torch.equal(get_masks(restored)[k], masks[k]) for k in masks)
    twin = apply_masks(create_network("lenet", seed=6), get_masks(net))
    twin.load_state_dict(net.state_dict())  # torch's own pruned state dict round trip
    assert torch.equal(twin(x), net(x))


def test_bad_inputs_name_the_allowed_values() -> None:
    net = create_network("lenet", seed=0)
    for amount in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match=rf"amount.*\[0, 1\).*{amount!r}"):
            prune_network(net, amount)
    with pytest.raises(ValueError, match=r"'local'.*layerwise, global"):
        prune_network(net, 0.2, scope="local")
    with pytest.raises(ValueError, match=r"'magnitude'.*l1, random"):
        prune_network(net, 0.2, method="magnitude")
    with pytest.raises(ValueError, match=r"'bias'.*fc, conv, output"):
        prune_network(net, 0.2, rates={"bias": 0.1})
    with pytest.raises(ValueError, match=r"rates\['fc'\].*1.5"):
        prune_network(net, rates={"fc": 1.5})
    with pytest.raises(ValueError, match=r"'alexnet'.*lenet"):
        prune_network(net, arch="alexnet")
    with pytest.raises(ValueError, match=r"global.*LeNet.*layerwise"):
        prune_network(net, 0.2, scope="global")
    with pytest.raises(ValueError, match=r"Sequential.*arch="):
        prune_network(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"src is lenet.*dst is mlp"):
        copy_mask(net, create_network("mlp", seed=0))
    with pytest.raises(ValueError, match=r"'fc9'.*fc1, fc2, fc3"):
        apply_masks(net, {"fc9": torch.ones(1)})
    with pytest.raises(ValueError, match=r"\(300, 784\)"):
        apply_masks(net, {"fc1": torch.ones(3)})
    with pytest.raises(ValueError, match=r"0 and 1"):
        apply_masks(net, {"fc3": torch.full((10, 100), 0.5)})
    assert not any(hasattr(m, "weight_mask") for _, m, _ in prunable_layers(net))


# --- prune_network(net) with no arguments: the paper's method per architecture -----------------

def test_no_argument_pruning_is_the_papers_global_method_on_resnet18_and_vgg19() -> None:
    """The paper prunes ResNet-18 and VGG-19 with one threshold over all 3x3 convolutions at
    20% (Section 4); a layer-by-layer 20% would leave every conv layer at exactly 80%."""
    for arch in ("resnet18", "vgg19"):
        net, ref = create_network(arch, seed=0), create_network(arch, seed=0)
        prune_network(net)
        prune_network(ref, scope="global", rates={"fc": 0.0, "conv": 0.2, "output": 0.0})
        masks, expected = get_masks(net), get_masks(ref)
        assert all(torch.equal(masks[k], expected[k]) for k in expected), arch
        convs = [m for _, m, k in prunable_layers(net) if k == "conv"]
        shares = [float((m.weight_mask == 0).float().mean()) for m in convs]
        assert max(shares) - min(shares) > 0.05, arch  # one threshold, uneven per layer
        total = sum(m.weight.numel() for m in convs)
        assert sum(int((m.weight_mask == 0).sum()) for m in convs) == round(0.2 * total)
        for name, module, kind in prunable_layers(net):
            if kind != "conv":  # fc and 1x1 shortcuts are not pruned
                assert not hasattr(module, "weight_mask"), (arch, name)


@pytest.mark.parametrize(("arch", "rates"), [
    ("lenet", {"fc": 0.2, "output": 0.1}), ("mlp", {"fc": 0.2, "output": 0.1}),
    ("conv2", {"conv": 0.1, "fc": 0.2, "output": 0.1}),
    ("conv6", {"conv": 0.15, "fc": 0.2, "output": 0.1})])
def test_no_argument_pruning_is_layerwise_at_the_papers_rates(arch, rates) -> None:
    net = prune_network(create_network(arch, seed=0))
    for name, module, kind in prunable_layers(net):
        share = float((module.weight_mask == 0).float().mean())
        assert share == pytest.approx(rates[kind], abs=1 / module.weight.numel()), name


def test_explicit_amount_keeps_layerwise_scope_on_resnet18() -> None:
    """An explicit amount without a scope stays layer-wise (the assignment's check)."""
    net = prune_network(create_network("resnet18", seed=0), 0.5)
    for name, module, kind in prunable_layers(net):
        if kind == "conv":
            assert float((module.weight_mask == 0).float().mean()) == pytest.approx(
                0.5, abs=1 / module.weight.numel()), name

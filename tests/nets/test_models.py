"""Networks: the paper's sizes, seeded Glorot init, shapes, layer kinds, bad inputs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lthlib.config.paper import ARCHS
from lthlib.nets.paper_networks import ARCH_SPECS, create_network, prunable_layers

# Parameters (weights + biases + BN) at the default input shape. lenet/conv2/conv4 are the
# assignment's printed counts; the others follow from the layer lists (see models.py).
PARAMS = {"lenet": 266_610, "conv2": 4_301_642, "conv4": 2_425_930, "conv6": 2_262_602,
          "resnet18": 272_474, "vgg19": 20_035_018, "mlp": 238_314}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def weights_by_kind(net: nn.Module) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, module, kind in prunable_layers(net):
        out[kind] = out.get(kind, 0) + module.weight.numel()
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_and_weight_counts(arch: str) -> None:
    net = create_network(arch)
    assert n_params(net) == PARAMS[arch]
    assert sum(weights_by_kind(net).values()) == ARCH_SPECS[arch].weights


def test_paper_weight_counts() -> None:
    assert ARCH_SPECS["lenet"].weights == 266_200
    assert weights_by_kind(create_network("resnet18")) == {
        "conv": 267_696, "shortcut": 2_560, "output": 640}
    assert sum(weights_by_kind(create_network("vgg19")).values()) == 20_024_000
    assert weights_by_kind(create_network("conv6"))["conv"] == 1_144_512


def test_lenet_layout() -> None:
    net = create_network("LeNet")
    first = list(net.children())[0]
    assert first is net.fc1 and (first.in_features, first.out_features) == (784, 300)
    assert [(n, k) for n, _, k in prunable_layers(net)] == [
        ("fc1", "fc"), ("fc2", "fc"), ("fc3", "output")]


def test_layer_kinds() -> None:
    kinds = [k for _, _, k in prunable_layers(create_network("conv4"))]
    assert kinds == ["conv"] * 4 + ["fc", "fc", "output"]
    resnet = prunable_layers(create_network("resnet18"))
    assert [n for n, _, k in resnet if k == "shortcut"] == [
        "layer2.0.shortcut.0", "layer3.0.shortcut.0"]
    assert resnet[-1][0] == "fc" and resnet[-1][2] == "output"
    assert sum(k == "conv" for _, _, k in prunable_layers(create_network("vgg19"))) == 16


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes(arch: str) -> None:
    net = create_network(arch, num_classes=7, seed=0).eval()
    shape = ARCH_SPECS[arch].in_shape
    assert net(torch.rand(2, *shape)).shape == (2, 7)


def test_other_input_shapes() -> None:
    conv2 = create_network("conv2", in_shape=(1, 28, 28))
    assert conv2(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    lenet = create_network("lenet", in_shape=(3, 32, 32))
    assert lenet.fc1.in_features == 3072 and lenet(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    resnet = create_network("resnet18", in_shape=(1, 28, 28))
    assert resnet(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["lenet", "conv2", "resnet18"])
def test_seeded_init_is_deterministic_and_isolated(arch: str) -> None:
    rng_before = torch.get_rng_state()
    a = create_network(arch, seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), rng_before), "global RNG must stay untouched"
    torch.manual_seed(12345)  # the global RNG must not matter
    b = create_network(arch, seed=3).state_dict()
    c = create_network(arch, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert all(not torch.equal(a[k], c[k]) for k in weights)


def test_unseeded_init_follows_global_rng() -> None:
    torch.manual_seed(0)
    a = create_network("lenet").fc1.weight
    torch.manual_seed(0)
    assert torch.equal(a, create_network("lenet").fc1.weight)


def test_old_torch_fallback_gives_same_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch < 2.2 has no generator= in nn.init: the seeded fallback must agree."""
    new = create_network("conv2", seed=5).state_dict()
    original = nn.init.xavier_normal_

    def old_signature(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return original(tensor, gain)

    monkeypatch.setattr(nn.init, "xavier_normal_", old_signature)
    rng_before = torch.get_rng_state()
    old = create_network("conv2", seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(torch.equal(new[k], old[k]) for k in new)


def test_gaussian_glorot_init() -> None:
    net = create_network("lenet", seed=0)
    w = net.fc1.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (784 + 300)), rel=0.02)
    assert abs(w.mean().item()) < 1e-3
    assert all(torch.count_nonzero(m.bias) == 0 for m in (net.fc1, net.fc2, net.fc3))
    conv = create_network("conv2", seed=0).features[0]
    fan_in, fan_out = 3 * 9, 64 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)
    bn = create_network("resnet18", seed=0).bn1
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))


def test_bad_inputs_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"'resnet50'.*lenet.*vgg19"):
        create_network("resnet50")
    with pytest.raises(ValueError, match=r"in_shape"):
        create_network("lenet", in_shape=(28, 28))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_classes"):
        create_network("lenet", num_classes=0)
    with pytest.raises(ValueError, match=r"too small"):
        create_network("conv6", in_shape=(3, 4, 4))


@pytest.mark.parametrize("arch", ["resnet18-torchvision", "vgg19-torchvision"])
def test_torchvision_networks_for_28x28(arch: str) -> None:
    """The assignment's torchvision counts (3 channels) and ours (1x28x28), both computed
    from torchvision here, are the ones the module documents."""
    from lthlib.nets.torchvision_nets import TORCHVISION_SPECS
    from lthlib.nets.torchvision_nets import parameter_counts

    counts = parameter_counts()[arch]
    spec = TORCHVISION_SPECS[arch]
    assert counts["torchvision_3_channel"] == spec.reference_params
    assert counts["ours_1x28x28"] == spec.params
    assert {"resnet18-torchvision": 11_181_642, "vgg19-torchvision": 139_611_210}[arch] == \
        spec.reference_params
    net = create_network(arch.upper(), seed=3)
    assert net.arch == arch and n_params(net) == spec.params
    again = create_network(arch, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  again.state_dict().values()))
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert prunable_layers(net)[-1][2] == "output"


def test_unknown_network_names_the_torchvision_ones() -> None:
    with pytest.raises(ValueError, match="resnet18-torchvision"):
        create_network("resnet50-torchvision")

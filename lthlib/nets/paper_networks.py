"""The paper's networks (Figure 2 of arXiv:1803.03635 v5) and the list of their prunable layers.

Every network takes ``(N, C, H, W)`` float input (fully-connected nets flatten inside
``forward``) and is initialised with Gaussian Glorot, the paper's initialisation for all of its
networks. Each instance carries ``net.arch`` so pruning can find the paper's rates for it.

Weight counts (Linear + Conv weights, no biases/BatchNorm) at the default input shape:

=========  ===================================================  ==============  ============
arch       layers                                               paper (table)   ours
=========  ===================================================  ==============  ============
lenet      fc 300, 100, 10                                      266K            266,200
conv2      conv 64,64, pool; fc 256,256,10                      4.3M            4,300,992
conv4      conv 64,64,pool,128,128,pool; fc 256,256,10          2.4M            2,425,024
conv6      conv 64,64,pool,128,128,pool,256,256,pool; fc ...    1.7M (sic)      2,261,184
resnet18   conv 16, 3x[16,16], 3x[32,32], 3x[64,64], fc 10      274K / 271,000  270,896
vgg19      2x64 M 2x128 M 4x256 M 4x512 M 4x512, avg, fc 10     20.0M           20,024,000
mlp        fc 256, 128, 32, 10 (FashionMNIST notebook)          (not in paper)  237,888
=========  ===================================================  ==============  ============

The assignment also names torchvision's ``resnet18`` (11,181,642 parameters for 3 channels)
and ``vgg19`` (139,611,210): ``create_network("resnet18-torchvision")`` and
``"vgg19-torchvision"`` build them for 1x28x28 inputs (:mod:`lthlib.nets.torchvision_nets` says
what changes: 11,172,810 and 139,610,058 parameters).

Conv-6's printed 1.7M does not follow from its layer list with 3x3 'same' convolutions; the
count above does (its conv part, 1,144,512, matches the paper's "1.1M conv").
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lthlib.config.paper import ARCHS, check_choice
from lthlib.nets.torchvision_nets import TORCHVISION_ARCHS, TORCHVISION_SPECS, build_torchvision

__all__ = ["ARCH_SPECS", "ArchSpec", "create_network", "prunable_layers", "count_weights",
           "LeNet", "MLP", "ConvNet", "CifarResNet", "VGG", "TORCHVISION_ARCHS",
           "TORCHVISION_SPECS"]


@dataclass(frozen=True)
class ArchSpec:
    """What the paper says about one network, next to what this module builds."""

    paper_name: str
    layers: str
    paper_weights: str  # as printed in the paper
    weights: int  # Linear + Conv weights of create_network(name) at in_shape
    in_shape: tuple[int, int, int]


ARCH_SPECS: Mapping[str, ArchSpec] = MappingProxyType({
    "lenet": ArchSpec("Lenet", "fc 300, 100, 10", "266K", 266_200, (1, 28, 28)),
    "conv2": ArchSpec("Conv-2", "conv 64,64, pool; fc 256,256,10", "4.3M", 4_300_992,
                      (3, 32, 32)),
    "conv4": ArchSpec("Conv-4", "conv 64,64,pool,128,128,pool; fc 256,256,10", "2.4M",
                      2_425_024, (3, 32, 32)),
    "conv6": ArchSpec("Conv-6", "conv 64,64,pool,128,128,pool,256,256,pool; fc 256,256,10",
                      "1.7M", 2_261_184, (3, 32, 32)),
    "resnet18": ArchSpec("Resnet-18", "conv 16, 3x[16,16], 3x[32,32], 3x[64,64], avg, fc 10",
                         "274K (table) / 271,000 (Section 4)", 270_896, (3, 32, 32)),
    "vgg19": ArchSpec("VGG-19", "2x64 pool 2x128 pool 4x256 pool 4x512 pool 4x512, avg, fc 10",
                      "20.0M", 20_024_000, (3, 32, 32)),
    "mlp": ArchSpec("MLP (not in the paper)", "fc 256, 128, 32, 10", "-", 237_888, (1, 28, 28)),
})

_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512)


def _flat_input(net: nn.Module, x: Tensor) -> Tensor:
    """``x`` flattened per example, after checking it has as many values as ``fc1`` takes,
    so a wrong input shape names the network's ``in_shape`` instead of a matmul error."""
    want = net.fc1.in_features
    if x.dim() < 2 or math.prod(x.shape[1:]) != want:
        shape = getattr(net, "in_shape", None)
        built = f"in_shape={shape}" if shape else f"{want} input values"
        raise ValueError(f"{net.arch} got input of shape {tuple(x.shape)}; allowed: (N, C, H, "
                         f"W) with C*H*W = {want} (it was built for {built}; pass in_shape= "
                         f"to create_network for other inputs)")
    return x.flatten(1)


class LeNet(nn.Module):
    """LeNet-300-100; ``list(net.children())[0]`` is ``fc1`` (the assignment prints it)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.arch = "lenet"
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.fc1(_flat_input(self, x)))
        return self.fc3(F.relu(self.fc2(x)))


class MLP(nn.Module):
    """784-256-128-32-10 ReLU network of the FashionMNIST notebook (not in the paper)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.arch = "mlp"
        self.fc1 = nn.Linear(in_features, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 32)
        self.fc4 = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.fc1(_flat_input(self, x)))
        x = F.relu(self.fc2(x))
        return self.fc4(F.relu(self.fc3(x)))


class ConvNet(nn.Module):
    """Conv-2/4/6: pairs of 3x3 'same' convs (64, 128, 256) each followed by a 2x2 max-pool,
    then fc 256, 256, classes. 'Same' padding is what reproduces the assignment's counts."""

    def __init__(self, depth: int, in_shape: tuple[int, int, int] = (3, 32, 32),
                 num_classes: int = 10) -> None:
        super().__init__()
        if depth not in (2, 4, 6):
            raise ValueError(f"ConvNet depth must be one of 2, 4, 6, got {depth!r}")
        self.arch = f"conv{depth}"
        channels, height, width = in_shape
        layers: list[nn.Module] = []
        for width_out in (64, 128, 256)[: depth // 2]:
            layers += [nn.Conv2d(channels, width_out, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(width_out, width_out, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels, height, width = width_out, height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"in_shape {in_shape} is too small for conv{depth}")
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * height * width, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN pairs with a residual; 1x1 conv+BN shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The paper's "Resnet-18": He et al.'s CIFAR ResNet (ResNet-20 shape), 16-32-64 channels.

    Convs have no bias because BatchNorm follows each of them.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.arch = "resnet18"
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64), start=1):
            blocks = [BasicBlock(c_in if i == 0 else c_out, c_out,
                                 2 if (i == 0 and stage > 1) else 1) for i in range(3)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            c_in = c_out
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VGG(nn.Module):
    """CIFAR VGG-19: 3x3 conv+BN+ReLU stacks, global average pool, one fc layer.

    Convs have no bias (BatchNorm follows), so conv+fc weights are the paper's 20,024,000.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.arch = "vgg19"
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in _VGG19:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c_out = int(item)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _init_weights(net: nn.Module, seed: int | None) -> None:
    """Gaussian Glorot for every Linear/Conv weight, zero biases, BatchNorm at (1, 0).

    Call with a seed only inside ``fork_rng``: torch < 2.2 has no ``generator=`` in
    ``nn.init``, so there the (forked) global RNG is seeded instead.
    """
    generator = None
    if seed is not None:
        if "generator" in inspect.signature(nn.init.xavier_normal_).parameters:
            generator = torch.Generator().manual_seed(seed)
        else:
            torch.manual_seed(seed)
    kwargs = {} if generator is None else {"generator": generator}
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_normal_(module.weight, **kwargs)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def _build(arch: str, num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
    channels = in_shape[0]
    if arch in ("lenet", "mlp"):
        cls = LeNet if arch == "lenet" else MLP
        net = cls(math.prod(in_shape), num_classes)
        net.in_shape = tuple(in_shape)
        return net
    if arch.startswith("conv"):
        return ConvNet(int(arch[4:]), in_shape, num_classes)
    if arch == "resnet18":
        return CifarResNet(channels, num_classes)
    if min(in_shape[1:]) < 16:
        raise ValueError(f"vgg19 needs inputs of at least 16x16 (4 pools), got {in_shape}")
    return VGG(channels, num_classes)


def create_network(name: str, num_classes: int = 10,
                   in_shape: tuple[int, int, int] | None = None,
                   seed: int | None = None) -> nn.Module:
    """Build one of ``config.ARCHS`` (case-insensitive) with Gaussian Glorot init, or one of
    ``TORCHVISION_ARCHS`` (torchvision's model and init, for ``in_shape`` (C, 28, 28)).

    With ``seed``, the weights depend on the seed only: construction runs under a forked global
    RNG (left untouched) and init draws from a local generator.
    """
    arch = check_choice("network", name, ARCHS + TORCHVISION_ARCHS)
    if arch in TORCHVISION_ARCHS:
        channels = 1 if in_shape is None else int(in_shape[0])
        if int(num_classes) < 1 or channels < 1:
            raise ValueError(f"num_classes and in_shape channels must be >= 1, got "
                             f"{num_classes} and {channels}")
        return build_torchvision(arch, int(num_classes), channels, seed)
    if in_shape is None:
        in_shape = (1, 28, 28) if arch in ("lenet", "mlp") else (3, 32, 32)
    in_shape = tuple(int(s) for s in in_shape)  # type: ignore[assignment]
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (channels, height, width) > 0, got {in_shape}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if seed is None:
        net = _build(arch, int(num_classes), in_shape)
        _init_weights(net, None)
        return net
    with torch.random.fork_rng(devices=[]):
        net = _build(arch, int(num_classes), in_shape)
        _init_weights(net, int(seed))
    return net


def prunable_layers(net: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(qualified name, module, kind)`` for every Linear/Conv2d, in module order.

    kind: "output" for the last Linear, "fc" for other Linears, "shortcut" for a conv inside a
    module named ``shortcut`` (ResNet's 1x1 projections), "conv" for every other conv. Layer-wise
    pruning rates are per kind; global pruning uses "conv" only.
    """
    found: list[tuple[str, nn.Module, str]] = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found.append((name, module, "fc"))
        elif isinstance(module, nn.Conv2d):
            kind = "shortcut" if "shortcut" in name.split(".") else "conv"
            found.append((name, module, kind))
    linear = [i for i, (_, module, _) in enumerate(found) if isinstance(module, nn.Linear)]
    if linear:
        name, module, _ = found[linear[-1]]
        found[linear[-1]] = (name, module, "output")
    return found


def count_weights(net: nn.Module) -> int:
    """Number of Linear + Conv weights (the paper's |θ|), pruned or not."""
    return sum(module.weight.numel() for _, module, _ in prunable_layers(net))

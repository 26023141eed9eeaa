"""torchvision's ResNet-18 and VGG-19, the networks the assignment names, for 1x28x28 inputs.

The assignment quotes torchvision's counts for 3-channel inputs and 10 classes:
``resnet18(num_classes=10)`` has 11,181,642 parameters and ``vgg19(num_classes=10)``
139,611,210. For MNIST-like 1x28x28 inputs two changes are needed, and nothing else is
touched (torchvision's layers and its own initialisation):

* ``resnet18-torchvision``: the stem's 7x7 stride-2 convolution on 3 channels (9,408
  weights) becomes a 3x3 stride-1 convolution on 1 channel (576 weights) and the stem's
  max-pool is dropped, the usual adaptation for small images (28x28 would otherwise reach
  the last stage at 1x1); 8,832 parameters fewer.
* ``vgg19-torchvision``: the first convolution takes 1 channel (576 weights instead of
  1,728) and the fifth max-pool is dropped (four pools take 28x28 to 1x1, a fifth would
  leave nothing); the classifier (25,088 -> 4,096 -> 4,096 -> 10) is unchanged, fed by
  torchvision's adaptive 7x7 average pool; 1,152 parameters fewer.

``TORCHVISION_SPECS`` holds both counts; ``tests/nets/test_models.py`` computes them from
torchvision and checks them (:func:`parameter_counts`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

__all__ = ["TORCHVISION_ARCHS", "TORCHVISION_SPECS", "TorchvisionSpec", "build_torchvision",
           "parameter_counts"]


@dataclass(frozen=True)
class TorchvisionSpec:
    """torchvision's count for 3x224 inputs (the assignment's) and ours for 1x28x28."""

    reference_params: int  # torchvision's model with num_classes=10, 3 input channels
    params: int  # the 1x28x28 adaptation built here
    change: str


TORCHVISION_SPECS: Mapping[str, TorchvisionSpec] = MappingProxyType({
    "resnet18-torchvision": TorchvisionSpec(
        11_181_642, 11_172_810, "stem: 3x3 stride-1 conv on 1 channel, no max-pool"),
    "vgg19-torchvision": TorchvisionSpec(
        139_611_210, 139_610_058, "first conv on 1 channel, fifth max-pool dropped"),
})
TORCHVISION_ARCHS = tuple(TORCHVISION_SPECS)


def _tv() -> Any:
    """torchvision.models, imported when first needed: it adds about 1.4 s to every
    ``import lthlib`` otherwise (as lthlib.data.datasets imports torchvision's transforms)."""
    from torchvision import models

    return models


def _resnet18(in_channels: int, num_classes: int) -> nn.Module:
    net = _tv().resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    return net


def _vgg19(in_channels: int, num_classes: int) -> nn.Module:
    net = _tv().vgg19(num_classes=num_classes)
    first = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    nn.init.kaiming_normal_(first.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(first.bias)
    layers = list(net.features)
    if not isinstance(layers[-1], nn.MaxPool2d):
        raise RuntimeError("torchvision's vgg19 no longer ends its features with a max-pool")
    net.features = nn.Sequential(first, *layers[1:-1])
    return net


def build_torchvision(arch: str, num_classes: int = 10, in_channels: int = 1,
                      seed: int | None = None) -> nn.Module:
    """torchvision's network adapted to small inputs, initialised by torchvision (seeded
    through a forked global RNG when ``seed`` is given). ``net.arch`` names it."""
    builders = {"resnet18-torchvision": _resnet18, "vgg19-torchvision": _vgg19}
    if arch not in builders:
        raise ValueError(f"unknown torchvision network {arch!r}; allowed: "
                         f"{', '.join(builders)}")
    if seed is None:
        net = builders[arch](in_channels, num_classes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = builders[arch](in_channels, num_classes)
    net.arch = arch
    return net


def parameter_counts() -> dict[str, dict[str, int]]:
    """Computed now: torchvision's 3-channel counts and the 1x28x28 adaptations'."""
    tv = _tv()
    reference = {"resnet18-torchvision": tv.resnet18(num_classes=10),
                 "vgg19-torchvision": tv.vgg19(num_classes=10)}
    return {arch: {"torchvision_3_channel": sum(p.numel() for p in ref.parameters()),
                   "ours_1x28x28": sum(p.numel() for p in
                                       build_torchvision(arch).parameters())}
            for arch, ref in reference.items()}


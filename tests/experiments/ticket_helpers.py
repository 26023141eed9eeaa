"""A small network lthlib does not know and a synthetic dataset, shared by the find_ticket
and export tests and by the subprocess they kill."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset


class TinyNet(nn.Module):
    """Conv with bias, BatchNorm, a hidden linear layer and an output layer."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc1 = nn.Linear(width * 4 * 4, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1)
        return self.out(F.relu(self.fc1(x)))


def tiny_data(n: int = 240, seed: int = 0) -> TensorDataset:
    """1x8x8 inputs whose class follows their brightness, three classes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    y = (x.mean((1, 2, 3)) * 40).long() % 3
    return TensorDataset(x, y)


# the settings the tests share: SGD with momentum and weight decay, two IMP rounds
SETTINGS = dict(iterations=30, rounds=2, rate=0.5, eval_every=10, optimizer="sgd", lr=0.05,
                weight_decay=1e-2, batch_size=20)

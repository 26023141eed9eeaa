"""The paper's settings: one small frozen dataclass per concern, and the presets per network.

Every number here is the paper's (arXiv:1803.03635 v5, Figure 2 and Appendices) unless a
comment says otherwise. The names of what may be chosen (networks, datasets, experiments,
profiles) and the checks that refuse anything else live here too, at the bottom of the
layers, so every module can name the allowed values in its errors.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

ARCHS = ("lenet", "conv2", "conv4", "conv6", "resnet18", "vgg19", "mlp")
DATASETS = ("mnist", "fashionmnist", "cifar10")
OPTIMIZERS = ("adam", "sgd")
SCOPES = ("layerwise", "global")
METHODS = ("l1", "random")
EXPERIMENTS = ("oneshot", "imp", "random-sparse", "global-imp")
PROFILES = ("smoke", "mini", "quick", "converged-cpu", "paper")
PRECISIONS = ("fp32", "bf16")
# largest first: what the book prefers
PROFILE_ORDER = ("paper", "quick", "converged-cpu", "mini", "smoke")

# Bump when a change alters numbers produced for the same config: it is part of every
# run's identity, so old records are never reused for new code semantics.
RESULTS_VERSION = 1


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    """Normalise ``value`` (case-insensitive) or raise naming the allowed values."""
    norm = str(value).lower().replace("_", "-") if kind == "experiment" else str(value).lower()
    if norm not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return norm


def check_int(what: str, value: object, minimum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) and at least ``minimum``, else a ValueError
    naming the value and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer"
                         + (f" >= {minimum}" if minimum is not None else "")
                         + f", got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "lenet"
    num_classes: int = 10
    in_shape: tuple[int, int, int] = (1, 28, 28)  # (channels, height, width)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", check_choice("network", self.arch, ARCHS))
        object.__setattr__(self, "in_shape", tuple(self.in_shape))


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    val_size: int = 5000  # the paper holds out 5,000 training examples
    split_seed: int = 0  # seeds the validation draw; fixed across trials
    train_eval_size: int = 5000  # fixed training subset for "training accuracy" (our choice)
    augment: bool = False  # flips + 4-pixel pad/crop (the paper's ResNet/VGG setting)
    train_subset: int = 0  # 0 = all; else train on the first N examples of the train split
    eval_subset: int = 0  # 0 = all; else validate/test on the first N examples

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", check_choice("dataset", self.dataset, DATASETS))


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1.2e-3
    batch_size: int = 60
    iterations: int = 50_000
    eval_every: int = 100
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()  # iterations at which lr is multiplied by gamma
    gamma: float = 0.1
    warmup: int = 0  # linear warmup from 0 over this many iterations (0 = none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", check_choice("optimizer", self.optimizer, OPTIMIZERS))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.iterations < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"iterations, batch_size, eval_every must be >= 1: {self}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class PruneConfig:
    scope: str = "layerwise"
    method: str = "l1"
    fc_rate: float = 0.2
    conv_rate: float = 0.1
    output_rate: float = 0.1  # connections to the output: half the fc rate
    rounds: int = 18  # IMP rounds; 18 reaches Pm = 1.9% on LeNet

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", check_choice("scope", self.scope, SCOPES))
        object.__setattr__(self, "method", check_choice("method", self.method, METHODS))
        object.__setattr__(self, "rounds", check_int("rounds", self.rounds, 0))
        for name in ("fc_rate", "conv_rate", "output_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")

    def rates(self) -> dict[str, float]:
        return {"fc": self.fc_rate, "conv": self.conv_rate, "output": self.output_rate}


# --- the paper's settings ------------------------------------------------------------------

PAPER_TRAIN: dict[str, TrainConfig] = {
    "lenet": TrainConfig("adam", 1.2e-3, 60, 50_000),
    "conv2": TrainConfig("adam", 2e-4, 60, 20_000),
    "conv4": TrainConfig("adam", 3e-4, 60, 25_000),
    "conv6": TrainConfig("adam", 3e-4, 60, 30_000),
    # 0.1 -> 0.01 -> 0.001 for 20K, 5K, 5K iterations; no early stopping in Section 4.
    "resnet18": TrainConfig("sgd", 0.1, 128, 30_000, eval_every=1000, weight_decay=1e-4,
                            milestones=(20_000, 25_000)),
    # 160 epochs at batch 64; drops after epochs 80 and 120.
    "vgg19": TrainConfig("sgd", 0.1, 64, 112_000, eval_every=1000, weight_decay=1e-4,
                         milestones=(56_240, 84_360)),
    # The FashionMNIST notebook's MLP (appendix): Adam 1e-4, batch 128. Not in the paper.
    "mlp": TrainConfig("adam", 1e-4, 128, 10_000),
}

PAPER_PRUNE: dict[str, PruneConfig] = {
    "lenet": PruneConfig("layerwise", "l1", 0.2, 0.0, 0.1, 18),
    "conv2": PruneConfig("layerwise", "l1", 0.2, 0.1, 0.1, 20),
    "conv4": PruneConfig("layerwise", "l1", 0.2, 0.1, 0.1, 20),
    "conv6": PruneConfig("layerwise", "l1", 0.2, 0.15, 0.1, 20),
    # Global: 20% of the conv weights per round; fc (and ResNet's 1x1 shortcuts) untouched.
    "resnet18": PruneConfig("global", "l1", 0.0, 0.2, 0.0, 20),
    "vgg19": PruneConfig("global", "l1", 0.0, 0.2, 0.0, 20),
    "mlp": PruneConfig("layerwise", "l1", 0.2, 0.0, 0.1, 10),
}

# Figure 8's three learning-rate settings for ResNet-18 (Section 4).
RESNET_LR_SETTINGS: dict[str, dict[str, Any]] = {
    "lr0.1": {"lr": 0.1, "warmup": 0},
    "lr0.01": {"lr": 0.01, "warmup": 0},
    "lr0.03-warmup": {"lr": 0.03, "warmup": 20_000},
}

DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28), "fashionmnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def paper_model(arch: str, dataset: str) -> ModelConfig:
    return ModelConfig(arch, 10, DATASET_SHAPES[check_choice("dataset", dataset, DATASETS)])


def paper_train(arch: str) -> TrainConfig:
    return PAPER_TRAIN[check_choice("network", arch, ARCHS)]


def paper_prune(arch: str) -> PruneConfig:
    return PAPER_PRUNE[check_choice("network", arch, ARCHS)]

"""Configuration: one small frozen dataclass per concern, the paper's settings as presets.

Every number here is the paper's (arXiv:1803.03635 v5, Figure 2 and Appendices) unless a
comment says otherwise. Profiles (``smoke``, ``quick``, ``paper``) change only documented
knobs, and :func:`profile_deviations` lists every change so the book can print them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
from dataclasses import dataclass, field, replace
from typing import Any

from .device import default_device

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


# --- profiles ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """A named set of deviations from the paper; ``None`` keeps the paper's value."""

    name: str
    iterations_scale: float | None = None  # multiplies the paper's iteration budget
    max_iterations: int | None = None
    eval_every: int | None = None
    rounds: int | None = None  # IMP rounds
    train_eval_size: int | None = None
    train_subset: int | None = None  # train on the first N training examples only
    eval_subset: int | None = None  # evaluate on the first N val/test examples only
    # global pruning's rate per round (e.g. 0.36 = two of the paper's 20% rounds merged)
    global_rate: float | None = None
    precision: str | None = None  # "bf16": conv nets under bfloat16 autocast (resnet18)
    description: str = ""


PROFILE_PRESETS: dict[str, Profile] = {
    "paper": Profile("paper", description="exactly the paper's settings"),
    "quick": Profile("quick", iterations_scale=0.1,
                     description="a tenth of the paper's iterations: minutes per chart on a CPU"),
    "mini": Profile("mini", iterations_scale=0.01, eval_every=50, train_eval_size=1000,
                    eval_subset=2000,
                    description="a hundredth of the paper's iterations and 2,000 validation/"
                    "test examples: ResNet-18 on a CPU"),
    # ResNet-18 on a CPU: the smallest budget whose dense test accuracy (FashionMNIST, lr 0.1)
    # came within 1 pp of the 30-epoch plateau in runs/plateau/ (5 epochs of 429 iterations:
    # 92.52% against 93.31%), full validation/test sets, two of the paper's 20% global rounds
    # per round (5 rounds reach Pm 11.8%), bf16 autocast (lthlib.conv_engine)
    "converged-cpu": Profile("converged-cpu", max_iterations=2145, eval_every=429, rounds=5,
                             global_rate=0.36, precision="bf16",
                             description="ResNet-18 on a CPU: 5 epochs, within 1 pp of its "
                             "30-epoch plateau; 36% pruned per round; bf16"),
    "smoke": Profile("smoke", max_iterations=40, eval_every=10, rounds=2, train_eval_size=200,
                     train_subset=2000, eval_subset=500,
                     description="seconds, for tests: a few iterations on data slices"),
}


def get_profile(name: str) -> Profile:
    return PROFILE_PRESETS[check_choice("profile", name, PROFILES)]


def apply_profile(train: TrainConfig, prune: PruneConfig, data: DataConfig,
                  profile: str) -> tuple[TrainConfig, PruneConfig, DataConfig]:
    """Return the configs with the profile's deviations applied (schedules scale too)."""
    p = get_profile(profile)
    iters = train.iterations
    if p.iterations_scale is not None:
        iters = max(1, round(iters * p.iterations_scale))
    if p.max_iterations is not None:
        iters = min(iters, p.max_iterations)
    scale = iters / train.iterations
    train = replace(
        train, iterations=iters,
        eval_every=p.eval_every if p.eval_every is not None else train.eval_every,
        milestones=tuple(max(1, round(m * scale)) for m in train.milestones),
        warmup=round(train.warmup * scale))
    if p.rounds is not None:
        prune = replace(prune, rounds=p.rounds)
    if p.global_rate is not None and prune.scope == "global":
        prune = replace(prune, conv_rate=p.global_rate)
    if p.train_eval_size is not None:
        data = replace(data, train_eval_size=p.train_eval_size)
    if p.train_subset is not None:
        data = replace(data, train_subset=p.train_subset)
    if p.eval_subset is not None:
        data = replace(data, eval_subset=p.eval_subset)
    return train, prune, data


def profile_deviations(profile: str, arch: str = "lenet") -> list[str]:
    """Human-readable list of everything ``profile`` changes from the paper for ``arch``."""
    p = get_profile(profile)
    base_t, base_p = paper_train(arch), paper_prune(arch)
    t, pr, d = apply_profile(base_t, base_p, DataConfig(), profile)
    out = []
    if t.iterations != base_t.iterations:
        out.append(f"training budget {t.iterations:,} iterations instead of {base_t.iterations:,}"
                   + (" (learning-rate schedule scaled alike)" if base_t.milestones else ""))
    if t.eval_every != base_t.eval_every:
        out.append(f"evaluation every {t.eval_every} iterations instead of {base_t.eval_every}")
    if pr.rounds != base_p.rounds:
        out.append(f"{pr.rounds} pruning rounds instead of {base_p.rounds}")
    if d.train_eval_size != DataConfig().train_eval_size:
        out.append(f"training accuracy on {d.train_eval_size} examples instead of 5,000")
    if p.train_subset is not None:
        out.append(f"training on the first {p.train_subset:,} training examples only")
    if p.eval_subset is not None:
        out.append(f"validation/test on the first {p.eval_subset:,} examples only")
    if pr.conv_rate != base_p.conv_rate:
        out.append(f"{pr.conv_rate:.0%} of the conv weights pruned per round instead of "
                   f"{base_p.conv_rate:.0%} (levels at the sparsities of every other paper round)")
    if profile_precision(profile, arch) != "fp32":
        out.append(f"{profile_precision(profile, arch)} autocast instead of float32")
    return out


def profile_precision(profile: str, arch: str) -> str:
    """The precision ``profile`` trains ``arch`` with: its own for resnet18, else fp32."""
    p = get_profile(profile)
    return p.precision if p.precision is not None and arch == "resnet18" else "fp32"


# --- experiments and identity ---------------------------------------------------------------

@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines an experiment's numbers; its hash is the run identity."""

    experiment: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig
    profile: str = "paper"
    trials: int = 1
    seed: int = 0  # trial t uses seed + t for its init and batch order
    reinits: int = 1  # random re-initialisations per trial and level
    oneshot_targets: tuple[float, ...] = ()  # Pm targets (fractions) for one-shot runs
    lr_setting: str = ""  # Figure 8: which of RESNET_LR_SETTINGS (informational)
    results_version: int = RESULTS_VERSION
    # IMP late rewinding (Frankle et al. 2019, arXiv:1903.01611): survivors reset to their
    # values at this iteration of the dense run instead of θ0 (0 = the paper's θ0)
    rewind_iteration: int = 0
    # "bf16": conv nets train and evaluate under bfloat16 autocast (lthlib.conv_engine);
    # a change of numerics, so part of the hash; never the paper profile's
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiment",
                           check_choice("experiment", self.experiment, EXPERIMENTS))
        object.__setattr__(self, "profile", check_choice("profile", self.profile, PROFILES))
        object.__setattr__(self, "oneshot_targets", tuple(float(x) for x in self.oneshot_targets))
        for name, minimum in (("trials", 1), ("seed", 0), ("reinits", 0),
                              ("rewind_iteration", 0)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum))
        if self.rewind_iteration and (self.experiment not in ("imp", "global-imp")
                                      or self.rewind_iteration >= self.train.iterations):
            raise ValueError(f"rewind_iteration {self.rewind_iteration} is not allowed for "
                             f"{self.experiment} with {self.train.iterations} iterations; "
                             f"allowed: 0, or 1..{self.train.iterations - 1} for imp/global-imp")
        object.__setattr__(self, "precision", check_choice("precision", self.precision,
                                                            PRECISIONS))
        if self.precision != "fp32" and self.profile == "paper":
            raise ValueError(f"precision {self.precision!r} is a deviation the paper profile "
                             f"does not make; allowed there: fp32")
        if self.lr_setting != "" and self.lr_setting not in RESNET_LR_SETTINGS:
            raise ValueError(f"unknown lr setting {self.lr_setting!r}; allowed: '' (none), "
                             f"{', '.join(RESNET_LR_SETTINGS)}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data; fields added after trials were committed are left out
        at their default (:data:`HASH_NEUTRAL_DEFAULTS`), so those trials keep their hash."""
        d = dataclasses.asdict(self)
        for path, default in HASH_NEUTRAL_DEFAULTS.items():
            *outer, last = path
            node = d
            for key in outer:
                node = node[key]
            if last in node and node[last] == default:
                del node[last]
        return d

    def run_id(self) -> str:
        """sha256 of the canonical JSON of the whole config (first 12 hex digits)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def variant_id(self) -> str:
        """The run id without the seed: trials of one experiment share it."""
        return replace(self, seed=0).run_id()

    def seeds(self) -> list[int]:
        return [self.seed + t for t in range(self.trials)]

    def canonical(self) -> "ExperimentConfig":
        """The identity the store keeps this experiment under: global-imp always prunes with
        one global threshold, whatever scope the caller's config names."""
        if self.experiment == "global-imp" and self.prune.scope != "global":
            return replace(self, prune=replace(self.prune, scope="global"))
        return self

    def trial_configs(self) -> list["ExperimentConfig"]:
        """One single-trial config per trial: trial t has seed ``seed + t``."""
        return [replace(self, trials=1, seed=s) for s in self.seeds()]


# Fields added after trials were stored: left out of the hashed dict at these defaults.
HASH_NEUTRAL_DEFAULTS: dict[tuple[str, ...], Any] = {("rewind_iteration",): 0,
                                                     ("precision",): "fp32"}


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """Inverse of :meth:`ExperimentConfig.to_dict` (for reading records back)."""
    d = dict(d)
    d["model"] = ModelConfig(**d["model"])
    d["data"] = DataConfig(**d["data"])
    d["train"] = TrainConfig(**d["train"])
    d["prune"] = PruneConfig(**d["prune"])
    return ExperimentConfig(**d)


# Default one-shot targets (Pm as fractions): Figure 4c's range, plus the dense network.
ONESHOT_TARGETS = (1.0, 0.8, 0.64, 0.51, 0.41, 0.33, 0.26, 0.21, 0.168, 0.134, 0.107, 0.086,
                   0.069, 0.055, 0.044, 0.035, 0.028, 0.019)


def make_experiment(experiment: str, arch: str = "lenet", dataset: str = "mnist",
                    profile: str = "paper", trials: int = 1, seed: int = 0,
                    reinits: int | None = None, lr_setting: str | None = None,
                    rounds: int | None = None, **overrides: Any) -> ExperimentConfig:
    """Build an experiment at the paper's settings for ``arch`` with ``profile`` applied."""
    for what, value in (("experiment", experiment), ("arch", arch), ("dataset", dataset),
                        ("profile", profile)):
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    experiment = check_choice("experiment", experiment, EXPERIMENTS)
    arch = check_choice("network", arch, ARCHS)
    dataset = check_choice("dataset", dataset, DATASETS)
    check_int("trials", trials, 1)
    check_int("seed", seed, 0)
    if reinits is not None:
        check_int("reinits", reinits, 0)
    if rounds is not None:
        check_int("rounds", rounds, 1)
    train, prune = paper_train(arch), paper_prune(arch)
    data = DataConfig(dataset, augment=arch in ("resnet18", "vgg19") and dataset == "cifar10")
    if lr_setting:
        lr_setting = check_choice("lr setting", lr_setting, tuple(RESNET_LR_SETTINGS))
        if arch != "resnet18":
            raise ValueError(f"lr setting {lr_setting!r} is one of Figure 8's ResNet-18 "
                             f"settings, not for {arch!r}; allowed: arch 'resnet18', or no "
                             f"lr setting")
        train = replace(train, **RESNET_LR_SETTINGS[lr_setting])
    train, prune, data = apply_profile(train, prune, data, profile)
    if rounds is not None:
        prune = replace(prune, rounds=rounds)
    targets: tuple[float, ...] = ()
    if experiment in ("oneshot", "random-sparse"):
        targets = ONESHOT_TARGETS
        if profile == "smoke":
            targets = (1.0, 0.5, 0.2)
    cfg = ExperimentConfig(experiment, paper_model(arch, dataset), data, train, prune, profile,
                           trials, seed, 1 if reinits is None else reinits, targets,
                           lr_setting=lr_setting or "",
                           precision=profile_precision(profile, arch))
    return replace(cfg, **overrides) if overrides else cfg


# --- the chapters' papermill parameters ------------------------------------------------------

EXECUTORS = ("local", "ray")
# extra chapter parameters: name -> smallest allowed integer (None allowed where noted)
_CHAPTER_INTS: dict[str, int] = {"rerun_iterations": 1, "demo_iterations": 1,
                                 "lmc_points": 2, "first_seed": 0, "rewind_iteration": 0}
_CHAPTER_OPTIONAL_INTS: dict[str, int] = {"rounds": 1}


def check_chapter_params(profile: str = "auto", dataset: str = "mnist", trials: int = 0,
                         runs_dir: Any = None, device: Any = None, executor: str = "local",
                         **extra: Any) -> dict[str, Any]:
    """Check a chapter's papermill parameters before anything runs; return them normalised.

    A bad value (``-p trials -1``, ``-p profile fast``, ``-p device bogus``) stops the chapter
    in its first cell with one line naming the value and what is allowed, instead of being
    read as "auto" or failing deep inside a run. Extra parameters some chapters take
    (``rounds``, ``rerun_iterations``, ``demo_iterations``, ``lmc_points``, ``first_seed``,
    ``datasets``) are checked too; an unknown name is an error (a typo in ``-p`` would
    otherwise be ignored by papermill).
    """
    out: dict[str, Any] = {}
    if not isinstance(profile, str):
        raise ValueError(f"profile must be a string, got {type(profile).__name__} {profile!r}; "
                         f"allowed: auto, {', '.join(PROFILES)}")
    out["profile"] = ("auto" if profile.lower() == "auto"
                      else check_choice("profile", profile, ("auto",) + PROFILES))
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a string, got {type(dataset).__name__} "
                         f"{dataset!r}; allowed: {', '.join(DATASETS)}")
    out["dataset"] = check_choice("dataset", dataset, DATASETS)
    out["trials"] = check_int("trials (0 = as many as runs/ holds)", trials, 0)
    if runs_dir is not None:
        if not isinstance(runs_dir, (str, os.PathLike)) or str(runs_dir) == "":
            raise ValueError(f"runs_dir must be a folder path or None, got "
                             f"{type(runs_dir).__name__} {runs_dir!r}")
        if os.path.exists(runs_dir) and not os.path.isdir(runs_dir):
            raise ValueError(f"runs_dir {str(runs_dir)!r} is a file; allowed: a folder "
                             f"(created if missing) or None")
    out["runs_dir"] = runs_dir
    if device is not None:
        if not isinstance(device, str):
            raise ValueError(f"device must be a string or None, got {type(device).__name__} "
                             f"{device!r}; allowed: cpu, cuda, cuda:<index>")
        default_device(device)  # raises naming the device and what is allowed
    out["device"] = device
    if not isinstance(executor, str):
        raise ValueError(f"executor must be a string, got {type(executor).__name__} "
                         f"{executor!r}; allowed: {', '.join(EXECUTORS)}")
    out["executor"] = check_choice("executor", executor, EXECUTORS)
    allowed = sorted([*_CHAPTER_INTS, *_CHAPTER_OPTIONAL_INTS, "datasets"])
    for name, value in extra.items():
        if name in _CHAPTER_INTS:
            out[name] = check_int(name, value, _CHAPTER_INTS[name])
        elif name in _CHAPTER_OPTIONAL_INTS:
            out[name] = None if value is None else check_int(
                f"{name} (None = the profile's)", value, _CHAPTER_OPTIONAL_INTS[name])
        elif name == "datasets":
            if not isinstance(value, str) or not value.split():
                raise ValueError(f"datasets must be space-separated dataset names, got "
                                 f"{value!r}; allowed: {', '.join(DATASETS)}")
            out[name] = " ".join(check_choice("dataset", d, DATASETS) for d in value.split())
        else:
            raise ValueError(f"unknown chapter parameter {name!r}; allowed: profile, dataset, "
                             f"trials, runs_dir, device, executor, {', '.join(allowed)}")
    return out

"""Configuration: what determines an experiment's numbers, and its identity (a hash).

:class:`ExperimentConfig` gathers the paper's settings (:mod:`lthlib.config.paper`) as changed by
a profile (:mod:`lthlib.config.profiles`). The package :mod:`lthlib.config` hands on the names of
all three.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from lthlib.config.paper import (ARCHS, DATASETS, EXPERIMENTS, PRECISIONS, PROFILES,
                                 RESNET_LR_SETTINGS, RESULTS_VERSION, DataConfig, ModelConfig,
                                 PruneConfig, TrainConfig, check_choice, check_int, paper_model,
                                 paper_prune, paper_train)
from lthlib.config.profiles import AUGMENTED_ARCHS, apply_profile, profile_precision


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
    # what a rewound ticket trains: "from-k" (the literature: iterations k..T, schedule resumed
    # at k, fresh optimizer state) or "restart" (lthlib before 2026-12-07: the whole schedule
    # again from iteration 0, T more iterations; kept so those committed trials keep their
    # meaning and hash). "" when nothing is rewound.
    rewind_schedule: str = ""
    # "bf16": conv nets train and evaluate under bfloat16 autocast (lthlib.training.conv_engine);
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
        if self.rewind_iteration == 0:
            if self.rewind_schedule not in ("", "from-k", "restart"):
                check_choice("rewind schedule", self.rewind_schedule, REWIND_SCHEDULES)
            object.__setattr__(self, "rewind_schedule", "")
        else:
            object.__setattr__(self, "rewind_schedule", check_choice(
                "rewind schedule", self.rewind_schedule or "from-k", REWIND_SCHEDULES))
        object.__setattr__(self, "precision", check_choice("precision", self.precision,
                                                            PRECISIONS))
        if self.precision != "fp32" and self.profile == "paper":
            raise ValueError(f"precision {self.precision!r} is a deviation the paper profile "
                             f"does not make; allowed there: fp32")
        if self.lr_setting != "" and self.lr_setting not in RESNET_LR_SETTINGS:
            raise ValueError(f"unknown lr setting {self.lr_setting!r}; allowed: '' (none), "
                             f"{', '.join(RESNET_LR_SETTINGS)}")

    @property
    def setting(self) -> str:
        """The lr setting as results are grouped: late rewinding is a procedure of its own
        (``lr0.1/rewind429``), never pooled with the paper's setting of the same lr."""
        if not self.rewind_iteration:
            return self.lr_setting
        old = "-restart" if self.rewind_schedule == "restart" else ""
        return f"{self.lr_setting}/rewind{self.rewind_iteration}{old}"

    @property
    def rewound_start(self) -> int:
        """The iteration a rewound ticket's training starts at: k for "from-k", else 0."""
        return self.rewind_iteration if self.rewind_schedule == "from-k" else 0

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data; fields added after trials were committed are left out
        at their default (:data:`HASH_NEUTRAL_DEFAULTS`), so those trials keep their hash."""
        d = dataclasses.asdict(self)
        if d.get("rewind_schedule") == "restart":  # committed before the field existed
            del d["rewind_schedule"]
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
                                                     ("precision",): "fp32",
                                                     ("rewind_schedule",): ""}
REWIND_SCHEDULES = ("from-k", "restart")


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """Inverse of :meth:`ExperimentConfig.to_dict` (for reading records back)."""
    d = dict(d)
    if d.get("rewind_iteration") and "rewind_schedule" not in d:
        d["rewind_schedule"] = "restart"  # stored before "from-k" became the definition
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
    data = DataConfig(dataset, augment=arch in AUGMENTED_ARCHS and dataset == "cifar10")
    if lr_setting:
        lr_setting = check_choice("lr setting", lr_setting, tuple(RESNET_LR_SETTINGS))
        if arch != "resnet18":
            raise ValueError(f"lr setting {lr_setting!r} is one of Figure 8's ResNet-18 "
                             f"settings, not for {arch!r}; allowed: arch 'resnet18', or no "
                             f"lr setting")
        train = replace(train, **RESNET_LR_SETTINGS[lr_setting])
    train, prune, data = apply_profile(train, prune, data, profile, arch)
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

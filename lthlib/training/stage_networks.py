"""The networks an experiment trains, and the one call that trains a stage's worth of them.

A :class:`Member` is one network of one trial: which variant (the ticket or a control), at
which level, from which initial weights, under which mask. :func:`train_members` hands a
whole stage to the fastest engine the architecture allows, so the experiment functions in
:mod:`lthlib.experiments.procedures` say only *what* to train, never how.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from lthlib.training import conv_engine
from lthlib.training.population import engine
from lthlib.config.experiment import ExperimentConfig
from lthlib.data.datasets import TensorSplit
from lthlib.pruning.prune import Masks, State, masked_network, plain_state
from lthlib.training.one_network import train


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (e.g. trial seed, "reinit", level, replicate)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


@dataclass
class Member:
    """One network to train: which trial, which variant, its init and mask."""

    trial: ExperimentConfig
    variant: str  # "ticket" | "reinit" | "random"
    level: int
    replicate: int
    init: State
    mask: Masks | None
    pm: float

    @property
    def key(self) -> str:
        """The name of this network within its trial, e.g. ``reinit-L3-r0``."""
        return member_key(self.variant, self.level, self.replicate)


def member_key(variant: str, level: int, replicate: int) -> str:
    return f"{variant}-L{level}-r{replicate}"


def train_members(members: list[Member], cfg: ExperimentConfig, data: TensorSplit,
                  device: torch.device, progress: bool | str = False, start: int = 0
                  ) -> list[tuple[pd.DataFrame, State]]:
    """Train every member; the population engine when it supports the arch, else one by one.

    ``start`` = k trains iterations k..T only (late rewinding from θk): the schedule, batch
    order and augmentation resume at k with a fresh optimizer state. The population engine
    always starts at 0, so such members train through the conv engine or :func:`train`."""
    if not members:
        return []
    if engine.supports(cfg.model.arch) and not cfg.data.augment and start == 0:
        results = engine.train_population(
            cfg.model.arch, [m.init for m in members], [m.mask for m in members], data,
            cfg.train, [m.trial.seed for m in members], device=device, progress=progress)
        return [(r.history, r.final_state) for r in results]
    if conv_engine.supports(cfg.model.arch):  # a few ResNets at once as one grouped network
        size = conv_engine.group_size(device, len(members))
        grouped: list[tuple[pd.DataFrame, State]] = []
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            desc = (f"{progress} [{i + 1}-{i + len(chunk)}/{len(members)}]"
                    if isinstance(progress, str) else progress)
            res = conv_engine.train_group(
                [m.init for m in chunk], [m.mask for m in chunk], data, cfg.train,
                [m.trial.seed for m in chunk], device=device, augment=cfg.data.augment,
                bf16=cfg.precision == "bf16", progress=desc, start=start)
            grouped += [(r.history, r.final_state) for r in res]
        return grouped
    if cfg.precision != "fp32":
        raise ValueError(f"precision {cfg.precision!r} is implemented for "
                         f"{', '.join(conv_engine.SUPPORTED)} only, not {cfg.model.arch!r}; "
                         f"allowed: fp32")
    out = []
    for i, m in enumerate(members):
        net = masked_network(cfg, m.init, m.mask)
        desc = f"{progress} [{i + 1}/{len(members)}]" if isinstance(progress, str) else progress
        res = train(net, data, cfg.train, batch_seed=m.trial.seed, device=device,
                    progress=desc, augment=cfg.data.augment, start_iteration=start)
        out.append((res.history, {k: v.detach().cpu() for k, v in plain_state(res.net).items()}))
    return out

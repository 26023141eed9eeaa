"""Stability to SGD noise for ResNet-18 and VGG-19: the instability map of Figure 8's regime.

Frankle et al. (2020, arXiv:1912.05671) explain why IMP fails for deep networks at a high
learning rate: two copies trained from one starting point on different data orders end in
different basins (the test error rises on the straight line between them), and subnetworks
found by IMP match the dense network only where training is stable. One measurement here is
one such pair:

- the start: the dense network, or an IMP ticket / its re-init at one level of a stored
  global-imp trial (mask from its stages, θ0 from its seed), optionally rewound to iteration
  k (θk: the start trained k iterations on the trial's own data order);
- two copies train from there to T on data orders ``derive_seed(seed, tag, copy)``, with
  the schedule resumed at k (:func:`lthlib.training.conv_engine.train_group` ``start=k``);
- ``points`` evenly spaced states on the segment between the copies are evaluated on the
  test set after **re-estimating BatchNorm statistics** on a fixed training subset (the first
  ``bn_examples`` training images, no augmentation): interpolated running statistics are not
  the statistics of the interpolated network, and can hide or invent a barrier.

Instability = largest error on the path minus the mean of the endpoints' errors. Results are
stored as ``runs/lmc/<arch>-<dataset>-<regime>/<label>-seed<s>-<hash>/`` with the same files
as :mod:`lthlib.studies.lmc` (``lmc.json``, ``path.csv``, ``summary.csv``, ``record.json``). Each
trained network (θk, copy 0, copy 1) is written to ``stages/`` as it finishes, with the pair's
run id, its seconds and a digest, so an interrupted pair resumes after its last finished
network on any machine (a pair is two 2,145-iteration networks: tens of minutes on a CPU);
the stages are removed once the pair's record is written.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lthlib.training import conv_engine
from lthlib.util.atomic import atomic_write_text
from lthlib.util.errors import CorruptRecordError
from lthlib.config.paper import TrainConfig, check_choice
from lthlib.config.experiment import make_experiment
from lthlib.data.datasets import TensorSplit, load_tensors_for
from lthlib.util.device import default_device, describe_hardware, native_bf16
from lthlib.studies.lmc import instability, interpolate, masked
from lthlib.training.stage_networks import derive_seed
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import apply_masks, plain_state
from lthlib.training.one_network import train as train_one
from lthlib.store.file_checks import df_to_csv_text, read_json
from lthlib.store.records import git_commit, read_record, write_record
from lthlib.experiments.rewind_state import pack_state, unpack_state
from lthlib.store.run_store import RunStore, TrialRecord
from lthlib.experiments.tickets import theta0, ticket_masks

State = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]
STARTS = ("dense", "ticket", "reinit")
STABILITY_FILES = ("lmc.json", "path.csv", "summary.csv")


@dataclass(frozen=True)
class StabilityConfig:
    """What identifies one pair: start, training, path; its hash names the folder."""

    arch: str
    dataset: str
    regime: str  # e.g. "converged-cpu" or "converged-cpu-augment": the folder group
    setting: str  # Figure 8's lr setting, e.g. "lr0.1"
    train: TrainConfig
    augment: bool
    seed: int
    start: str = "dense"
    level: int = 0  # IMP level of the mask (ticket / reinit)
    source_run_id: str = ""  # the global-imp trial the mask and θ0 come from
    rewind_iteration: int = 0
    points: int = 11
    bn_examples: int = 2048
    copies_seed_tag: str = "lmc-data-order"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_choice("start", self.start, STARTS)
        check_choice("precision", self.precision, ("fp32",))
        if self.start == "dense" and (self.level or self.source_run_id):
            raise ValueError(f"a dense start has no level or source trial; got level "
                             f"{self.level}, source {self.source_run_id!r}")
        if self.start != "dense" and not self.source_run_id:
            raise ValueError(f"start {self.start!r} needs the IMP trial it reads "
                             f"(source_run_id); allowed: dense without one")
        if not 0 <= self.rewind_iteration < self.train.iterations:
            raise ValueError(f"rewind_iteration {self.rewind_iteration} outside the run; "
                             f"allowed: 0..{self.train.iterations - 1}")
        if self.points < 2 or self.bn_examples < 1:
            raise ValueError(f"points >= 2 and bn_examples >= 1 required, got "
                             f"{self.points}, {self.bn_examples}")

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "stability", **asdict(self)}

    def run_id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """``lr0.1-dense-k0``, ``lr0.01-ticket-L3-k0``: what the folder name starts with."""
        where = f"-L{self.level}" if self.start != "dense" else ""
        return f"{self.setting}-{self.start}{where}-k{self.rewind_iteration}"


def regime_config(setting: str, seed: int, profile: str = "converged-cpu",
                  augment: bool = False, **fields: Any) -> StabilityConfig:
    """A pair trained exactly as Figure 8's global-imp trials at ``profile`` (in float32)."""
    exp = make_experiment("global-imp", "resnet18", "fashionmnist", profile,
                          lr_setting=setting, precision="fp32")
    regime = profile + ("-augment" if augment else "")
    return StabilityConfig("resnet18", "fashionmnist", regime, setting, exp.train, augment,
                           seed, **fields)


def pair_dir(cfg: StabilityConfig, runs_dir: str | Path | None = None) -> Path:
    return (RunStore(runs_dir).root / "lmc" / f"{cfg.arch}-{cfg.dataset}-{cfg.regime}"
            / f"{cfg.label}-seed{cfg.seed}-{cfg.run_id()}")


# --- BatchNorm statistics of an interpolated network ----------------------------------------

@torch.no_grad()
def reestimate_bn(net: nn.Module, x: torch.Tensor, batch: int = 256) -> nn.Module:
    """Replace every BatchNorm's running mean/var by the exact average over ``x`` (train-mode
    forward passes, cumulative averaging); the weights are not touched."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight to every batch
    net.train()
    for i in range(0, len(x), batch):
        net(x[i:i + batch])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.eval()
    return net


@torch.no_grad()
def error_on(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    wrong = sum(int((net(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum())
                for i in range(0, len(y), batch))
    return wrong / len(y)


def path_errors_bn(net: nn.Module, a: Mapping[str, torch.Tensor],
                   b: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   bn_x: torch.Tensor | None, masks: Masks | None = None,
                   points: int = 11) -> pd.DataFrame:
    """Test error at ``points`` states between ``a`` and ``b``; with ``bn_x`` BatchNorm
    statistics are re-estimated on it at every point, else the interpolated ones are used."""
    alphas = np.linspace(0.0, 1.0, points)
    errs = []
    for t in alphas:
        net.load_state_dict(masked(interpolate(a, b, float(t)), masks))
        if bn_x is not None:
            reestimate_bn(net, bn_x)
        errs.append(error_on(net, x, y))
    return pd.DataFrame({"alpha": alphas, "test_error": errs})


# --- one pair -------------------------------------------------------------------------------

def _start_state(cfg: StabilityConfig, trial: TrialRecord | None,
                 in_shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[State, Masks | None]:
    """The copies' common start before any rewinding: θ0 (and the mask) of the start kind."""
    if cfg.start == "dense":
        net = create_network(cfg.arch, 10, in_shape, seed=cfg.seed)
        return {k: v.detach().clone() for k, v in net.state_dict().items()}, None
    assert trial is not None
    masks = ticket_masks(trial, cfg.level)
    if cfg.start == "ticket":
        return theta0(trial), masks
    init = create_network(cfg.arch, 10, in_shape,
                          seed=derive_seed(cfg.seed, "reinit", cfg.level, 0)).state_dict()
    return {k: v.detach().clone() for k, v in init.items()}, masks


def source_trial(setting: str, seed: int, profile: str = "converged-cpu",
                 runs_dir: str | Path | None = None) -> TrialRecord:
    """The finished global-imp trial of ``setting`` and ``seed`` (θ0 rewinding, bf16 as
    stored) whose masks the ticket and re-init pairs use."""
    store = RunStore(runs_dir)
    group = store.root / "global-imp" / f"resnet18-fashionmnist-{profile}-{setting}"
    for rec in sorted(group.glob(f"seed{seed}-*/record.json")):
        tr = store.read(rec.parent)
        if tr.config.rewind_iteration == 0:
            return tr
    raise ValueError(f"no finished global-imp trial for {setting} seed {seed} in {group}; "
                     f"allowed: a trial `python -m lthlib runs ls` lists as finished")


def load_pair(path: Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(path rows, record) of a finished pair whose files match their sha256
    (:func:`lthlib.store.records.read_record`), else None: a pair that is unfinished or
    fails a check is measured again."""
    try:
        record = read_record(path, STABILITY_FILES)
    except (FileNotFoundError, CorruptRecordError):
        return None
    return pd.read_csv(Path(path) / "path.csv"), record


def run_pair(cfg: StabilityConfig, runs_dir: str | Path | None = None,
             data: TensorSplit | None = None, device: str | None = "cpu",
             progress: bool = False) -> Path:
    """Measure (or read back) one pair; returns its folder."""
    out_dir = pair_dir(cfg, runs_dir)
    if load_pair(out_dir) is not None:
        return out_dir
    dev = default_device(device)
    exp = make_experiment("global-imp", cfg.arch, cfg.dataset, "converged-cpu")
    data = data if data is not None else load_tensors_for(exp.data)
    trial = (source_trial(cfg.setting, cfg.seed, cfg.regime.removesuffix("-augment"), runs_dir)
             if cfg.start != "dense" else None)
    init, masks = _start_state(cfg, trial, data.in_shape)
    code_version = git_commit()  # the code that trains, not whatever is checked out at the end
    t0 = time.perf_counter()
    k = cfg.rewind_iteration
    carried = 0.0  # seconds of networks an earlier process trained
    if k:  # θk: the start trained k iterations on the trial's own data order
        got = _load_stage(out_dir, "theta-k", cfg)
        if got is None:
            short = TrainConfig(**{**asdict(cfg.train), "iterations": k, "eval_every": k})
            t1 = time.perf_counter()
            init = _train(cfg, init, masks, data, short, cfg.seed, dev, 0,
                          "θk" if progress else False)[0]
            _save_stage(out_dir, "theta-k", cfg, init, time.perf_counter() - t1, {})
        else:
            init, secs, _ = got
            carried += secs
    train = TrainConfig(**{**asdict(cfg.train), "eval_every": cfg.train.iterations})
    finals, ends = [], []
    for copy in (0, 1):
        got = _load_stage(out_dir, f"copy{copy}", cfg)
        if got is not None:
            state, secs, end = got
            carried += secs
        else:
            order = derive_seed(cfg.seed, cfg.copies_seed_tag, copy)
            t1 = time.perf_counter()
            state, end = _train(cfg, init, masks, data, train, order, dev, k,
                                f"copy {copy}" if progress else False)
            _save_stage(out_dir, f"copy{copy}", cfg, state, time.perf_counter() - t1, end)
        finals.append(state)
        ends.append(end)
    train_wall = time.perf_counter() - t0 + carried
    net = create_network(cfg.arch, 10, data.in_shape, seed=0).to(dev)
    bn_x = data.train_x[:cfg.bn_examples].to(dev)
    path = path_errors_bn(net, finals[0], finals[1], data.test_x.to(dev), data.test_y.to(dev),
                          bn_x, masks, cfg.points)
    e = path["test_error"].to_numpy()
    pm = 1.0 if masks is None else float(sum(int(m.sum()) for m in masks.values())
                                         / sum(m.numel() for m in masks.values()))
    summary = pd.DataFrame([{
        "setting": cfg.setting, "regime": cfg.regime, "start": cfg.start, "level": cfg.level,
        "pm": round(pm, 6), "rewind_iteration": k, "seed": cfg.seed,
        "error_a": e[0], "error_b": e[-1], "max_path_error": e.max(),
        "instability": instability(e),
        "train_acc_a": ends[0]["train_acc"], "train_acc_b": ends[1]["train_acc"]}])
    path.insert(0, "label", cfg.label)
    texts = {"lmc.json": json.dumps(cfg.to_dict(), indent=1) + "\n",
             "path.csv": df_to_csv_text(path), "summary.csv": df_to_csv_text(summary)}
    record = {"status": "finished", "run_id": cfg.run_id(), "experiment": "stability",
              "label": cfg.label, "seed": cfg.seed, "source_run_id": cfg.source_run_id,
              "networks": 2, "train_iterations_per_copy": cfg.train.iterations - k,
              "theta_k_iterations": k,
              "train_wall_time_s": round(train_wall, 2),
              "wall_time_s": round(time.perf_counter() - t0, 2),
              "hardware": {**describe_hardware(dev), "native_bf16": native_bf16(dev)},
              "git_commit": code_version}
    write_record(out_dir, texts, record)
    # a finished pair needs its path, not its weights: the stages only bridge interruptions
    for name in ("theta-k", "copy0", "copy1"):
        _stage_file(out_dir, name).unlink(missing_ok=True)
    if (out_dir / "stages").is_dir() and not any((out_dir / "stages").iterdir()):
        (out_dir / "stages").rmdir()
    return out_dir


def _train(cfg: StabilityConfig, init: State, masks: Masks | None, data: TensorSplit,
           train: TrainConfig, order: int, dev: torch.device, start: int,
           progress: bool | str) -> tuple[State, dict[str, float]]:
    """One network from ``init`` (iterations start..T): the conv engine for ResNet-18, the
    single-network loop for the rest (VGG-19); (final state, last history row)."""
    if conv_engine.supports(cfg.arch):
        res = conv_engine.train_group([init], [masks], data, train, [order], device=dev,
                                      augment=cfg.augment, start=start, progress=progress)[0]
        return res.final_state, res.history.iloc[-1].to_dict()
    net = create_network(cfg.arch, data.num_classes, data.in_shape, seed=0)
    net.load_state_dict(init)
    if masks is not None:
        apply_masks(net, masks)
    res = train_one(net, data, train, batch_seed=order, device=dev, progress=progress,
                    augment=cfg.augment, start_iteration=start)
    state = {k: v.detach().cpu() for k, v in plain_state(res.net).items()}
    return state, res.history.iloc[-1].to_dict()


def _stage_file(out_dir: Path, name: str) -> Path:
    return out_dir / "stages" / f"{name}.state.json"


def _save_stage(out_dir: Path, name: str, cfg: StabilityConfig, state: State, seconds: float,
                end: Mapping[str, Any]) -> None:
    """One trained network of the pair, tied to the pair's run id, written atomically."""
    stages = out_dir / "stages"
    if stages.is_symlink() or out_dir.is_symlink():
        raise ValueError(f"{stages} is a symbolic link; allowed: a plain folder in the store")
    doc = {**pack_state(state), "run_id": cfg.run_id(), "stage": name,
           "wall_time_s": round(seconds, 2), "end": {k: float(v) for k, v in end.items()}}
    atomic_write_text(_stage_file(out_dir, name), json.dumps(doc) + "\n")


def _load_stage(out_dir: Path, name: str, cfg: StabilityConfig
                ) -> tuple[State, float, dict[str, float]] | None:
    """A stored network of this pair (same run id and stage, digest intact), else None."""
    try:  # size-limited, never through a link
        doc = read_json(_stage_file(out_dir, name))
        if doc.get("run_id") != cfg.run_id() or doc.get("stage") != name:
            return None
        return unpack_state(doc), float(doc["wall_time_s"]), dict(doc["end"])
    except (CorruptRecordError, ValueError, KeyError, TypeError, AttributeError, OSError):
        return None


def stability_results(runs_dir: str | Path | None = None, arch: str = "resnet18",
                      dataset: str = "fashionmnist") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every finished pair of ``arch``/``dataset``: (summaries with wall time, path rows)."""
    root = RunStore(runs_dir).root / "lmc"
    sums, paths = [], []
    for rec in sorted(root.glob(f"{arch}-{dataset}-*/*/record.json")):
        got = load_pair(rec.parent)
        if got is None or got[1].get("experiment") != "stability":
            continue
        p, r = got
        s = pd.read_csv(rec.parent / "summary.csv")
        sums.append(s.assign(train_wall_time_s=r["train_wall_time_s"],
                             cpu=r["hardware"].get("cpu", r["hardware"].get("device"))))
        paths.append(p.assign(seed=r["seed"], regime=s["regime"].iloc[0]))
    if not sums:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(sums, ignore_index=True), pd.concat(paths, ignore_index=True)

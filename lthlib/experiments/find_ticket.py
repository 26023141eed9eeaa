"""IMP on any PyTorch model and dataset: ``lth.find_ticket(model, train=..., val=..., test=...)``.

The paper's procedure, as :func:`lthlib.experiments.procedures.imp` runs it on the registered networks:
train θ0 for ``iterations`` with :func:`lthlib.training.one_network.train` (evaluation every ``eval_every``,
retroactive early stopping), prune ``rate`` of the remaining weights of each layer (or over
all hidden layers at once) by final magnitude, reset the survivors to θ0 (or to θk with
``rewind_iteration=k``), repeat for ``rounds`` levels; then ``reinits`` controls per pruned
level: the same mask on a fresh random initialisation. Masks are torch.nn.utils.prune's
(:mod:`lthlib.pruning.prune`), so pruned weights stay zero under momentum and weight decay.

Each trial is stored and resumable (:mod:`lthlib.store.own_trials`): every finished network is a
stage, the next mask is stored before its stage, and the network in training keeps resume
checkpoints, so a killed trial continues where it stopped and ends with the same bytes.
"""
from __future__ import annotations

import copy
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from lthlib.util.atomic import atomic_save
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import TensorSplit
from lthlib.util.device import default_device, describe_hardware
from lthlib.store.run_store import summarize
from lthlib.store.trial_lock import TrialLock
from lthlib.pruning.mask_files import load_masks, mask_path, save_masks, theta0_digest
from lthlib.training.stage_networks import derive_seed
from lthlib.data.own_data import check_labels, data_fingerprint, loader_batch_size, own_split
from lthlib.pruning.own_network import (SCOPES, ModelSource, PlanRow, architecture_fingerprint,
                                        build_network, describe_plan, next_masks, prune_plan)
from lthlib.store.own_trials import TrialFiles
from lthlib.util.paths import runs_dir as resolve_runs_dir
from lthlib.pruning.prune import apply_masks, remaining_fraction
from lthlib.store.run_store import git_commit
from lthlib.training.one_network import train

__all__ = ["TicketResult", "TicketTrial", "find_ticket"]

Masks = dict[str, Tensor]
State = dict[str, Tensor]
OPTIMIZERS = ("adam", "sgd")
DEFAULT_LR = {"adam": 1.2e-3, "sgd": 0.1}


@dataclass
class TicketTrial:
    """One stored trial: its networks' summary and evaluations, θ0, θk and the masks."""

    seed: int
    path: Path
    summary: pd.DataFrame
    metrics: pd.DataFrame
    theta0: State
    masks: dict[int, Masks]  # level -> masks (level 0: none)
    record: dict[str, Any]
    rewound: State | None = None  # θk for late rewinding, where its checkpoint is present


@dataclass
class TicketResult:
    """Every trial of one :func:`find_ticket` call."""

    name: str
    plan: list[PlanRow]
    scope: str
    rewind_iteration: int
    trials: list[TicketTrial] = field(default_factory=list)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per network and trial (variant, level, replicate, pm, early-stop metrics)."""
        return pd.concat([t.summary.assign(seed=t.seed) for t in self.trials],
                         ignore_index=True)

    @property
    def wall_time_s(self) -> float:
        return sum(float(t.record.get("wall_time_s", 0.0)) for t in self.trials)


def _name(net: nn.Module, name: str | None) -> str:
    raw = name if name is not None else type(net).__name__
    clean = re.sub(r"[^a-z0-9.]+", "-", str(raw).lower()).strip("-.")
    return clean or "model"


def _check_output(net: nn.Module, data: TensorSplit) -> None:
    """One-line error when the model cannot take the data's inputs or gives no logits."""
    sample = data.train_x[:2]
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(sample)
    except Exception as err:  # any failure of user code is reported in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"the model failed on a batch of shape {tuple(sample.shape)} "
                         f"({type(err).__name__}: {first}); allowed: a model that maps "
                         f"(N, {', '.join(map(str, data.in_shape))}) inputs to (N, classes) "
                         f"logits") from None
    finally:
        net.train(was)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != len(sample):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model returned {shape} for a batch of {len(sample)}; allowed: "
                         f"(N, classes) logits")
    check_labels(data, int(out.shape[1]))


def _effective(net: nn.Module, plan: list[PlanRow]) -> State:
    """Each planned layer's weight as the network computes with it (mask applied)."""
    modules = dict(net.named_modules())
    out = {}
    for row in plan:
        m = modules[row.name]
        w = m.weight_orig * m.weight_mask if hasattr(m, "weight_mask") else m.weight
        out[row.name] = w.detach().cpu().clone()
    return out


class _Trial:
    """One trial's IMP loop over its stored stages."""

    def __init__(self, files: TrialFiles, template: nn.Module, source: ModelSource,
                 data: TensorSplit, cfg: TrainConfig, opts: dict[str, Any],
                 device: torch.device, echo: Callable[[str], None]) -> None:
        self.files, self.template, self.source, self.data = files, template, source, data
        self.cfg, self.opts, self.device, self.echo = cfg, opts, device, echo
        self.seed = int(files.config["seed"])
        self.plan = [PlanRow(n, k, tuple(s), r) for n, k, s, r in files.config["plan"]]
        self.settings = {"threads": torch.get_num_threads()}

    def network(self, state: State, masks: Masks | None) -> nn.Module:
        net = copy.deepcopy(self.template)
        net.load_state_dict(state)
        return apply_masks(net, masks) if masks else net

    def train_stage(self, stage: str, variant: str, level: int, rep: int, state: State,
                    masks: Masks | None, then: Callable[[nn.Module], None] | None = None
                    ) -> pd.DataFrame:
        """Train one network unless its stage is stored; ``then`` runs before it is stored."""
        done = self.files.load_stage(stage)
        if done is not None:
            return done
        net = self.network(state, masks)
        pm = remaining_fraction(net)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(net, self.data, self.cfg, batch_seed=self.seed,
                    run_dir=self.files.ckpt / stage, device=self.device,
                    progress=f"{self.files.name} {stage}" if self.opts["progress"] else False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if then is not None:
            then(net)
        hist = res.history.copy()
        for col, value in (("pm", pm), ("replicate", rep), ("level", level),
                           ("variant", variant)):
            hist.insert(0, col, value)
        self.files.save_stage(stage, hist, wall, {**self.settings,
                                                  "cpu_time_s": round(cpu, 2)})
        shutil.rmtree(self.files.ckpt / stage, ignore_errors=True)
        best = hist.loc[hist["val_loss"].idxmin()]
        self.echo(f"  seed {self.seed} {stage}: Pm {pm:.3f}, early-stop test accuracy "
                  f"{best['test_acc']:.4f} at iteration {int(best['iteration'])} ({wall:.0f} s)")
        return hist

    def rewound(self, theta0: State) -> State | None:
        k = self.opts["rewind_iteration"]
        if not k:
            return None
        path = self.files.ckpt / f"rewind-{k}.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        net = self.network(theta0, None)
        short = replace(self.cfg, iterations=k, eval_every=k)
        train(net, self.data, short, batch_seed=self.seed, device=self.device)
        state = {n: v.detach().cpu().clone() for n, v in net.state_dict().items()}
        atomic_save(path, lambda tmp: torch.save(state, tmp))
        return state

    def run(self) -> TicketTrial:
        theta0 = {n: v.detach().clone() for n, v in self.template.state_dict().items()}
        rewound = self.rewound(theta0)
        start = rewound if rewound is not None else theta0
        rounds, scope = self.opts["rounds"], self.opts["scope"]
        masks: dict[int, Masks] = {}
        parts = []
        for level in range(rounds + 1):
            stage, after = f"ticket-L{level:02d}", f"ticket-L{level + 1:02d}"

            def store_next(net: nn.Module, level: int = level, after: str = after) -> None:
                if level < rounds:
                    save_masks(self.files.path, after,
                               next_masks(_effective(net, self.plan), masks.get(level),
                                          self.plan, scope))

            if level > 0:
                masks[level] = load_masks(self.files.path, stage)
            hist = self.train_stage(stage, "ticket", level, 0,
                                    theta0 if level == 0 else start, masks.get(level),
                                    store_next)
            if level < rounds and not mask_path(self.files.path, after).is_file():
                # stored stage without its next mask: only a hand-deleted file does this
                self.files.stage_csv(stage).unlink()
                hist = self.train_stage(stage, "ticket", level, 0,
                                        theta0 if level == 0 else start, masks.get(level),
                                        store_next)
            parts.append(hist)
        for level in range(1, rounds + 1):
            for rep in range(self.opts["reinits"]):
                fresh = build_network(self.source, derive_seed(self.seed, "reinit", level, rep))
                stage = f"reinit-L{level:02d}" + (f"-r{rep}" if self.opts["reinits"] > 1 else "")
                parts.append(self.train_stage(stage, "reinit", level, rep, fresh.state_dict(),
                                              masks[level]))
        metrics = pd.concat(parts, ignore_index=True)
        record = self.files.finish(metrics, summarize(metrics), {
            "hardware": describe_hardware(self.device), "git_commit": git_commit()})
        return self.loaded(record, theta0, masks, rewound)

    def loaded(self, record: dict[str, Any], theta0: State, masks: dict[int, Masks],
               rewound: State | None) -> TicketTrial:
        return TicketTrial(self.seed, self.files.path, self.files.read("summary.csv"),
                           self.files.read("metrics.csv"), theta0, masks, record, rewound)

    def load_finished(self, record: dict[str, Any]) -> TicketTrial:
        theta0 = {n: v.detach().clone() for n, v in self.template.state_dict().items()}
        masks = {level: load_masks(self.files.path, f"ticket-L{level:02d}")
                 for level in range(1, self.opts["rounds"] + 1)}
        k = self.opts["rewind_iteration"]
        ckpt = self.files.ckpt / f"rewind-{k}.pt"
        rewound = (torch.load(ckpt, map_location="cpu", weights_only=True)
                   if k and ckpt.is_file() else None)
        return self.loaded(record, theta0, masks, rewound)


def _check_int(what: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def find_ticket(model: ModelSource, train: Any, val: Any, test: Any, iterations: int = 2000,
                rounds: int = 3, rate: float = 0.2, scope: str = "layer",
                rewind_iteration: int = 0, optimizer: str = "adam", *,
                output_rate: float | None = None, lr: float | None = None,
                momentum: float = 0.9, weight_decay: float = 0.0,
                batch_size: int | None = None, eval_every: int = 100, trials: int = 1,
                seed: int = 0, reinits: int = 1, train_eval_size: int = 5000,
                name: str | None = None, runs_dir: str | Path | None = None,
                device: torch.device | str | None = None, progress: bool = False,
                echo: Callable[[str], None] | None = print) -> TicketResult:
    """Find a winning ticket of ``model`` on the user's data by IMP, with its re-init control.

    ``model``: an ``nn.Module`` (each trial's θ0 is a copy reset by ``reset_parameters`` from
    seed ``seed + t``) or a factory ``lambda: MyNet()`` (called under that seed). ``train``,
    ``val``, ``test``: map-style Datasets of ``(input, label)`` or DataLoaders over them (the
    batch size defaults to the train loader's, else 60). ``rate``: share of the remaining
    weights each round removes from conv and hidden linear layers; the output layer loses
    ``output_rate`` (default ``rate / 2``). ``scope``: "layer" or "global". ``optimizer``:
    "adam" or "sgd" (with ``momentum``); ``lr`` defaults to 1.2e-3 (Adam) or 0.1 (SGD).
    Results are stored under ``runs_dir/own-network/<name>/`` and read back, never
    retrained, when model, data and settings are the same.
    """
    say = echo or (lambda _: None)
    _check_int("iterations", iterations, 1)
    _check_int("rounds", rounds, 0)
    _check_int("rewind_iteration", rewind_iteration, 0)
    _check_int("trials", trials, 1)
    _check_int("seed", seed, 0)
    _check_int("reinits", reinits, 0)
    _check_int("eval_every", eval_every, 1)
    if rewind_iteration >= iterations:
        raise ValueError(f"rewind_iteration must be below iterations ({iterations}), got "
                         f"{rewind_iteration}")
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not known; allowed: {', '.join(SCOPES)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r} is not known; allowed: "
                         f"{', '.join(OPTIMIZERS)}")
    batch = batch_size if batch_size is not None else loader_batch_size(train) or 60
    _check_int("batch_size", batch, 1)
    data = own_split(train, val, test, train_eval_size, seed)
    if batch > len(data.train_y):
        raise ValueError(f"batch_size {batch} exceeds the {len(data.train_y)} training "
                         f"examples; allowed: 1 .. {len(data.train_y)}")
    cfg = TrainConfig(optimizer=optimizer, lr=lr if lr is not None else DEFAULT_LR[optimizer],
                      batch_size=batch, iterations=iterations, eval_every=eval_every,
                      momentum=momentum, weight_decay=weight_decay)
    first = build_network(model, seed)
    plan = prune_plan(first, rate, output_rate)
    _check_output(first, data)
    label = _name(first, name)
    say(describe_plan(first, plan, scope))
    opts = {"rounds": rounds, "scope": scope, "rewind_iteration": rewind_iteration,
            "reinits": reinits, "progress": progress}
    shared = {"format": "lthlib-find-ticket/1", "name": label,
              "hyperparameters": {**asdict(cfg), "milestones": list(cfg.milestones),
                                  "rate": rate, "output_rate": output_rate, "scope": scope,
                                  "rounds": rounds, "rewind_iteration": rewind_iteration,
                                  "reinits": reinits, "train_eval_size": train_eval_size},
              "architecture": architecture_fingerprint(first), "data": data_fingerprint(data),
              "plan": [[r.name, r.kind, list(r.shape), r.rate] for r in plan]}
    root = resolve_runs_dir(runs_dir)
    dev = default_device(device)
    result = TicketResult(label, plan, scope, rewind_iteration)
    for t in range(trials):
        net = first if t == 0 else build_network(model, seed + t)
        config = {**shared, "seed": seed + t, "theta0_sha256": theta0_digest(net.state_dict())}
        files = TrialFiles(root, label, config)
        trial = _Trial(files, net, model, data, cfg, opts, dev, say)
        with TrialLock(files.path):
            record = files.finished()
            if record is not None:
                say(f"seed {seed + t}: stored in {files.path.name} (read back, not retrained)")
                result.trials.append(trial.load_finished(record))
                continue
            say(f"seed {seed + t}: training into {files.path.name}")
            result.trials.append(trial.run())
    return result

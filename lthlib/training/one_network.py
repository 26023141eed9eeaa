"""Training with the paper's optimizers, periodic evaluation and retroactive early stopping.

The paper (Section 2, Appendix) trains for a fixed number of iterations, evaluates validation
and test loss every 100 iterations, and afterwards reports the iteration of minimum
validation loss ("early stopping", applied retroactively). This module does exactly that for
one network; :mod:`lthlib.training.population.engine` does the same for many fully-connected networks at once and
must agree with it number for number; both take their schedule from :mod:`lthlib.training.schedule`.

Used in: chapter 7.3 (training), by :mod:`lthlib.experiments.procedures` for conv networks,
and by :mod:`lthlib.studies.plateau`, whose curves an ``on_eval`` hook (:class:`EvalPoint`)
stores after every evaluation.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Subset

from lthlib.util.atomic import atomic_save
from lthlib.store.history import HISTORY_COLUMNS, early_stop_summary
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import TensorSplit, augment_batch, batch_indices
from lthlib.util.device import default_device
from lthlib.training.schedule import eval_iterations, lr_factor, make_optimizer, make_scheduler

__all__ = ["HISTORY_COLUMNS", "EvalHook", "EvalPoint", "TrainResult", "early_stop_summary",
           "eval_iterations",
           "evaluate", "load_checkpoint", "lr_factor", "make_optimizer", "make_scheduler",
           "save_checkpoint", "train"]

EvalData = Union[DataLoader, tuple[torch.Tensor, torch.Tensor]]
Loaders = tuple  # (train, val, test) or (train, val, test, train_eval) DataLoaders


# --- evaluation ----------------------------------------------------------------------------

@torch.no_grad()
def evaluate(net: nn.Module, data: EvalData, batch_size: int = 5000,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction) of ``net`` on a loader or (X, y)."""
    device = torch.device(device) if device is not None else _net_device(net)
    was_training = net.training
    net.eval()
    total_loss, correct, count = 0.0, 0, 0
    if isinstance(data, (tuple, list)):
        X, y = data
        batches: Any = ((X[i:i + batch_size], y[i:i + batch_size])
                        for i in range(0, len(y), batch_size))
    else:
        batches = data
    for xb, yb in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        logits = net(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
        count += len(yb)
    net.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got an empty dataset")
    return total_loss / count, correct / count


def _net_device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --- early stopping ------------------------------------------------------------------------

# --- checkpoints ---------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, net: nn.Module, **extra: Any) -> Path:
    """Atomically save ``net``'s state dict (masks included) plus plain-data extras."""
    path = Path(path)
    atomic_save(path, lambda tmp: torch.save({"state_dict": net.state_dict(), **extra}, tmp))
    return path


def load_checkpoint(path: str | os.PathLike, net: nn.Module) -> dict[str, Any]:
    """Load a checkpoint into ``net`` (re-creating pruning masks it carries); returns extras.

    Uses ``weights_only=True``: a checkpoint can never execute code when read.
    """
    blob = torch.load(Path(path), map_location=_net_device(net), weights_only=True)
    state = blob["state_dict"]
    modules = dict(net.named_modules())
    for key in state:
        if key.endswith(".weight_mask"):
            mod = modules.get(key[: -len(".weight_mask")])
            if mod is None:
                raise ValueError(f"checkpoint {path} has mask {key!r} for a layer this net lacks")
            if not torch_prune.is_pruned(mod) or not hasattr(mod, "weight_mask"):
                torch_prune.identity(mod, "weight")
    net.load_state_dict(state)
    # the reparametrised `weight` attribute is recomputed only in forward: refresh it now
    for mod in net.modules():
        if hasattr(mod, "weight_mask") and hasattr(mod, "weight_orig"):
            mod.weight = mod.weight_orig * mod.weight_mask
    return {k: v for k, v in blob.items() if k != "state_dict"}


# --- the training loop ---------------------------------------------------------------------

@dataclass(frozen=True)
class EvalPoint:
    """What an ``on_eval`` hook of the engines sees after each evaluation, so a caller can
    store a curve as it grows and stop a long run resumably."""

    iteration: int
    histories: list[list[dict[str, float]]]  # per network, every evaluation row so far
    elapsed_s: float  # seconds since the run's first iteration, earlier processes included
    final: bool  # the last evaluation of the run: nothing is left to train


EvalHook = Callable[[EvalPoint], bool]  # True: stop after this point (a checkpoint resumes)


@dataclass
class TrainResult:
    history: pd.DataFrame
    net: nn.Module
    early_stop: dict[str, float]
    wall_time: float
    checkpoints: dict[str, Path] = field(default_factory=dict)


class _Batches:
    """Yields (X, y) training batches from tensors (fast path) or a DataLoader (plain path)."""

    def __init__(self, data: TensorSplit | Loaders, cfg: TrainConfig, seed: int, start: int,
                 device: torch.device, augment: bool) -> None:
        self.device, self.augment, self.seed = device, augment, seed
        if isinstance(data, TensorSplit):
            self.X, self.y = data.train_x.to(device), data.train_y.to(device)
            self._it: Iterator = batch_indices(len(self.y), cfg.batch_size, seed, start)
            self.loader = None
        else:
            if start:
                raise ValueError("resuming mid-run needs tensor data (TensorSplit)")
            self.loader = data[0]
            self._it = self._loader_stream()

    def _loader_stream(self) -> Iterator:
        while True:
            yield from self.loader

    def next(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.loader is not None:
            xb, yb = next(self._it)
            xb, yb = xb.to(self.device), yb.to(self.device)
        else:
            idx = next(self._it).to(self.device)
            xb, yb = self.X[idx], self.y[idx]
        if self.augment:
            gen = torch.Generator(device=xb.device).manual_seed(self.seed * 1_000_003 + iteration)
            xb = augment_batch(xb, gen)
        return xb, yb


def _eval_sets(data: TensorSplit | Loaders, device: torch.device) -> dict[str, EvalData]:
    if isinstance(data, TensorSplit):
        return {"train": (data.train_eval_x.to(device), data.train_eval_y.to(device)),
                "val": (data.val_x.to(device), data.val_y.to(device)),
                "test": (data.test_x.to(device), data.test_y.to(device))}
    if len(data) not in (3, 4):
        raise ValueError(f"loaders must be (train, val, test[, train_eval]); got {len(data)}")
    train_eval = data[3] if len(data) == 4 else DataLoader(
        Subset(data[0].dataset, range(min(5000, len(data[0].dataset)))), batch_size=1000)
    return {"train": train_eval, "val": data[1], "test": data[2]}


def _eval_row(net: nn.Module, sets: dict[str, EvalData], iteration: int,
              device: torch.device) -> dict[str, float]:
    row: dict[str, float] = {"iteration": iteration}
    for name in ("train", "val", "test"):
        row[f"{name}_loss"], row[f"{name}_acc"] = evaluate(net, sets[name], device=device)
    return row


def train(net: nn.Module, data: TensorSplit | Loaders, cfg: TrainConfig, batch_seed: int = 0,
          run_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
          progress: bool | str = False, augment: bool = False,
          checkpoint_every: int | None = None, start_iteration: int = 0,
          on_eval: EvalHook | None = None) -> TrainResult:
    """Train ``net`` (pruned or not) for ``cfg.iterations`` updates; evaluate; early-stop.

    With ``run_dir``, checkpoints ``start.pt``, ``best.pt`` (minimum validation loss so far)
    and ``end.pt`` are written there, plus ``resume.pt`` every ``checkpoint_every`` iterations
    (default: every eval) so a killed run continues from where it was, bit for bit on CPU.
    Pruned weights stay exactly zero: torch's reparametrisation (weight_orig * weight_mask)
    zeroes their gradient, so neither momentum nor weight decay can regrow them.
    ``start_iteration`` = k trains iterations k..T only (late rewinding from θk): schedule,
    batch order and augmentation resume at k, the optimizer state is fresh, and the history
    starts with an evaluation at k.
    ``on_eval`` is called after every evaluation (:class:`EvalPoint`); when it returns True
    training stops there: ``resume.pt`` is written (with ``run_dir``), ``end.pt`` is not, and
    the result holds the history so far (a later call with the same ``run_dir`` resumes).
    """
    device = default_device(device)
    net.to(device)
    run_path = Path(run_dir) if run_dir is not None else None
    opt = make_optimizer(net.parameters(), cfg)
    sched = make_scheduler(opt, cfg, start_iteration)
    rows: list[dict[str, float]] = []
    start, best_val, elapsed_before = start_iteration, math.inf, 0.0
    ckpt: dict[str, Path] = {}
    if run_path is not None:
        ckpt = {n: run_path / f"{n}.pt" for n in ("start", "best", "end", "resume")}
        if ckpt["end"].exists() and (run_path / "history.csv").exists():
            load_checkpoint(ckpt["end"], net)
            history = pd.read_csv(run_path / "history.csv")
            return TrainResult(history, net, early_stop_summary(history), 0.0, ckpt)
        if ckpt["resume"].exists():
            extra = load_checkpoint(ckpt["resume"], net)
            opt = make_optimizer(net.parameters(), cfg)
            opt.load_state_dict(extra["optimizer"])
            sched = make_scheduler(opt, cfg, start_iteration)
            sched.load_state_dict(extra["scheduler"])
            start, best_val = int(extra["iteration"]), float(extra["best_val"])
            elapsed_before = float(extra.get("elapsed_s", 0.0))
            rows = [dict(zip(HISTORY_COLUMNS, r)) for r in extra["history"].tolist()]
        else:
            save_checkpoint(ckpt["start"], net)
    sets = _eval_sets(data, device)
    evals = {i for i in eval_iterations(cfg) if i >= start_iteration} | {start_iteration}
    every = checkpoint_every or cfg.eval_every
    batches = _Batches(data, cfg, batch_seed, start, device, augment)
    bar = _progress(progress, cfg.iterations, start)
    t0 = time.perf_counter()
    stop = False
    net.train()
    for it in range(start, cfg.iterations + 1):
        if it in evals and not (rows and rows[-1]["iteration"] == it):
            rows.append(_eval_row(net, sets, it, device))
            net.train()
            if rows[-1]["val_loss"] < best_val:
                best_val = rows[-1]["val_loss"]
                if run_path is not None:
                    save_checkpoint(ckpt["best"], net, iteration=it)
            if bar is not None:
                bar.set_postfix(val_acc=f"{rows[-1]['val_acc']:.4f}", refresh=False)
            if on_eval is not None:
                point = EvalPoint(it, [list(rows)], elapsed_before + time.perf_counter() - t0,
                                  it == cfg.iterations)
                stop = bool(on_eval(point)) and it < cfg.iterations
        if (run_path is not None and it > start and (it % every == 0 or stop)
                and it < cfg.iterations):
            save_checkpoint(ckpt["resume"], net, optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), iteration=it, best_val=best_val,
                            history=torch.tensor([[r[c] for c in HISTORY_COLUMNS] for r in rows],
                                                 dtype=torch.float64),
                            elapsed_s=elapsed_before + time.perf_counter() - t0)
        if it == cfg.iterations or stop:
            break
        xb, yb = batches.next(it)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    history["iteration"] = history["iteration"].astype(int)
    wall = time.perf_counter() - t0
    if run_path is not None and not stop:
        save_checkpoint(ckpt["end"], net, iteration=cfg.iterations)
        atomic_save(run_path / "history.csv", lambda tmp: history.to_csv(tmp, index=False))
        ckpt["resume"].unlink(missing_ok=True)
    return TrainResult(history, net, early_stop_summary(history), wall, ckpt)


def _progress(progress: bool | str, total: int, start: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm
    desc = progress if isinstance(progress, str) else "train"
    return tqdm(total=total, initial=start, desc=desc, unit="it", leave=False)

"""One dense network trained long, evaluated every epoch: the curve that picks a CPU budget.

A profile's budget is only honest if the dense network is near what it reaches when trained to
convergence. This module trains one dense network with the paper's schedule shape (lr / 10 at
2/3 and 5/6 of the budget), evaluates it on the full validation and test sets once per epoch,
and stores the curve under ``runs/plateau/<name>/`` (``curve.csv`` + ``record.json`` with the
hardware, threads, wall time and commit). A checkpoint every epoch (gitignored ``ckpt/``) lets
the same command resume; the budget fixes the schedule, so a resume must use the same
arguments, and the record says whether the run is complete.

    python -m lthlib plateau --arch resnet18 --dataset fashionmnist --epochs 30 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from lthlib.util.atomic import atomic_save, atomic_write_text
from lthlib.util.errors import run_handler
from lthlib.config.paper import (ARCHS, DATASETS, PRECISIONS, TrainConfig, check_choice,
                                 paper_model, paper_train)
from lthlib.data.datasets import _check_batching, augment_batch, batch_indices, load_tensors
from lthlib.util.device import default_device, describe_hardware, warn_if_bf16_emulated
from lthlib.nets.paper_networks import create_network
from lthlib.store.file_checks import df_to_csv_text
from lthlib.training.schedule import lr_factor, make_optimizer
from lthlib.store.run_store import git_commit, resolve_runs_dir

_DESCRIPTION = ("Train one dense network long, evaluated every epoch, to find the budget at "
                "which it plateaus (runs/plateau/).")
CURVE_COLUMNS = ["epoch", "iteration", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc", "wall_s"]


@dataclass(frozen=True)
class PlateauConfig:
    """What determines the curve; the folder name is derived from it."""

    arch: str = "resnet18"
    dataset: str = "fashionmnist"
    epochs: int = 30
    lr: float = 0.1
    precision: str = "fp32"
    seed: int = 0
    channels_last: bool = True
    # the paper's ResNet augmentation (flip + 4-pixel pad and crop), and Figure 8's warmup
    # as a fraction of the budget (the paper: 20K of 30K iterations = 2/3); both off by
    # default, so the curves stored before they existed keep their folder names
    augment: bool = False
    warmup_fraction: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", check_choice("network", self.arch, ARCHS))
        object.__setattr__(self, "dataset", check_choice("dataset", self.dataset, DATASETS))
        object.__setattr__(self, "precision", check_choice("precision", self.precision,
                                                            PRECISIONS))
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction {self.warmup_fraction} outside [0, 1)")

    def name(self) -> str:
        extra = (f"-warmup{self.warmup_fraction:.3g}" if self.warmup_fraction else "") + (
            "-augment" if self.augment else "")
        return (f"{self.arch}-{self.dataset}-lr{self.lr:g}{extra}-{self.epochs}ep-"
                f"{self.precision}-seed{self.seed}")


def schedule(cfg: PlateauConfig, per_epoch: int) -> TrainConfig:
    """The paper's optimizer for the arch at ``cfg.lr``, drops at 2/3 and 5/6 of the budget."""
    iters = cfg.epochs * per_epoch
    base = paper_train(cfg.arch)
    return TrainConfig(base.optimizer, cfg.lr, base.batch_size, iters, eval_every=per_epoch,
                       momentum=base.momentum, weight_decay=base.weight_decay,
                       milestones=(round(iters * 2 / 3), round(iters * 5 / 6)),
                       gamma=base.gamma, warmup=round(iters * cfg.warmup_fraction))


@torch.inference_mode()
def _evaluate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool,
              channels_last: bool, batch: int = 1000) -> tuple[float, float]:
    net.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        xb = x[i:i + batch]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(xb)
        logits = logits.float()
        loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    net.train()
    return loss / len(y), correct / len(y)


def run_plateau(cfg: PlateauConfig, runs_dir: str | os.PathLike | None = None,
                device: str | None = "cpu", stop_after_s: float | None = None) -> Path:
    """Train (or resume) the curve of ``cfg``; returns its folder. Writes after every epoch."""
    dev = default_device(device)
    out = resolve_runs_dir(runs_dir) / "plateau" / cfg.name()
    ckpt = out / "ckpt" / "resume.pt"
    data = load_tensors(cfg.dataset, seed=0)
    per_epoch = _check_batching(len(data.train_y), paper_train(cfg.arch).batch_size)
    tcfg = schedule(cfg, per_epoch)
    mcfg = paper_model(cfg.arch, cfg.dataset)
    net = create_network(cfg.arch, mcfg.num_classes, mcfg.in_shape, seed=cfg.seed).to(dev)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net.parameters(), tcfg, dev)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, tcfg))
    rows: list[dict[str, float]] = []
    start, wall_before = 0, 0.0
    if ckpt.exists():
        blob = torch.load(ckpt, map_location=dev, weights_only=True)
        net.load_state_dict(blob["net"])
        opt.load_state_dict(blob["opt"])
        sched.load_state_dict(blob["sched"])
        start, wall_before = int(blob["iteration"]), float(blob["wall_s"])
        rows = pd.read_csv(out / "curve.csv").to_dict("records")
    bf16 = cfg.precision == "bf16"
    if bf16:
        warn_if_bf16_emulated(dev)
    xs, ys = data.train_x.to(dev), data.train_y.to(dev)
    batches = batch_indices(len(ys), tcfg.batch_size, cfg.seed, start)
    t0 = time.perf_counter()
    if not rows:
        rows.append(_row(net, data, 0, 0, float("nan"), float("nan"), tcfg, bf16, cfg, 0.0))
        _write(out, cfg, tcfg, rows, dev, complete=False,
               sizes=(len(data.val_y), len(data.test_y)))
    run_loss, run_correct, run_n = 0.0, 0, 0
    for it in range(start, tcfg.iterations):
        idx = next(batches)
        xb, yb = xs[idx], ys[idx]
        if cfg.augment:  # the seeding the engines use, so a curve matches their trials
            xb = augment_batch(xb, torch.Generator(device=xb.device).manual_seed(
                cfg.seed * 1_000_003 + it))
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item() * len(yb)
        run_correct += int((logits.argmax(1) == yb).sum())
        run_n += len(yb)
        if (it + 1) % per_epoch == 0:
            wall = wall_before + time.perf_counter() - t0
            rows.append(_row(net, data, (it + 1) // per_epoch, it + 1, run_loss / run_n,
                             run_correct / run_n, tcfg, bf16, cfg, wall))
            run_loss, run_correct, run_n = 0.0, 0, 0
            state = {"net": net.state_dict(), "opt": opt.state_dict(),
                     "sched": sched.state_dict(), "iteration": it + 1, "wall_s": wall}
            atomic_save(ckpt, lambda tmp: torch.save(state, tmp))
            _write(out, cfg, tcfg, rows, dev, complete=it + 1 == tcfg.iterations,
                   sizes=(len(data.val_y), len(data.test_y)))
            if stop_after_s is not None and time.perf_counter() - t0 > stop_after_s:
                break
    return out


def _row(net: torch.nn.Module, data, epoch: int, it: int, train_loss: float, train_acc: float,
         tcfg: TrainConfig, bf16: bool, cfg: PlateauConfig, wall: float) -> dict[str, float]:
    vl, va = _evaluate(net, data.val_x, data.val_y, bf16, cfg.channels_last)
    tl, ta = _evaluate(net, data.test_x, data.test_y, bf16, cfg.channels_last)
    return {"epoch": epoch, "iteration": it, "lr": tcfg.lr * lr_factor(max(it - 1, 0), tcfg),
            "train_loss": train_loss, "train_acc": train_acc, "val_loss": vl, "val_acc": va,
            "test_loss": tl, "test_acc": ta, "wall_s": round(wall, 1)}


def _write(out: Path, cfg: PlateauConfig, tcfg: TrainConfig, rows: list[dict[str, float]],
           dev: torch.device, complete: bool, sizes: tuple[int, int]) -> None:
    atomic_write_text(out / "curve.csv", df_to_csv_text(pd.DataFrame(rows, columns=CURVE_COLUMNS)))
    record = {"config": asdict(cfg), "train": asdict(tcfg), "complete": complete,
              "epochs_done": int(rows[-1]["epoch"]), "wall_time_s": rows[-1]["wall_s"],
              "hardware": describe_hardware(dev), "git_commit": git_commit(),
              "val_size": sizes[0], "test_size": sizes[1],
              "note": "" if complete else
              "partial: the budget's learning-rate drops may not have happened yet"}
    atomic_write_text(out / "record.json", json.dumps(record, indent=1, sort_keys=True) + "\n")


def _add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--dataset", default="fashionmnist")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action="store_true",
                    help="the paper's flip + 4-pixel pad-and-crop augmentation")
    ap.add_argument("--warmup-fraction", type=float, default=0.0,
                    help="linear warmup over this fraction of the budget (Figure 8: 0.667)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs-dir", default=None, help="store root (default: env LTH_RUNS_DIR "
                    "or the repository's runs/)")
    ap.add_argument("--stop-after-s", type=float, default=None,
                    help="stop (resumably) after the first epoch that ends past this many seconds")


def register(sub: Any) -> None:
    """Add the ``plateau`` subcommand to an argparse ``add_subparsers()`` object."""
    ap = sub.add_parser("plateau", help=_DESCRIPTION, description=_DESCRIPTION)
    _add_options(ap)
    ap.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Train (or resume) the curve ``args`` describes; print its folder."""
    torch.set_num_threads(args.threads)
    out = run_plateau(PlateauConfig(args.arch, args.dataset, args.epochs, args.lr,
                                    args.precision, args.seed, augment=args.augment,
                                    warmup_fraction=args.warmup_fraction),
                      args.runs_dir, stop_after_s=args.stop_after_s)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lthlib.studies.plateau [options]``: the same as ``python -m lthlib plateau``."""
    ap = argparse.ArgumentParser(prog="python -m lthlib.studies.plateau", description=_DESCRIPTION)
    _add_options(ap)
    return run_handler(handle, ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

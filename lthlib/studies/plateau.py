"""One dense network trained long, evaluated every epoch: the curve that picks a CPU budget.

A profile's budget is only honest if the dense network is near what it reaches when trained to
convergence. This module trains one dense network with the paper's schedule shape (lr / 10 at
2/3 and 5/6 of the budget), evaluates it on the full validation and test sets once per epoch,
and stores the curve under ``runs/plateau/<name>/`` (``curve.csv`` + ``record.json`` with the
hardware, threads, wall time and commit, written through :mod:`lthlib.store.records` after
every epoch). The training is the engines': ResNet-18 in
:func:`lthlib.training.conv_engine.train_group`, every other network in
:func:`lthlib.training.one_network.train`. Their checkpoint (gitignored ``ckpt/``) lets the
same command resume; the budget fixes the schedule, so a resume must use the same arguments,
and the record says whether the run is complete.

What the columns of ``curve.csv`` mean for curves written by the engines (their records say
``"train_metrics": "train_eval_subset"``): ``train_loss`` and ``train_acc`` are measured at
each evaluation point, in eval mode and without augmentation, on the engines' fixed training
subset (``train_eval_size`` examples), also at epoch 0; ``wall_s`` counts the seconds since
the first iteration (earlier processes included) after the epoch's evaluation. The curves
stored before (no ``train_metrics`` field) averaged the training minibatches of each epoch in
train mode (NaN at epoch 0) and timed each epoch before its evaluation; ResNet-18 now trains
in channels_last whatever ``channels_last`` says, and its numbers differ from the older loop's
by float rounding (grouped convolution kernels).

    python -m lthlib plateau --arch resnet18 --dataset fashionmnist --epochs 30 --threads 1
"""
from __future__ import annotations

import argparse
import io
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError, run_handler
from lthlib.config.paper import (ARCHS, DATASETS, PRECISIONS, TrainConfig, check_choice,
                                 paper_model, paper_train)
from lthlib.data.datasets import TensorSplit, _check_batching, load_tensors
from lthlib.util.device import default_device, describe_hardware
from lthlib.nets.paper_networks import create_network
from lthlib.store.file_checks import df_to_csv_text, read_text
from lthlib.store.records import git_commit, read_record_json, verify_record, write_record
from lthlib.store.run_store import resolve_runs_dir
from lthlib.training import conv_engine
from lthlib.training.one_network import EvalPoint, train as train_one
from lthlib.training.schedule import lr_factor

_DESCRIPTION = ("Train one dense network long, evaluated every epoch, to find the budget at "
                "which it plateaus (runs/plateau/).")
CURVE_COLUMNS = ["epoch", "iteration", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc", "wall_s"]
TRAIN_METRICS = "train_eval_subset"  # what train_loss/train_acc measure (module docstring)


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
        if self.precision != "fp32" and not conv_engine.supports(self.arch):
            raise ValueError(f"precision {self.precision!r} trains only in the conv engine "
                             f"({', '.join(conv_engine.SUPPORTED)}); allowed for "
                             f"{self.arch}: 'fp32'")

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


def read_plateau(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(curve, record) of a stored curve, its ``curve.csv`` checked against the record's
    sha256; the record gets ``"verified": False`` when it hashes nothing (curves stored
    before records were hashed). FileNotFoundError without a record; CorruptRecordError
    for a curve that does not match, is missing or is a link."""
    folder = Path(folder)
    record = read_record_json(folder)
    try:
        verify_record(folder, record, ("curve.csv",))
        verified = True
    except UnverifiedRecordError:
        verified = False
    try:
        curve = pd.read_csv(io.StringIO(read_text(folder / "curve.csv")))
    except FileNotFoundError:
        raise CorruptRecordError(f"{folder / 'curve.csv'} is missing") from None
    return curve, {**record, "verified": verified}


def plateau_curves(runs_dir: str | os.PathLike | None = None
                   ) -> list[tuple[Path, pd.DataFrame, dict[str, Any]]]:
    """(folder, curve, record) of every stored curve, by name; one that fails its check is
    left out with a warning."""
    out = []
    for rec in sorted((resolve_runs_dir(runs_dir) / "plateau").glob("*/record.json")):
        try:
            out.append((rec.parent, *read_plateau(rec.parent)))
        except CorruptRecordError as err:
            warnings.warn(f"{err}; the curve is left out")
    return out


def _earlier_walls(out: Path) -> dict[int, float]:
    """Seconds at each iteration of the curve an interrupted process stored (none when
    absent or failing its check: the engines' history gives every other column)."""
    try:
        curve, _ = read_plateau(out)
    except (FileNotFoundError, CorruptRecordError):
        return {}
    return {int(it): float(w) for it, w in zip(curve["iteration"], curve["wall_s"])}


def run_plateau(cfg: PlateauConfig, runs_dir: str | os.PathLike | None = None,
                device: str | None = "cpu", stop_after_s: float | None = None,
                data: TensorSplit | None = None, progress: bool = False) -> Path:
    """Train (or resume) the curve of ``cfg`` through the engines; returns its folder.
    Writes the curve and its record after every epoch; ``stop_after_s`` stops (resumably)
    after the first epoch that ends past that many seconds. A complete, verified curve is
    returned without training. ``data``: the splits (default: the dataset's, split seed 0);
    ``progress``: a progress bar named after the curve."""
    out = resolve_runs_dir(runs_dir) / "plateau" / cfg.name()
    try:
        if read_plateau(out)[1].get("complete"):
            return out
    except (FileNotFoundError, CorruptRecordError):
        pass
    dev = default_device(device)
    data = data if data is not None else load_tensors(cfg.dataset, seed=0)
    per_epoch = _check_batching(len(data.train_y), paper_train(cfg.arch).batch_size)
    tcfg = schedule(cfg, per_epoch)
    mcfg = paper_model(cfg.arch, cfg.dataset)
    net = create_network(cfg.arch, mcfg.num_classes, mcfg.in_shape, seed=cfg.seed)
    walls = _earlier_walls(out)
    fixed = {"config": asdict(cfg), "train": asdict(tcfg), "hardware": describe_hardware(dev),
             "git_commit": git_commit(), "val_size": len(data.val_y),
             "test_size": len(data.test_y), "train_eval_size": len(data.train_eval_y),
             "train_metrics": TRAIN_METRICS,
             "engine": ("conv_engine.train_group" if conv_engine.supports(cfg.arch)
                        else "one_network.train")}
    t0 = time.perf_counter()

    def store_point(point: EvalPoint) -> bool:
        walls[point.iteration] = round(point.elapsed_s, 1)
        rows = [_row(r, tcfg, per_epoch, walls) for r in point.histories[0]]
        curve = pd.DataFrame(rows, columns=CURVE_COLUMNS)
        write_record(out, {"curve.csv": df_to_csv_text(curve)}, {
            **fixed, "complete": point.final, "epochs_done": int(rows[-1]["epoch"]),
            "wall_time_s": rows[-1]["wall_s"],
            "note": "" if point.final else
            "partial: the budget's learning-rate drops may not have happened yet"})
        return (stop_after_s is not None and point.iteration > 0
                and time.perf_counter() - t0 > stop_after_s)

    if conv_engine.supports(cfg.arch):
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        conv_engine.train_group([state], [None], data, tcfg, [cfg.seed], device=dev,
                                augment=cfg.augment, bf16=cfg.precision == "bf16",
                                checkpoint=out / "ckpt" / "resume.pt", on_eval=store_point,
                                progress=cfg.name() if progress else False)
    else:
        train_one(net, data, tcfg, batch_seed=cfg.seed, run_dir=out / "ckpt", device=dev,
                  augment=cfg.augment, on_eval=store_point,
                  progress=cfg.name() if progress else False)
    return out


def _row(hist: dict[str, float], tcfg: TrainConfig, per_epoch: int,
         walls: dict[int, float]) -> dict[str, float]:
    """One curve row from an engine's history row: epoch, the last update's lr, seconds."""
    it = int(hist["iteration"])
    return {"epoch": it // per_epoch, "iteration": it,
            "lr": tcfg.lr * lr_factor(max(it - 1, 0), tcfg),
            **{k: hist[k] for k in CURVE_COLUMNS[3:-1]},
            "wall_s": walls.get(it, float("nan"))}


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
                      args.runs_dir, stop_after_s=args.stop_after_s, progress=True)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lthlib.studies.plateau [options]``: the same as ``python -m lthlib plateau``."""
    ap = argparse.ArgumentParser(prog="python -m lthlib.studies.plateau", description=_DESCRIPTION)
    _add_options(ap)
    return run_handler(handle, ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

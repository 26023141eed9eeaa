"""Datasets, splits and batch orders for the lottery-ticket experiments.

Two views of the same data: :func:`get_datasets` / :func:`get_dataloaders` (torchvision
datasets with ``ToTensor``, the textbook path) and :func:`load_tensors` (whole splits as
tensors, the fast path the trainers use). Both use the same :func:`split_indices`, so they
see identical examples, and :func:`batch_indices` / :class:`EpochBatchSampler` give both the
same batch order for a seed.

Where the files are and how they are checked is :mod:`lthlib.data.files` (offline first;
its public names are re-exported here).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from lthlib.config.paper import DATASET_SHAPES, DataConfig, check_int
# the file layer's public names are part of this module's interface
from lthlib.data.files import (RAW_FILES, cache_dir, dataset_root, load_torchvision,
                               normalize_dataset_name, resolve_data_root)

PathLike = str | os.PathLike[str]
Device = str | torch.device

NUM_CLASSES = 10
EPOCH_SEED_STRIDE = 1_000_003  # epoch e of seed s is shuffled with seed s * stride + e
TRAIN_EVAL_SEED_OFFSET = 7919  # the train-eval subset is drawn with seed + this


# --- splits ------------------------------------------------------------------------------------

def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train_idx, val_idx): a seeded random hold-out of ``val_size`` of ``n`` examples.

    Both come back sorted, so the train split keeps the file's order (``train_subset`` then
    means "the first N training examples")."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}) for {n} examples, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def _train_eval_positions(n_train: int, size: int, seed: int) -> Tensor:
    """Positions (within the train split) of the fixed "training accuracy" subset."""
    if size < 0:
        raise ValueError(f"train_eval_size must be >= 0 (0 = whole train split), got {size}")
    if size == 0 or size >= n_train:
        return torch.arange(n_train)
    gen = torch.Generator().manual_seed(seed + TRAIN_EVAL_SEED_OFFSET)
    return torch.randperm(n_train, generator=gen)[:size].sort().values


def _first(n_items: int, subset: int, what: str) -> int:
    if subset < 0:
        raise ValueError(f"{what} must be >= 0 (0 = all), got {subset}")
    return n_items if subset == 0 else min(subset, n_items)


# --- torchvision datasets and loaders ----------------------------------------------------------

def get_datasets(name: str, root: PathLike | None = None, seed: int = 0,
                 val_size: int = 5000, augment: bool = False, download: bool = False,
                 verify: bool = True) -> tuple[Subset, Subset, Subset]:
    """(train, val, test) Subsets of torchvision's dataset with ToTensor: the textbook path.

    ``seed`` picks the validation hold-out. ``augment`` adds RandomCrop(padding=4) and
    RandomHorizontalFlip to the train split only (the paper's CIFAR-10 setting)."""
    key = normalize_dataset_name(name)
    check_int("seed", seed, 0)
    check_int("val_size", val_size, 0)
    from torchvision import transforms

    to_tensor = transforms.ToTensor()
    train_full, test = load_torchvision(key, root, download, verify, to_tensor, to_tensor)
    train_idx, val_idx = split_indices(len(train_full), val_size, seed)
    train_src = train_full
    if augment:
        size = DATASET_SHAPES[key][1:]
        aug = transforms.Compose([transforms.RandomCrop(size, padding=4),
                                  transforms.RandomHorizontalFlip(), to_tensor])
        train_src, _ = load_torchvision(key, root, False, False, aug, None)
    return (Subset(train_src, train_idx.tolist()), Subset(train_full, val_idx.tolist()),
            Subset(test, list(range(len(test)))))


def get_dataloaders(name: str, batch_size: int = 60, seed: int = 0,
                    root: PathLike | None = None, val_size: int = 5000, *,
                    batch_seed: int | None = None, eval_batch_size: int = 1000,
                    augment: bool = False, download: bool = False, verify: bool = True,
                    num_workers: int = 0, pin_memory: bool = False
                    ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) DataLoaders; train batches follow :func:`batch_indices`.

    ``seed`` picks the validation split (as in :func:`get_datasets`); the train order uses
    ``batch_seed`` (default: ``seed``). Each pass over the train loader is the next epoch."""
    check_int("batch_size", batch_size, 1)
    check_int("eval_batch_size", eval_batch_size, 1)
    if batch_seed is not None:
        check_int("batch_seed", batch_seed, 0)
    train, val, test = get_datasets(name, root, seed, val_size, augment, download, verify)
    sampler = EpochBatchSampler(len(train), batch_size,
                                seed if batch_seed is None else batch_seed)
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    return (DataLoader(train, batch_sampler=sampler, **common),
            DataLoader(val, batch_size=eval_batch_size, shuffle=False, **common),
            DataLoader(test, batch_size=eval_batch_size, shuffle=False, **common))


# --- batch order -------------------------------------------------------------------------------

def _check_batching(num_examples: int, batch_size: int) -> int:
    if batch_size < 1 or num_examples < batch_size:
        raise ValueError(f"batch_size must be in [1, num_examples={num_examples}], "
                         f"got {batch_size}")
    return num_examples // batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> Tensor:
    """Epoch ``epoch``'s example order: independent of how many batches were consumed."""
    gen = torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)
    return torch.randperm(num_examples, generator=gen)


def batch_indices(num_examples: int, batch_size: int, seed: int,
                  start_iteration: int = 0) -> Iterator[Tensor]:
    """Infinite stream of int64 index batches; iteration i is the same for every consumer.

    Each epoch is a fresh seeded permutation whose last partial batch is dropped.
    ``start_iteration`` jumps straight to that batch (for resuming, without replaying)."""
    per_epoch = _check_batching(num_examples, batch_size)
    if start_iteration < 0:
        raise ValueError(f"start_iteration must be >= 0, got {start_iteration}")
    epoch, offset = divmod(start_iteration, per_epoch)
    while True:
        perm = epoch_permutation(num_examples, seed, epoch)
        for b in range(offset, per_epoch):
            yield perm[b * batch_size:(b + 1) * batch_size]
        epoch, offset = epoch + 1, 0


class EpochBatchSampler(Sampler[list[int]]):
    """Batch sampler for DataLoader whose k-th pass yields epoch k of :func:`batch_indices`."""

    def __init__(self, num_examples: int, batch_size: int, seed: int, epoch: int = 0) -> None:
        super().__init__()
        self.per_epoch = _check_batching(num_examples, batch_size)
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass yield epoch ``epoch`` (for resuming)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.num_examples, self.seed, self.epoch)
        self.epoch += 1
        for b in range(self.per_epoch):
            yield perm[b * self.batch_size:(b + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return self.per_epoch


# --- whole splits as tensors -------------------------------------------------------------------

@dataclass
class TensorSplit:
    """All splits as tensors: x float32 (N, C, H, W) in [0, 1] (ToTensor's values), y int64."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    train_eval_x: Tensor  # fixed seeded subset of the train split ("training accuracy")
    train_eval_y: Tensor
    num_classes: int
    in_shape: tuple[int, int, int]

    def to(self, device: Device) -> TensorSplit:
        """A copy with every tensor on ``device`` (e.g. once onto the GPU, then no copies)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), Tensor)}
        return replace(self, **moved)


def _as_uint8_nchw(ds: Any) -> tuple[Tensor, Tensor]:
    """A torchvision dataset's raw images as uint8 (N, C, H, W) and labels as int64."""
    data = ds.data
    if isinstance(data, Tensor):  # MNIST family: (N, H, W)
        x = data.unsqueeze(1) if data.dim() == 3 else data
    else:  # CIFAR: numpy (N, H, W, C)
        x = torch.from_numpy(data).permute(0, 3, 1, 2)
    return x, torch.as_tensor(ds.targets, dtype=torch.int64)


def _take(x: Tensor, y: Tensor, idx: Tensor, device: Device) -> tuple[Tensor, Tensor]:
    # Same arithmetic as ToTensor (uint8 -> float32, then / 255), so values match bit for bit.
    xs = x[idx].contiguous().to(device).to(torch.float32).div_(255)
    return xs, y[idx].to(device)


def load_tensors(name: str, root: PathLike | None = None, seed: int = 0,
                 val_size: int = 5000, train_eval_size: int = 5000, train_subset: int = 0,
                 eval_subset: int = 0, device: Device = "cpu", *, download: bool = False,
                 verify: bool = True) -> TensorSplit:
    """Whole splits as tensors from the datasets' raw arrays (no per-image PIL work).

    Same split as :func:`get_datasets` for the same ``seed``. ``train_subset`` /
    ``eval_subset`` keep the first N of the train split / of val and test (0 = all); the
    train-eval subset is a seeded sample (seed + 7919) of the train split actually used
    (0 = all of it)."""
    key = normalize_dataset_name(name)
    for what, value in (("seed", seed), ("val_size", val_size),
                        ("train_eval_size", train_eval_size), ("train_subset", train_subset),
                        ("eval_subset", eval_subset)):
        check_int(what, value, 0)
    train_ds, test_ds = load_torchvision(key, root, download, verify)
    train_idx, val_idx = split_indices(len(train_ds), val_size, seed)
    train_idx = train_idx[:_first(len(train_idx), train_subset, "train_subset")]
    val_idx = val_idx[:_first(len(val_idx), eval_subset, "eval_subset")]
    test_idx = torch.arange(_first(len(test_ds), eval_subset, "eval_subset"))
    train_eval_idx = train_idx[_train_eval_positions(len(train_idx), train_eval_size, seed)]
    x, y = _as_uint8_nchw(train_ds)
    tx, ty = _as_uint8_nchw(test_ds)
    parts = (*_take(x, y, train_idx, device), *_take(x, y, val_idx, device),
             *_take(tx, ty, test_idx, device), *_take(x, y, train_eval_idx, device))
    return TensorSplit(key, *parts, num_classes=NUM_CLASSES,
                       in_shape=tuple(x.shape[1:]))  # type: ignore[arg-type]


def load_tensors_for(cfg: DataConfig, root: PathLike | None = None,
                     device: Device = "cpu") -> TensorSplit:
    """:func:`load_tensors` with an experiment's DataConfig (augmentation is the trainer's)."""
    return load_tensors(cfg.dataset, root, seed=cfg.split_seed, val_size=cfg.val_size,
                        train_eval_size=cfg.train_eval_size, train_subset=cfg.train_subset,
                        eval_subset=cfg.eval_subset, device=device)


# --- augmentation on tensors -------------------------------------------------------------------

def augment_batch(x: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random horizontal flip + zero-pad-and-crop back to (H, W), per image, in one gather.

    The tensor-path twin of RandomCrop(padding=4) + RandomHorizontalFlip: the same
    distribution, but batched on x's device and reproducible from ``generator``."""
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    gdev = generator.device
    flip = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(x.device)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gdev).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gdev).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = dy[:, None] + ar_h  # (n, h)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]

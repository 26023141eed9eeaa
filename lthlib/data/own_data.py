"""A user's datasets as the tensors lthlib trains on, and their fingerprint.

:func:`lthlib.experiments.find_ticket` accepts any map-style ``Dataset`` (or a ``DataLoader`` over one)
whose items are ``(input, integer label)`` pairs. Each split is read once into memory as a
float32 input tensor and an int64 label tensor, so that training uses lthlib's seeded batch
order (:func:`lthlib.data.datasets.batch_indices`) and a killed trial resumes bit for bit. A
``DataLoader`` contributes its dataset and batch size; its own sampler and shuffling are not
used. A random transform in the dataset is drawn once, when the split is read.

The data fingerprint (sizes, input shape, classes and the sha256 of every example's bytes)
is part of a trial's identity: a changed dataset never reuses stored results.
"""
from __future__ import annotations

import hashlib
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lthlib.data.datasets import TensorSplit

__all__ = ["DataSource", "as_tensors", "check_labels", "data_fingerprint", "loader_batch_size",
           "own_split"]

DataSource = Dataset | DataLoader
MAX_BYTES = 4 * 1024 ** 3  # inputs of one split held in memory at most (float32)


def _dataset_of(source: Any, what: str) -> Dataset:
    """The map-style dataset behind ``source`` (a Dataset or a DataLoader over one)."""
    dataset = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(dataset, IterableDataset):
        raise ValueError(f"{what} is an IterableDataset; allowed: a map-style Dataset "
                         f"(with __getitem__ and __len__) or a DataLoader over one")
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ValueError(f"{what} is a {type(source).__name__}; allowed: a map-style Dataset "
                         f"(with __getitem__ and __len__) or a DataLoader over one")
    return dataset


def loader_batch_size(source: Any) -> int | None:
    """The batch size of a DataLoader (None for a Dataset or a loader without one)."""
    return source.batch_size if isinstance(source, DataLoader) else None


def _label(value: Any, what: str, index: int) -> int:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.generic) and np.issubdtype(value.dtype, np.integer):
        return int(value)
    raise ValueError(f"{what}[{index}] has label {value!r} of type {type(value).__name__}; "
                     f"allowed: an integer class index")


def _as_tensor(value: Any, what: str, index: int) -> Tensor:
    try:
        return torch.from_numpy(np.array(value))
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{what}[{index}] has inputs of type {type(value).__name__}; "
                         f"allowed: tensors or arrays (add a ToTensor transform)") from None


def as_tensors(source: Any, what: str) -> tuple[Tensor, Tensor]:
    """``(inputs float32 (N, ...), labels int64 (N,))`` read from every item of ``source``."""
    dataset = _dataset_of(source, what)
    n = len(dataset)
    if n < 1:
        raise ValueError(f"{what} is empty; allowed: a dataset with at least one example")
    xs: list[Tensor] = []
    ys: list[int] = []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{what}[{i}] is a {type(item).__name__}; allowed: an "
                             f"(input, label) pair")
        x = item[0] if isinstance(item[0], Tensor) else _as_tensor(item[0], what, i)
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise ValueError(f"{what}[{i}] has inputs of dtype {x.dtype}; allowed: a float "
                             f"tensor (or uint8, read as float)")
        if xs and x.shape != xs[0].shape:
            raise ValueError(f"{what}[{i}] has inputs of shape {tuple(x.shape)}, item 0 of "
                             f"{tuple(xs[0].shape)}; allowed: one shape for every item")
        if i == 0 and 4 * n * x.numel() > MAX_BYTES:
            raise ValueError(f"{what} holds {n} inputs of shape {tuple(x.shape)}, over "
                             f"{MAX_BYTES // 1024 ** 3} GiB as float32; allowed: a dataset "
                             f"that fits in memory (pass a Subset)")
        xs.append(x.detach().to(torch.float32))
        ys.append(_label(item[1], what, i))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def own_split(train: Any, val: Any, test: Any, train_eval_size: int = 5000,
              seed: int = 0) -> TensorSplit:
    """A :class:`~lthlib.data.datasets.TensorSplit` of the user's three splits. "Training accuracy"
    is measured on a fixed seeded subset of ``train_eval_size`` training examples."""
    parts = {name: as_tensors(src, name) for name, src in
             (("train", train), ("val", val), ("test", test))}
    shapes = {name: tuple(x.shape[1:]) for name, (x, _) in parts.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"the splits have different input shapes {shapes}; allowed: one "
                         f"input shape for train, val and test")
    train_x, train_y = parts["train"]
    n = len(train_y)
    if 0 < train_eval_size < n:
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(n, generator=gen)[:train_eval_size].sort().values
    else:
        pick = torch.arange(n)
    classes = int(max(int(y.max()) for _, y in parts.values())) + 1
    if min(int(y.min()) for _, y in parts.values()) < 0:
        raise ValueError("a label is negative; allowed: class indices 0 .. classes - 1")
    in_shape = shapes["train"]
    return TensorSplit("own", train_x, train_y, *parts["val"], *parts["test"],
                       train_x[pick], train_y[pick], classes,
                       in_shape)  # type: ignore[arg-type]


def data_fingerprint(split: TensorSplit) -> dict[str, Any]:
    """Sizes, input shape, number of classes and the sha256 of every split's bytes."""
    h = hashlib.sha256()
    sizes: dict[str, int] = {}
    for name in ("train", "val", "test"):
        x, y = getattr(split, f"{name}_x"), getattr(split, f"{name}_y")
        sizes[name] = len(y)
        for t in (x, y):
            h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
            h.update(t.contiguous().numpy().tobytes())
    return {"sizes": sizes, "input_shape": list(split.in_shape), "classes": split.num_classes,
            "train_eval_size": len(split.train_eval_y), "sha256": h.hexdigest()}


def check_labels(split: TensorSplit, outputs: int) -> None:
    """One-line error when the model has fewer outputs than the data has classes."""
    if outputs < split.num_classes:
        raise ValueError(f"the model has {outputs} outputs but the labels go up to "
                         f"{split.num_classes - 1}; allowed: at least {split.num_classes} "
                         f"outputs")

"""Datasets, splits and batch orders for the lottery-ticket experiments.

Two views of the same data: :func:`get_datasets` / :func:`get_dataloaders` (torchvision
datasets with ``ToTensor``, the textbook path) and :func:`load_tensors` (whole splits as
tensors, the fast path the trainers use). Both use the same :func:`split_indices`, so they
see identical examples, and :func:`batch_indices` / :class:`EpochBatchSampler` give both the
same batch order for a seed.

Data are offline-first: MNIST and FashionMNIST are read from gzipped files in torchvision's
layout (``<root>/<Name>/raw/*.gz``) and decompressed once into a cache; CIFAR-10 is read from
``<root>/cifar-10-batches-py`` by torchvision's own loader.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
import zlib
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from .config import DATASET_SHAPES, DATASETS, DataConfig, check_int

PathLike = str | os.PathLike[str]
Device = str | torch.device

NUM_CLASSES = 10
EPOCH_SEED_STRIDE = 1_000_003  # epoch e of seed s is shuffled with seed s * stride + e
TRAIN_EVAL_SEED_OFFSET = 7919  # the train-eval subset is drawn with seed + this
_CHUNK = 1 << 20

# Uncompressed raw files in torchvision's layout, and their md5 (torchvision's published checksums).
_FOLDERS = MappingProxyType({"mnist": "MNIST", "fashionmnist": "FashionMNIST"})
_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_RAW_MD5 = MappingProxyType({
    "mnist": MappingProxyType({
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }),
    "fashionmnist": MappingProxyType({
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }),
})
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


# --- names and locations ---------------------------------------------------------------------

def normalize_dataset_name(name: str) -> str:
    """Map any spelling ("MNIST", "Fashion-MNIST", "cifar_10") to a key of config.DATASETS."""
    key = str(name).lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} "
                         "(case-insensitive)")
    return key


def resolve_data_root(root: PathLike | None = None) -> Path:
    """Where the data live: ``root``, else $LTH_DATA_DIR, else ./data (relative to the cwd).

    No sibling folder is guessed: the Makefile and CI set LTH_DATA_DIR where the data sit.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("LTH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path("data")


def cache_dir() -> Path:
    """Decompression cache: $LTH_CACHE_DIR, else ~/.cache/lthlib/data (data roots may be
    read-only)."""
    env = os.environ.get("LTH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lthlib" / "data"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str, source: Path) -> None:
    got = _md5(path)
    if got != expected:
        raise ValueError(f"{source} is corrupted: md5 of its content is {got}, expected "
                         f"{expected}; replace the file (or pass verify=False to skip checks)")


def _atomic_copy(src: Path, dst: Path, expected_md5: str | None) -> None:
    """Decompress (or copy) ``src`` to ``dst`` via a temp file + os.replace, so concurrent
    or interrupted runs never leave a half-written file under the final name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        opener = gzip.open if src.suffix == ".gz" else open
        with os.fdopen(fd, "wb") as out, opener(src, "rb") as inp:
            for chunk in iter(lambda: inp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if expected_md5 is not None and digest.hexdigest() != expected_md5:
            raise ValueError(f"{src} is corrupted: md5 of its uncompressed content is "
                             f"{digest.hexdigest()}, expected {expected_md5}; replace the "
                             "file (or pass verify=False to skip checks)")
        os.replace(tmp, dst)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{src} is truncated or not a valid gzip file ({type(err).__name__}: "
                         f"{err}); allowed: the complete gzipped file, or the un-gzipped file "
                         f"without .gz; replace it") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _missing_mnist(key: str, data_root: Path, missing: list[str]) -> FileNotFoundError:
    folder = data_root / _FOLDERS[key] / "raw"
    wanted = ", ".join(f"{f}.gz" for f in _RAW_FILES)
    return FileNotFoundError(
        f"{_FOLDERS[key]} data not found. Put these four files (gzipped, or un-gzipped without "
        f".gz) into {folder}/: {wanted}. Missing now: {', '.join(missing)}. The data root is "
        "the root argument, else $LTH_DATA_DIR, else ./data; set LTH_DATA_DIR=<folder holding "
        f"{_FOLDERS[key]}/raw/> or pass download=True on a machine with internet access.")


def _missing_cifar(data_root: Path, missing: list[str]) -> FileNotFoundError:
    folder = data_root / _CIFAR_FOLDER
    return FileNotFoundError(
        f"CIFAR-10 data not found: {folder}/ lacks {', '.join(missing)} (needs "
        f"{', '.join(_CIFAR_FILES)}). Pass download=True on a machine with internet access "
        "(torchvision fetches cifar-10-python.tar.gz into the data root), or unpack that "
        f"archive so that {_CIFAR_FOLDER}/ lies under {data_root}/ (or under $LTH_DATA_DIR).")


def dataset_root(name: str, root: PathLike | None = None, download: bool = False,
                 verify: bool = True) -> Path:
    """The folder to hand to torchvision for ``name``, making it ready if needed.

    MNIST/FashionMNIST: uncompressed raw files in the data root are used in place; gzipped
    ones are decompressed once into :func:`cache_dir` (md5-checked, reused afterwards).
    CIFAR-10: the data root itself (it must hold cifar-10-batches-py/).
    """
    key = normalize_dataset_name(name)
    data_root = resolve_data_root(root)
    if key == "cifar10":
        return _cifar_root(data_root, download, verify)
    raw = data_root / _FOLDERS[key] / "raw"
    md5s = _RAW_MD5[key]
    if all((raw / f).is_file() for f in _RAW_FILES):
        if verify:
            for f in _RAW_FILES:
                _check_md5(raw / f, md5s[f], raw / f)
        return data_root
    sources = {f: raw / f"{f}.gz" if (raw / f"{f}.gz").is_file() else raw / f
               for f in _RAW_FILES}
    missing = [f"{f}.gz" for f, p in sources.items() if not p.is_file()]
    if missing:
        if not download:
            raise _missing_mnist(key, data_root, missing)
        _torchvision_class(key)(str(data_root), train=True, download=True)
        return dataset_root(key, data_root, download=False, verify=verify)
    cache = cache_dir()
    cached = cache / _FOLDERS[key] / "raw"
    for f, src in sources.items():
        dst = cached / f
        if dst.is_file() and (not verify or _md5(dst) == md5s[f]):
            continue  # decompressed by an earlier call
        _atomic_copy(src, dst, md5s[f] if verify else None)
    return cache


def _cifar_root(data_root: Path, download: bool, verify: bool) -> Path:
    folder = data_root / _CIFAR_FOLDER
    missing = [f for f in _CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        if not download:
            raise _missing_cifar(data_root, missing)
        _torchvision_class("cifar10")(str(data_root), train=True, download=True)
    if verify:
        from torchvision import datasets
        cls = datasets.CIFAR10
        for fname, md5 in list(cls.train_list) + list(cls.test_list) + [
                (cls.meta["filename"], cls.meta["md5"])]:
            _check_md5(folder / fname, md5, folder / fname)
    return data_root


def _torchvision_class(key: str) -> Any:
    """torchvision's dataset class for ``key``. CIFAR-10 comes as a subclass whose md5
    checks are off: :func:`dataset_root` already verified (or was told not to)."""
    from torchvision import datasets
    if key == "mnist":
        return datasets.MNIST
    if key == "fashionmnist":
        return datasets.FashionMNIST
    base = datasets.CIFAR10

    class CIFAR10(base):  # type: ignore[misc, valid-type]
        train_list = [[f, None] for f, _ in base.train_list]
        test_list = [[f, None] for f, _ in base.test_list]
        meta = {**base.meta, "md5": None}

        def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
            # A class made in a function cannot be pickled by name (DataLoader workers
            # under "spawn" pickle the dataset), so rebuild it from its state instead.
            return _unpickle_cifar10, (self.__dict__,)

    return CIFAR10


def _unpickle_cifar10(state: dict[str, Any]) -> Any:
    cls = _torchvision_class("cifar10")
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _load_torchvision(key: str, root: PathLike | None, download: bool, verify: bool,
                      train_transform: Any = None, test_transform: Any = None
                      ) -> tuple[Any, Any]:
    folder = str(dataset_root(key, root, download=download, verify=verify))
    cls = _torchvision_class(key)
    return (cls(folder, train=True, transform=train_transform, download=False),
            cls(folder, train=False, transform=test_transform, download=False))


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
    train_full, test = _load_torchvision(key, root, download, verify, to_tensor, to_tensor)
    train_idx, val_idx = split_indices(len(train_full), val_size, seed)
    train_src = train_full
    if augment:
        size = DATASET_SHAPES[key][1:]
        aug = transforms.Compose([transforms.RandomCrop(size, padding=4),
                                  transforms.RandomHorizontalFlip(), to_tensor])
        train_src, _ = _load_torchvision(key, root, False, False, aug, None)
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
    train_ds, test_ds = _load_torchvision(key, root, download, verify)
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

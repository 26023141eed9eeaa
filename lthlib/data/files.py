"""Dataset files: where they are, checking them, and making them ready for torchvision.

Offline first: MNIST and FashionMNIST are read from their four files in torchvision's layout
(``<root>/<Name>/raw/``), gzipped or not; gzipped ones are decompressed once into a cache,
md5-checked against torchvision's published checksums. CIFAR-10 is read from
``<root>/cifar-10-batches-py`` by torchvision's own loader. The data root is the ``root``
argument, else ``$LTH_DATA_DIR``, else ``./data``; a missing file is an error that says
where to put what.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lthlib.util.atomic import atomic_path
from lthlib.config.paper import DATASETS

PathLike = str | os.PathLike
_CHUNK = 1 << 20

# Uncompressed raw files in torchvision's layout, and their md5 (torchvision's published checksums).
_FOLDERS = MappingProxyType({"mnist": "MNIST", "fashionmnist": "FashionMNIST"})
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
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


def _decompress(src: Path, dst: Path, expected_md5: str | None) -> None:
    """Decompress (or copy) ``src`` to ``dst`` atomically (:mod:`lthlib.util.atomic`), checking
    the md5 of what is written, so concurrent or interrupted runs never leave a half-written
    or wrong file under the final name."""
    try:
        with atomic_path(dst) as tmp:
            digest = hashlib.md5()
            opener = gzip.open if src.suffix == ".gz" else open
            with open(tmp, "wb") as out, opener(src, "rb") as inp:
                for chunk in iter(lambda: inp.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if expected_md5 is not None and digest.hexdigest() != expected_md5:
                raise ValueError(f"{src} is corrupted: md5 of its uncompressed content is "
                                 f"{digest.hexdigest()}, expected {expected_md5}; replace the "
                                 "file (or pass verify=False to skip checks)")
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{src} is truncated or not a valid gzip file ({type(err).__name__}: "
                         f"{err}); allowed: the complete gzipped file, or the un-gzipped file "
                         f"without .gz; replace it") from None


def _missing_mnist(key: str, data_root: Path, missing: list[str]) -> FileNotFoundError:
    folder = data_root / _FOLDERS[key] / "raw"
    wanted = ", ".join(f"{f}.gz" for f in RAW_FILES)
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
    if all((raw / f).is_file() for f in RAW_FILES):
        if verify:
            for f in RAW_FILES:
                _check_md5(raw / f, md5s[f], raw / f)
        return data_root
    sources = {f: raw / f"{f}.gz" if (raw / f"{f}.gz").is_file() else raw / f
               for f in RAW_FILES}
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
        _decompress(src, dst, md5s[f] if verify else None)
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


def load_torchvision(key: str, root: PathLike | None, download: bool, verify: bool,
                      train_transform: Any = None, test_transform: Any = None
                      ) -> tuple[Any, Any]:
    folder = str(dataset_root(key, root, download=download, verify=verify))
    cls = _torchvision_class(key)
    return (cls(folder, train=True, transform=train_transform, download=False),
            cls(folder, train=False, transform=test_transform, download=False))

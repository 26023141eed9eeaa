"""Tests for lthlib.data.datasets: splits, loaders vs tensors, batch order, cache, errors, CIFAR-10."""
from __future__ import annotations

import itertools
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lthlib.data import datasets as data, files as data_files
from lthlib.config.paper import DataConfig

# The real datasets, wherever LTH_DATA_DIR points (the Makefile and CI set it).
SHARED = Path(os.environ.get("LTH_DATA_DIR") or "data").expanduser().resolve()
needs_real = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(),
                                reason="LTH_DATA_DIR does not hold MNIST/FashionMNIST")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decompression cache for the module, so real data are un-gzipped only once."""
    return tmp_path_factory.mktemp("lth-cache")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("LTH_DATA_DIR", raising=False)
    monkeypatch.setenv("LTH_CACHE_DIR", str(shared_cache))
    return monkeypatch


@pytest.fixture
def data_in_cwd(env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """LTH_DATA_DIR unset and the real data reachable only as ./data: the default root."""
    (tmp_path / "data").symlink_to(SHARED, target_is_directory=True)
    env.chdir(tmp_path)
    return env


# --- names, roots, errors ----------------------------------------------------------------

@pytest.mark.parametrize("name,key", [("MNIST", "mnist"), ("mnist", "mnist"),
                                      ("FashionMNIST", "fashionmnist"),
                                      ("fashion-mnist", "fashionmnist"),
                                      ("CIFAR10", "cifar10"), ("cifar-10", "cifar10")])
def test_names_case_insensitive(name: str, key: str) -> None:
    assert data.normalize_dataset_name(name) == key


def test_unknown_dataset_names_allowed(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="imagenet.*mnist, fashionmnist, cifar10"):
        data.get_datasets("imagenet")
    with pytest.raises(ValueError, match="allowed"):
        data.load_tensors("svhn")


def test_resolve_data_root_order(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = data.resolve_data_root()
    assert default == Path("data")
    env.setenv("LTH_DATA_DIR", str(tmp_path))
    assert data.resolve_data_root() == tmp_path
    assert data.resolve_data_root(tmp_path / "x") == tmp_path / "x"


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("FashionMNIST", "FashionMNIST")])
def test_missing_data_names_files(env: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                  folder: str) -> None:
    env.setenv("LTH_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        data.get_datasets(name)
    msg = str(err.value)
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert f in msg
    assert str(tmp_path / folder / "raw") in msg and "LTH_DATA_DIR" in msg


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError, match="val_size"):
        data.split_indices(100, 100, 0)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batch_indices(10, 11, 0))
    with pytest.raises(ValueError, match="augment_batch expects"):
        data.augment_batch(torch.zeros(3, 8, 8), torch.Generator())


# --- splits ----------------------------------------------------------------------------------

def test_split_indices_seeded_disjoint_covering() -> None:
    tr, va = data.split_indices(60_000, 5_000, seed=3)
    assert (len(tr), len(va)) == (55_000, 5_000)
    assert tr.dtype == va.dtype == torch.int64
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(60_000))
    tr2, va2 = data.split_indices(60_000, 5_000, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    _, va3 = data.split_indices(60_000, 5_000, seed=4)
    assert not torch.equal(va, va3)


@needs_real
@pytest.mark.parametrize("name", ["mnist", "FashionMNIST"])
def test_real_split_sizes_default_root(data_in_cwd: pytest.MonkeyPatch, name: str) -> None:
    train, val, test = data.get_datasets(name)
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    tr, va = set(train.indices), set(val.indices)  # type: ignore[attr-defined]
    assert not tr & va and tr | va == set(range(60_000))
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    _, val_b, _ = data.get_datasets(name, seed=1)
    assert set(val_b.indices) != va  # type: ignore[attr-defined]


@needs_real
def test_real_split_via_env_and_dataloaders(env: pytest.MonkeyPatch) -> None:
    env.setenv("LTH_DATA_DIR", str(SHARED))
    train, val, test = data.get_dataloaders("MNIST", batch_size=60, eval_batch_size=1000)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (55_000, 5_000,
                                                                          10_000)
    assert (len(train), len(val), len(test)) == (916, 5, 10)


@needs_real
def test_load_tensors_equals_dataloader(data_in_cwd: pytest.MonkeyPatch) -> None:
    split = data.load_tensors("mnist", seed=0)
    assert split.train_x.shape == (55_000, 1, 28, 28) and split.train_x.dtype == torch.float32
    assert (len(split.val_y), len(split.test_y), len(split.train_eval_y)) == (5000, 10000, 5000)
    assert split.train_y.dtype == torch.int64 and split.in_shape == (1, 28, 28)
    train, val, test = data.get_dataloaders("mnist", batch_size=60, seed=0, batch_seed=5,
                                            eval_batch_size=500)
    stream = data.batch_indices(len(split.train_y), 60, seed=5)
    for (xb, yb), idx in zip(itertools.islice(iter(train), 3), stream):
        assert torch.equal(xb, split.train_x[idx]) and torch.equal(yb, split.train_y[idx])
    xb, yb = next(iter(val))
    assert torch.equal(xb, split.val_x[:500]) and torch.equal(yb, split.val_y[:500])
    xb, yb = next(iter(test))
    assert torch.equal(xb, split.test_x[:500]) and torch.equal(yb, split.test_y[:500])


@needs_real
def test_load_tensors_subsets(data_in_cwd: pytest.MonkeyPatch) -> None:
    cfg = DataConfig("FashionMNIST", train_eval_size=50, train_subset=300, eval_subset=70)
    split = data.load_tensors_for(cfg)
    assert split.name == "fashionmnist"
    assert (len(split.train_y), len(split.val_y), len(split.test_y)) == (300, 70, 70)
    assert split.train_eval_x.shape == (50, 1, 28, 28)
    rows = split.train_x.flatten(1)
    member = (split.train_eval_x.flatten(1)[:, None, :] == rows[None]).all(-1).any(-1)
    assert member.all()  # the train-eval subset comes from the (truncated) train split
    again = data.load_tensors("fashionmnist", train_eval_size=50, train_subset=300,
                              eval_subset=70)
    assert torch.equal(again.train_eval_x, split.train_eval_x)
    full = data.load_tensors("fashionmnist", eval_subset=70)
    assert torch.equal(full.train_x[:300], split.train_x)
    moved = split.to("cpu")
    assert moved.in_shape == split.in_shape and torch.equal(moved.val_x, split.val_x)


# --- decompression cache -------------------------------------------------------------------

@needs_real
def test_cache_reused_and_atomic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LTH_DATA_DIR", str(SHARED))
    folder = data.dataset_root("mnist")
    assert folder == tmp_path / "cache"
    raw = folder / "MNIST" / "raw"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw.iterdir()}
    assert sorted(before) == sorted(data_files.RAW_FILES)  # no temp files left behind
    assert data.dataset_root("MNIST") == folder
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw.iterdir()}
    assert after == before
    # A damaged cached file is detected by md5 and replaced.
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"junk")
    data.dataset_root("mnist")
    assert data_files._md5(raw / "t10k-labels-idx1-ubyte") == data_files._RAW_MD5["mnist"][
        "t10k-labels-idx1-ubyte"]


def test_cache_rejects_corrupt_gzip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in data_files.RAW_FILES:
        with gzip.open(raw / f"{f}.gz", "wb") as fh:
            fh.write(b"not mnist")
    monkeypatch.setenv("LTH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="md5"):
        data.dataset_root("mnist", tmp_path / "data")
    leftovers = list((tmp_path / "cache" / "MNIST" / "raw").iterdir())
    assert leftovers == []


# --- batch order ---------------------------------------------------------------------------

def test_batch_indices_epochs_and_skip() -> None:
    n, bs, seed = 10, 3, 7
    stream = list(itertools.islice(data.batch_indices(n, bs, seed), 9))
    for e in range(3):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(
            seed * 1_000_003 + e))
        epoch = stream[3 * e:3 * e + 3]
        assert all(b.dtype == torch.int64 and len(b) == bs for b in epoch)
        assert torch.equal(torch.cat(epoch), perm[:9])  # last partial batch dropped
    for start in (0, 2, 3, 7):
        skipped = list(itertools.islice(data.batch_indices(n, bs, seed, start), 9 - start))
        assert all(torch.equal(a, b) for a, b in zip(skipped, stream[start:], strict=True))


def test_epoch_batch_sampler_matches_stream() -> None:
    sampler = data.EpochBatchSampler(100, 16, seed=2)
    assert len(sampler) == 6
    stream = data.batch_indices(100, 16, seed=2)
    for _ in range(3):
        for batch in sampler:
            assert batch == next(stream).tolist()
    sampler.set_epoch(1)
    first = next(iter(sampler))
    assert first == next(itertools.islice(data.batch_indices(100, 16, 2, 6), 1)).tolist()


# --- CIFAR-10 in its real on-disk format ---------------------------------------------------

class _Py2Str(bytes):
    """Bytes that pickle as a Python 2 ``str``, as in CIFAR-10's files (b'data' keys)."""


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2str(self, obj: bytes) -> None:
        raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str


def _write_py2_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


def _fake_cifar(root: Path, per_file: int = 1200, n_test: int = 1000) -> np.ndarray:
    """Write a small CIFAR-10 in the real layout; returns all train rows (N, 3072)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = []
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if fname == "test_batch" else per_file
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        _write_py2_pickle(folder / fname, {
            _Py2Str(b"batch_label"): _Py2Str(f"batch {i}".encode()),
            _Py2Str(b"labels"): labels, _Py2Str(b"data"): x,
            _Py2Str(b"filenames"): [_Py2Str(f"img_{j}.png".encode()) for j in range(n)]})
        if fname != "test_batch":
            rows.append(x)
    names = [_Py2Str(s) for s in (b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                  b"dog", b"frog", b"horse", b"ship", b"truck")]
    _write_py2_pickle(folder / "batches.meta", {
        _Py2Str(b"label_names"): names, _Py2Str(b"num_cases_per_batch"): per_file,
        _Py2Str(b"num_vis"): 3072})
    return np.concatenate(rows)


def test_cifar10_fake_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LTH_DATA_DIR", raising=False)
    rows = _fake_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")  # how the CIFAR-10 page says to read it
    assert raw[b"data"].shape == (1200, 3072) and raw[b"data"].dtype == np.uint8
    train, val, test = data.get_datasets("cifar10", root=tmp_path, verify=False, val_size=500)
    assert (len(train), len(val), len(test)) == (5500, 500, 1000)
    assert train.dataset.classes[0] == "airplane"  # type: ignore[attr-defined]
    split = data.load_tensors("CIFAR10", root=tmp_path, verify=False, val_size=500,
                              train_eval_size=100)
    assert split.train_x.shape == (5500, 3, 32, 32) and split.test_x.shape == (1000, 3, 32, 32)
    assert split.in_shape == (3, 32, 32) and split.train_eval_x.shape == (100, 3, 32, 32)
    i = int(train.indices[0])  # type: ignore[attr-defined]
    want = torch.from_numpy(rows[i].reshape(3, 32, 32)).float() / 255
    assert torch.equal(split.train_x[0], want)  # R, G, B planes of 32x32 rows
    for k in (0, 17, 499):
        x, y = val[k]
        assert torch.equal(x, split.val_x[k]) and y == int(split.val_y[k])
    aug_train, aug_val, _ = data.get_datasets("cifar10", root=tmp_path, verify=False,
                                              val_size=500, augment=True)
    assert aug_train[0][0].shape == (3, 32, 32)
    clone = pickle.loads(pickle.dumps(val.dataset))  # DataLoader workers under "spawn"
    assert torch.equal(clone[5][0], val.dataset[5][0])  # type: ignore[attr-defined]
    assert torch.equal(aug_val[3][0], split.val_x[3])  # validation is never augmented
    with pytest.raises(ValueError, match="md5"):  # the fake files are not the real ones
        data.get_datasets("cifar10", root=tmp_path, val_size=500)


def test_cifar10_missing_says_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        data.load_tensors("cifar10")
    msg = str(err.value)
    assert "download=True" in msg and "cifar-10-batches-py" in msg and str(tmp_path) in msg


# --- augmentation --------------------------------------------------------------------------

def test_augment_batch_flip_and_crop() -> None:
    x = torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = data.augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, data.augment_batch(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, data.augment_batch(x, torch.Generator().manual_seed(2)))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):  # every output is some crop of the padded image, maybe flipped
        crops = [padded[i, :, dy:dy + 12, dx:dx + 12] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    flips = data.augment_batch(x, torch.Generator().manual_seed(3), padding=0)
    assert all(torch.equal(f, a) or torch.equal(f, a.flip(-1))
               for f, a in zip(flips, x, strict=True))
    assert data.augment_batch(x[:0], torch.Generator()).shape == (0, 3, 12, 12)

"""A small fuzz of the store: random bytes, deep nesting, wrong types and huge shapes written
into the files of a finished smoke trial, then ``runs ls``, ``runs import`` and ``run``.

Pass means: every command returns an exit status (no traceback), none hangs, nothing is
written outside the store and the import's destination, and a trial that ends "finished"
holds the numbers of an uninterrupted run."""
from __future__ import annotations

import io
import json
import random
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import lthlib as lth
from lthlib.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FUZZ_SEED = 37
RUN = ["run", "imp", "--profile", "smoke", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("straight") / "runs"
    lth.run("imp", "lenet", "mnist", runs_dir=root, profile="smoke", progress=False,
            device="cpu")
    return root


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def _random_bytes(rng: random.Random) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(rng.randbytes(rng.randint(0, 4096)))


def _deep(p: Path) -> None:
    p.write_text("{\"a\":" * 60_000 + "1" + "}" * 60_000)


def _retype(key: str, value: object) -> Callable[[Path], None]:
    return lambda p: _write_json(p, {**_json(p), key: value})


def _mask_shape(shape: list[int]) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        doc = _json(p)
        doc["layers"][-1][1] = shape
        _write_json(p, doc)
    return write


def _csv_rows(text: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(p.read_text().splitlines()[0] + "\n" + text)


def _ckpt(value: Callable[[dict], object]) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        doc = torch.load(p, weights_only=True)
        buf = io.BytesIO()
        torch.save(value(doc), buf)
        p.write_bytes(buf.getvalue())
    return write


def _huge_tensor(doc: dict) -> dict:
    state = next(iter(doc["states"].values()))
    name = next(iter(state))
    state[name] = torch.zeros(1).expand(10**12)  # one float stored, 4 TB when materialised
    return doc


def cases() -> list[tuple[str, str, Callable[[Path], None]]]:
    """(file, what, mutation): each kind of damage on each kind of file."""
    rng = random.Random(FUZZ_SEED)
    return [
        ("record.json", "random bytes", _random_bytes(rng)),
        ("record.json", "deep nesting", _deep),
        ("record.json", "wrong types", _retype("sha256", ["metrics.csv", 5])),
        ("record.json", "huge numbers", _retype("networks", 10**400 // 10**300)),
        ("config.json", "random bytes", _random_bytes(rng)),
        ("config.json", "wrong types", _retype("trials", 10**12)),
        ("stages/ticket-L02.mask.json", "random bytes", _random_bytes(rng)),
        ("stages/ticket-L02.mask.json", "huge shapes", _mask_shape([10**15])),
        ("stages/ticket-L02.mask.json", "wrong types", _retype("layers", "fc1")),
        ("stages/ticket-L01.csv", "random bytes", _random_bytes(rng)),
        ("stages/ticket-L01.csv", "wrong types", _csv_rows("x,y,z\n[],{},\n")),
        ("stages/ticket-L01.csv", "huge numbers", _csv_rows("ticket,1e999,0,9" + "9" * 400
                                                            + ",1\n")),
        ("stages/ticket-L01.json", "deep nesting", _deep),
        ("stages/ticket-L01.json", "wrong types", _retype("identity", [1, 2])),
        ("ckpt/ticket-L01.pt", "random bytes", _random_bytes(rng)),
        ("ckpt/ticket-L01.pt", "huge shapes", _ckpt(_huge_tensor)),
        ("ckpt/ticket-L01.pt", "wrong types", _ckpt(lambda d: {**d, "states": [1, 2]})),
    ]


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def test_fuzzed_trial_files_never_crash_hang_escape_or_lie(straight, tmp_path, capsys):
    torch.set_num_threads(1)
    (good,) = straight.glob("imp/*/seed0-*")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched\n")
    compared = []
    for name, what, mutate in cases():
        label = f"{name}: {what}"
        root, dest = tmp_path / "case" / "runs", tmp_path / "case" / "dest"
        shutil.rmtree(tmp_path / "case", ignore_errors=True)
        shutil.copytree(straight, root)
        (trial,) = root.glob("imp/*/seed0-*")
        if name.startswith("ckpt/"):  # without the next mask, resume must read the weights
            (trial / "record.json").unlink()
            (trial / "stages" / "ticket-L02.mask.json").unlink()
        mutate(trial / name)
        with deadline(120):
            codes = [main(["runs", "ls", "--runs-dir", str(root)]),
                     main(["runs", "import", str(root), "--runs-dir", str(dest)]),
                     main([*RUN, "--runs-dir", str(root)])]
        err = capsys.readouterr().err
        assert "Traceback" not in err and set(codes) <= {0, 1, 2}, (label, codes, err)
        assert files_under(outside) == {"keep.txt"}, label
        assert set(p.name for p in (tmp_path / "case").iterdir()) <= {"runs", "dest"}, label
        if (trial / "record.json").is_file() and main(["runs", "ls", "--json", "--runs-dir",
                                                        str(root)]) == 0:
            rows = json.loads(capsys.readouterr().out)
            if any(r["status"] == "finished" for r in rows):
                for f in ("metrics.csv", "summary.csv"):
                    assert (trial / f).read_bytes() == (good / f).read_bytes(), label
                compared.append(label)
    print("finished after the fuzz, numbers compared:", compared)
    # every damage but a refused mask is recomputed to the uninterrupted run's numbers
    assert len(compared) >= len(cases()) - 3, compared

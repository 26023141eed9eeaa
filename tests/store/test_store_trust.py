"""Resume trusts nothing it did not verify: each test is one attack on a smoke store (a stage
file or checkpoint edited, copied from another seed, linked out of the store, a FIFO, a
hostile lock or JSON, a race with import) and checks that nothing wrong is used or written,
nothing hangs, and every error is one line.

Every store is a temporary copy of one finished smoke trial; nothing here trains more than
the stages an attack discards."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import lthlib as lth
from lthlib.cli import main
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import trial_configs
from lthlib.store.trial_lock import TrialLock
from lthlib.store.run_store import RunStore
from lthlib.store.transfer import import_trials

pytestmark = pytest.mark.filterwarnings("ignore:.*(recomputed|afresh)")
SMOKE = dict(profile="smoke", progress=False, device="cpu")
RUN = ["run", "imp", "--profile", "smoke", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """Seeds 0 and 1 of a LeNet IMP smoke trial (2 rounds), checkpoints included."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finished") / "runs"
    lth.run("imp", "lenet", "mnist", runs_dir=root, trials=2, **SMOKE)
    return root


@pytest.fixture
def store(finished: Path, tmp_path: Path) -> Path:
    torch.set_num_threads(1)
    dest = tmp_path / "runs"
    shutil.copytree(finished, dest)
    return dest


def trial(root: Path, seed: int = 0) -> Path:
    (path,) = root.glob(f"imp/*/seed{seed}-*")
    return path


def partial(path: Path, keep: tuple[str, ...] = ("ticket-L00", "ticket-L01")) -> None:
    """The trial as a kill leaves it: no record, only the stages in ``keep``."""
    for name in ("record.json", "metrics.csv", "summary.csv", ".lock"):
        (path / name).unlink(missing_ok=True)
    for f in (path / "stages").iterdir():
        if f.name.split(".")[0] not in keep:
            f.unlink()


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def same_numbers(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("metrics.csv",
                                                                      "summary.csv"))


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (a FIFO read blocks forever)."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- 1. resume uses only what runs ls would trust -----------------------------------------

def test_edited_stage_csv_with_forged_sidecar_is_discarded_on_resume(store, finished):
    path = trial(store)
    csv = path / "stages" / "reinit.csv"
    csv.write_text(csv.read_text().replace("0.", "0.9", 1))
    (path / "stages" / "reinit.sha256").write_text(
        hashlib.sha256(csv.read_bytes()).hexdigest() + "\n")
    assert RunStore(store).list().set_index("path").loc[
        str(path.relative_to(store)), "status"] == "corrupt"
    with pytest.warns(UserWarning, match=r"discarding .*reinit\.csv"):
        res = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert same_numbers(res.trials[0].path, trial(finished))


def test_stage_files_of_another_seed_are_refused(store, finished):
    mine, other = trial(store, 0), trial(store, 1)
    partial(mine, keep=("ticket-L00", "ticket-L01", "ticket-L02"))
    for suffix in (".csv", ".sha256", ".json"):
        shutil.copyfile(other / "stages" / f"reinit{suffix}", mine / "stages" / f"reinit{suffix}")
    info = json.loads((mine / "stages" / "reinit.json").read_text())
    info["sparse_path_below_density"] = 0.5  # another trial's settings are not obeyed either
    (mine / "stages" / "reinit.json").write_text(json.dumps(info))
    with pytest.warns(UserWarning, match=r"reinit\.csv: it belongs to run id"):
        res = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert same_numbers(res.trials[0].path, trial(finished, 0))


def test_checkpoint_of_another_seed_is_refused(store, finished):
    mine, other = trial(store, 0), trial(store, 1)
    partial(mine, keep=("ticket-L00",))  # the next mask is missing: L00's weights are needed
    shutil.copyfile(other / "ckpt" / "ticket-L00.pt", mine / "ckpt" / "ticket-L00.pt")
    with pytest.warns(UserWarning, match=r"ticket-L00\.pt: it belongs to run id"):
        res = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert same_numbers(res.trials[0].path, trial(finished, 0))


def test_mask_of_another_seed_is_refused(store):
    """Layer-wise pruning keeps equal counts in every seed: only the mask's identity tells."""
    mine, other = trial(store, 0), trial(store, 1)
    partial(mine)
    shutil.copyfile(other / "stages" / "ticket-L02.mask.json",
                    mine / "stages" / "ticket-L02.mask.json")
    with pytest.raises(ValueError, match=r"ticket-L02\.mask\.json is not this trial's: it "
                                         r"belongs to trial 'seed1-"):
        lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)


def test_forged_summary_with_its_hash_fixed_is_caught(store):
    path = trial(store)
    summary = path / "summary.csv"
    summary.write_text(summary.read_text().replace("0.", "0.99", 1))
    rec = json.loads((path / "record.json").read_text())
    rec["sha256"]["summary.csv"] = hashlib.sha256(summary.read_bytes()).hexdigest()
    (path / "record.json").write_text(json.dumps(rec))
    row = RunStore(store).list().set_index("path").loc[str(path.relative_to(store))]
    assert row["status"] == "corrupt" and "computed from metrics.csv" in row["reason"]


def test_a_stray_file_is_listed_never_adopted_or_imported(store, tmp_path):
    path = trial(store)
    partial(path, keep=("ticket-L00", "ticket-L01", "ticket-L02"))
    (path / "stages" / "big.json").write_text('{"stray": true}\n')
    lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    record = json.loads((path / "record.json").read_text())
    assert "stages/big.json" not in record["sha256"]
    row = RunStore(store).list().set_index("path").loc[str(path.relative_to(store))]
    assert row["status"] == "finished" and "stages/big.json" in row["reason"]
    report = import_trials(store, tmp_path / "dest")
    assert any(i.endswith("stages/big.json") for i in report["ignored"])
    assert not list((tmp_path / "dest").rglob("big.json"))


# --- 2. safe file handling -----------------------------------------------------------------

@pytest.mark.parametrize("folder", ["ckpt", "stages"])
def test_linked_stages_or_ckpt_folder_writes_nothing_outside(store, tmp_path, folder, capsys):
    path = trial(store)
    partial(path)
    outside = tmp_path / "outside"
    shutil.move(path / folder, outside)
    (path / folder).symlink_to(outside, target_is_directory=True)
    before = files_under(outside)
    assert main([*RUN, "--runs-dir", str(store)]) == 2
    assert "symbolic link" in one_line_error(capsys)
    assert files_under(outside) == before


def test_hard_linked_lock_never_touches_its_other_name(store, tmp_path, capsys):
    path = trial(store)
    partial(path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.link(victim, path / ".lock")
    assert main([*RUN, "--runs-dir", str(store)]) == 2
    assert "2 links" in one_line_error(capsys)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_lock_that_is_no_regular_file_is_one_line_error(store, tmp_path, kind, capsys):
    path = trial(store)
    partial(path)
    lock = path / ".lock"
    if kind == "symlink":
        lock.symlink_to(tmp_path / "elsewhere")
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with deadline(60):
        assert main([*RUN, "--runs-dir", str(store)]) == 2
    assert str(lock) in one_line_error(capsys)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name", ["record.json", "config.json", "stages/ticket-L01.csv",
                                  "stages/ticket-L02.mask.json"])
def test_fifo_in_a_trial_never_hangs(store, tmp_path, name, finished, capsys):
    path = trial(store)
    if name.startswith("stages/"):
        partial(path, keep=("ticket-L00", "ticket-L01", "ticket-L02"))
    (path / name).unlink()
    os.mkfifo(path / name)
    with deadline(120):
        assert main(["runs", "ls", "--runs-dir", str(store)]) == 0
        main(["runs", "import", str(store), "--runs-dir", str(tmp_path / "dest")])
        rc = main([*RUN, "--runs-dir", str(store)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    if name.endswith(".mask.json"):  # a stored mask that is no file is refused, named
        assert rc == 2 and "FIFO" in out.err
    else:
        assert rc == 0 and same_numbers(path, trial(finished))


def test_deeply_nested_record_is_corrupt_not_a_recursion_error(store):
    path = trial(store)
    (path / "record.json").write_text("[" * 100_000 + "]" * 100_000)
    row = RunStore(store).list().set_index("path").loc[str(path.relative_to(store))]
    assert row["status"] == "corrupt" and "nested" in row["reason"]


def test_record_that_is_a_directory_is_corrupt(store):
    path = trial(store)
    (path / "record.json").unlink()
    (path / "record.json").mkdir()
    row = RunStore(store).list().set_index("path").loc[str(path.relative_to(store))]
    assert row["status"] == "corrupt" and "directory" in row["reason"]
    with pytest.raises(ValueError, match=r"record\.json is a directory; allowed"):
        lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)  # before any training


@pytest.mark.parametrize("shape", [[-1], [10**15], [784, 300]])
def test_mask_with_impossible_shape_is_refused_before_allocation(store, shape):
    path = trial(store)
    partial(path, keep=("ticket-L00", "ticket-L01", "ticket-L02"))
    mask = path / "stages" / "ticket-L02.mask.json"
    doc = json.loads(mask.read_text())
    doc["layers"][0][1] = shape
    mask.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"ticket-L02\.mask\.json"):
        lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)


# --- 3. import respects the lock ----------------------------------------------------------

def test_import_waits_for_or_skips_a_trial_being_trained(finished, tmp_path):
    cfg = trial_configs(make_experiment("imp", "lenet", "mnist", "smoke", trials=2))[0]
    dest = tmp_path / "dest"
    lock = TrialLock(RunStore(dest).trial_dir(cfg))
    assert lock.try_acquire()
    try:
        report = import_trials(finished, dest, wait=False)
        assert [p.split("/")[-1].split("-")[0] for p in report["busy"]] == ["seed0"]
        assert not (lock.path.parent / "record.json").exists()
        done: list[dict] = []
        waiter = threading.Thread(target=lambda: done.append(import_trials(finished, dest)))
        waiter.start()
        waiter.join(2)
        assert waiter.is_alive()  # waits for the holder
    finally:
        lock.release()
    waiter.join(60)
    assert len(done[0]["imported"]) == 1 and RunStore(dest).load(cfg) is not None


# --- 4. clear errors -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["index.csv", "README.md"])
def test_index_file_that_is_a_directory_is_one_warning_line(store, name, capsys):
    (store / name).unlink()
    (store / name).mkdir()
    assert main(["runs", "ls", "--runs-dir", str(store)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: ") and len(err.splitlines()) == 1 and name in err


def test_read_only_store_is_one_line(store, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(store / "index.csv"))
    (store / "index.csv").unlink()
    monkeypatch.setattr("lthlib.store.index.atomic_write_text", refuse)
    assert main(["runs", "ls", "--runs-dir", str(store)]) == 0  # listed all the same
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err
    monkeypatch.setattr("lthlib.store.trial_lock.TrialLock._open", refuse)
    partial(trial(store))
    assert main([*RUN, "--runs-dir", str(store)]) == 2
    assert "Permission denied" in one_line_error(capsys)


@pytest.mark.parametrize("argv,words", [
    (["--runs-dir", ""], ["runs_dir ''", "allowed"]),
    (["--trials", str(10**12)], [str(10**12), "1 to 10000"]),
    (["--seed", str(10**23)], [str(10**23), "2147483647"]),
])
def test_out_of_range_or_empty_values_are_one_line(argv, words, capsys, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--runs-dir" not in argv:
        argv = [*argv, "--runs-dir", str(tmp_path / "runs")]
    assert main([*RUN, *argv]) == 2
    line = one_line_error(capsys)
    assert all(w in line for w in words), line
    assert not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for argv in ([*RUN], ["runs", "ls"], ["runs", "import", str(tmp_path)]):
        assert main([*argv, "--runs-dir", str(tmp_path / "file")]) == 2
        assert "not a folder" in one_line_error(capsys)


def test_failed_start_leaves_no_lock_and_no_empty_folder(tmp_path, capsys):
    (tmp_path / "nodata").mkdir()
    runs = tmp_path / "runs"
    rc = main([*RUN, "--runs-dir", str(runs), "--data-dir", str(tmp_path / "nodata")])
    assert rc == 2
    one_line_error(capsys)
    assert not list(runs.rglob(".lock")) and not list(runs.glob("imp/*"))


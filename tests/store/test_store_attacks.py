"""The runs store under attack and accident: each test crafts a hostile or damaged store (or
a race, or a kill) and checks that nothing wrong is used, written or hidden.

Every store here is a temporary copy of one finished smoke trial; the committed ``runs/`` is
only read (the last test)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import lthlib as lth
from lthlib.cli import main
from lthlib.config.paper import EXPERIMENTS
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run_experiment, trial_configs
from lthlib.store.run_store import RunStore
from lthlib.store.transfer import import_trials

# the recomputations below warn by design; the tests assert on what they check
pytestmark = pytest.mark.filterwarnings("ignore:.*(recomputed|afresh)")

REPO = Path(__file__).resolve().parents[2]
SMOKE = dict(profile="smoke", progress=False, device="cpu")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A store holding one finished LeNet IMP smoke trial (2 rounds), checkpoints included."""
    root = tmp_path_factory.mktemp("finished") / "runs"
    lth.run("imp", "lenet", "mnist", runs_dir=root, **SMOKE)
    return root


@pytest.fixture
def store(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs"
    shutil.copytree(finished, dest)
    return dest


def only_trial(root: Path) -> Path:
    (path,) = [p.parent for p in root.glob("*/*/*/record.json")]
    return path


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def run_id_of(cfg: dict) -> str:
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def craft(trial: Path, **fields: object) -> None:
    """Change config fields and recompute the run id, as an attacker would."""
    cfg = json.loads((trial / "config.json").read_text())
    cfg.update(fields)
    text = json.dumps(cfg, indent=1) + "\n"
    (trial / "config.json").write_text(text)
    rec = json.loads((trial / "record.json").read_text())
    rec["run_id"] = run_id_of(cfg)
    if "config.json" in rec.get("sha256", {}):
        rec["sha256"]["config.json"] = hashlib.sha256(text.encode()).hexdigest()
    (trial / "record.json").write_text(json.dumps(rec, indent=1))


# --- 1. a crafted import writes nothing outside the destination ----------------------------

@pytest.mark.parametrize("fields", [{"seed": "0/../../../../escaped"},
                                    {"lr_setting": "../../../x"}])
def test_crafted_import_writes_nothing_outside_destination(store, tmp_path, fields, capsys):
    craft(only_trial(store), **fields)
    dest = tmp_path / "area" / "dest" / "runs"
    dest.mkdir(parents=True)
    before = files_under(tmp_path)
    report = import_trials(store, dest)
    assert report["imported"] == [] and len(report["corrupt"]) == 1
    assert str(list(fields.values())[0]) in report["corrupt"][0]
    after = files_under(tmp_path)
    written = sorted(set(after) - set(before))
    outside = [w for w in written if not (tmp_path / w).is_relative_to(dest)]
    assert outside == []
    assert not list(tmp_path.rglob("escaped*")) and not list(tmp_path.rglob("x"))
    assert main(["runs", "import", str(store), "--runs-dir", str(dest)]) == 1
    assert "corrupt" in capsys.readouterr().out


# --- 2. a tampered result is never used -------------------------------------------------------

@pytest.mark.parametrize("how", ["removed", "empty"])
def test_tampered_summary_without_hashes_is_unverified_and_recomputed(store, tmp_path, how,
                                                                       capsys):
    trial = only_trial(store)
    original = pd.read_csv(trial / "summary.csv")["final_test_acc"].iloc[0]
    rec = json.loads((trial / "record.json").read_text())
    if how == "removed":
        del rec["sha256"]
    else:
        rec["sha256"] = {}
    (trial / "record.json").write_text(json.dumps(rec))
    summary = pd.read_csv(trial / "summary.csv")
    summary.loc[0, "final_test_acc"] = 0.999
    summary.to_csv(trial / "summary.csv", index=False)
    listing = RunStore(store).list()
    assert listing["status"].tolist() == ["unverified"]
    assert "sha256" in listing["reason"].iloc[0]
    assert main(["runs", "ls", "--runs-dir", str(store)]) == 0
    assert "unverified" in capsys.readouterr().out
    report = import_trials(store, tmp_path / "dest")
    assert report["imported"] == [] and len(report["unverified"]) == 1
    assert not list((tmp_path / "dest").glob("*/*/*/summary.csv"))
    with pytest.warns(UserWarning, match="unverified"):
        res = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert res.summary["final_test_acc"].iloc[0] == original != 0.999


def test_edited_stage_csv_makes_the_trial_corrupt(store):
    trial = only_trial(store)
    stage = trial / "stages" / "reinit.csv"
    text = stage.read_text()
    stage.write_text(text.replace("0.", "0.9", 1))
    (trial / "stages" / "reinit.sha256").write_text(
        hashlib.sha256(stage.read_text().encode()).hexdigest() + "\n")  # sidecar forged too
    row = RunStore(store).list().iloc[0]
    assert row["status"] == "corrupt" and "stages/reinit.csv" in row["reason"]


# --- 3. import never follows symbolic links ---------------------------------------------------

@pytest.mark.parametrize("name", ["stages/ticket-L00.json", "stages/extra.json"])
def test_import_never_follows_symlinks(store, tmp_path, name):
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}\n')
    trial = only_trial(store)
    link = trial / name
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    rec = json.loads((trial / "record.json").read_text())  # the record even vouches for it
    rec.setdefault("sha256", {})[name] = hashlib.sha256(secret.read_bytes()).hexdigest()
    (trial / "record.json").write_text(json.dumps(rec))
    dest = tmp_path / "dest"
    report = import_trials(store, dest)
    assert report["imported"] == []
    assert any(name in s for s in report["symlinks"])
    assert not any(b"hunter2" in data for data in files_under(dest).values())
    assert RunStore(store).list()["status"].tolist() == ["corrupt"]


def test_import_never_enters_a_symlinked_folder(store, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(store / "imp", outside)  # a whole group of genuine trials, elsewhere
    (store / "oneshot").symlink_to(outside, target_is_directory=True)
    report = import_trials(store, tmp_path / "dest")
    assert report["symlinks"] == ["oneshot"] and len(report["imported"]) == 1
    assert not (tmp_path / "dest" / "oneshot").exists()
    row = RunStore(store).list().set_index("path").loc["oneshot"]
    assert row["status"] == "corrupt" and "symbolic link" in row["reason"]
    # a run never computes (or deletes) through the link either
    before = files_under(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        lth.run("oneshot", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert files_under(outside) == before


# --- 4. the folder must be the one its config hashes to ---------------------------------------

def test_misplaced_folder_is_not_returned_for_another_config(store):
    asked = make_experiment("imp", "lenet", "mnist", "smoke", rounds=1)
    target = RunStore(store).trial_dir(trial_configs(asked)[0])
    shutil.copytree(only_trial(store), target)  # a 2-round trial in the 1-round folder
    assert {r.status for r in RunStore(store).list().itertuples()
            if r.path == str(target.relative_to(store))} == {"corrupt"}
    with pytest.warns(UserWarning, match="hashes to"):
        res = run_experiment(asked, store, device="cpu", progress=False)
    (trial,) = res.trials
    assert trial.config.prune.rounds == 1 and trial.summary["level"].nunique() == 2


# --- 5. JSON of the wrong type is "corrupt", never a crash ------------------------------------

@pytest.mark.parametrize("name,content", [("record.json", "[1, 2]"), ("record.json", '"x"'),
                                          ("config.json", "[1, 2]"),
                                          ("config.json", '{"experiment": "imp"}')])
def test_wrong_json_type_is_listed_corrupt_and_recomputed(store, tmp_path, name, content,
                                                          capsys):
    trial = only_trial(store)
    (trial / name).write_text(content)
    listing = RunStore(store).list()
    assert listing["status"].tolist() == ["corrupt"] and name in listing["reason"].iloc[0]
    assert main(["runs", "ls", "--runs-dir", str(store)]) == 0  # every trial corrupt
    out = capsys.readouterr().out
    assert "corrupt" in out and "Traceback" not in out
    report = import_trials(store, tmp_path / "dest")
    assert report["imported"] == [] and len(report["corrupt"]) == 1
    capsys.readouterr()
    assert main(["run", "imp", "--profile", "smoke", "--device", "cpu", "--no-progress",
                 "--runs-dir", str(store)]) == 0
    assert "1 of 1 trial(s) finished" in capsys.readouterr().out
    res = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    assert len(res.summary) == 5  # 3 tickets + 2 re-inits, read back from a sound record
    assert RunStore(store).list()["status"].tolist() == ["finished"]


# --- 6. one process per trial -----------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys, time
    import lthlib as lth
    import lthlib.experiments.procedures as E
    trained = []
    original = E.train_members
    def counting(members, *args, **kwargs):
        if os.environ.get("MARK") and not trained:  # hold the trial until told to go on
            open(os.environ["MARK"], "w").close()
            deadline = time.monotonic() + 300
            while not os.path.exists(os.environ["GO"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        trained.append(len(members))
        return original(members, *args, **kwargs)
    E.train_members = counting
    extra = {} if sys.argv[2] == "wait" else {"wait": False}  # waiting is the default
    res = lth.run("imp", "lenet", "mnist", profile="smoke", runs_dir=sys.argv[1],
                  progress=False, device="cpu", **extra)
    print(json.dumps({"trained": sum(trained), "trials": len(res.trials)}))
""")


def _child(root: Path, mode: str, **env: str) -> subprocess.Popen:
    import torch
    # the thread count of the process that trained `finished`: float sums depend on it
    full = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **env}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), mode], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_on_one_trial_train_it_once(tmp_path, finished):
    root = tmp_path / "runs"
    mark = tmp_path / "first-is-training"
    go = tmp_path / "go-on"
    first = _child(root, "wait", MARK=str(mark), GO=str(go))
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    # the first holds the trial until the second says it waits: no race on a loaded machine
    second = _child(root, "wait")
    waiting, lines = threading.Event(), []

    def read_stderr() -> None:
        for line in second.stderr:
            lines.append(line)
            if "waiting for process" in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    said = waiting.wait(240)
    go.touch()
    out1, err1 = first.communicate(timeout=300)
    out2 = second.stdout.read()
    second.wait(timeout=300)
    reader.join(30)
    err2 = "".join(lines)
    assert said, err2
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    a, b = json.loads(out1.splitlines()[-1]), json.loads(out2.splitlines()[-1])
    assert a["trials"] == b["trials"] == 1
    assert a["trained"] + b["trained"] == 5  # 3 tickets + 2 re-inits: the work is done once
    assert a["trained"] == 5 and b["trained"] == 0
    assert "waiting for process" in err2
    # the bytes equal those of a trial trained alone
    mine, alone = only_trial(root), only_trial(finished)
    for name in ("metrics.csv", "summary.csv", "config.json", "stages/ticket-L02.csv",
                 "stages/reinit.csv"):
        assert (mine / name).read_bytes() == (alone / name).read_bytes(), name


def test_a_trial_locked_elsewhere_is_skipped_with_a_message(tmp_path, capsys):
    from lthlib.store.trial_lock import TrialLock
    cfg = make_experiment("imp", "lenet", "mnist", "smoke")
    lock = TrialLock(RunStore(tmp_path).trial_dir(trial_configs(cfg)[0]))
    assert lock.try_acquire()
    try:
        res = run_experiment(cfg, tmp_path, device="cpu", progress=False, wait=False)
    finally:
        lock.release()
    assert res.trials == [] and "skipping" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/*/*/stages/*.csv"))  # nothing was trained
    assert (lock.path.parent / ".lock").exists()  # the lock file stays (gitignored)
    assert len(run_experiment(cfg, tmp_path, device="cpu", progress=False).trials) == 1


def test_resume_under_another_sparse_threshold_is_refused(store, monkeypatch):
    trial = only_trial(store)
    (trial / "record.json").unlink()  # an interrupted trial: every stage stored, no record
    monkeypatch.setenv("LTH_SPARSE_BELOW", "0")
    with pytest.raises(ValueError, match=r"sparse_path_below_density=0\.15.*LTH_SPARSE_BELOW"):
        lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE)
    monkeypatch.setenv("LTH_SPARSE_BELOW", "0.15")
    rec = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE).trials[0].record
    assert rec["sparse_path_below_density"] == 0.15
    assert {s["sparse_path_below_density"] for s in rec["stage_settings"].values()} == {0.15}


def test_resume_at_another_thread_count_records_the_mixture(store):
    import torch
    trial = only_trial(store)
    (trial / "record.json").unlink()
    for suffix in (".csv", ".sha256", ".json"):
        (trial / "stages" / f"reinit{suffix}").unlink()
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        rec = lth.run("imp", "lenet", "mnist", runs_dir=store, **SMOKE).trials[0].record
    finally:
        torch.set_num_threads(before)
    threads = {stage: s["threads"] for stage, s in rec["stage_settings"].items()}
    assert threads["reinit"] == before + 1 and threads["ticket-L00"] != threads["reinit"]
    assert rec["numeric_settings_mixed"] is True


# --- 7. a kill between the record and the index heals itself ----------------------------------

def test_kill_between_record_and_index_is_healed_by_the_next_command(tmp_path, monkeypatch,
                                                                     capsys):
    root = tmp_path / "runs"

    def killed(self):
        raise SystemExit("killed between record.json and the index")

    with monkeypatch.context() as m:
        m.setattr(RunStore, "write_index", killed)
        with pytest.raises(SystemExit):
            lth.run("imp", "lenet", "mnist", runs_dir=root, **SMOKE)
    assert (only_trial(root) / "record.json").exists()
    assert not (root / "README.md").exists() and not (root / "index.csv").exists()
    lth.run("imp", "lenet", "mnist", runs_dir=root, **SMOKE)  # finished: nothing to train
    assert "| finished |" in (root / "README.md").read_text()
    assert pd.read_csv(root / "index.csv")["status"].tolist() == ["finished"]
    for argv in (["runs", "ls", "--runs-dir", str(root)],
                 ["runs", "import", str(tmp_path / "empty"), "--runs-dir", str(root)]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        (root / "README.md").unlink()
        (root / "index.csv").write_text("path,status\n")  # stale: lists no trial
        assert main(argv) == 0
        assert "| finished |" in (root / "README.md").read_text()
        assert len(pd.read_csv(root / "index.csv")) == 1
    capsys.readouterr()


# --- the committed store still reads back -----------------------------------------------------

def test_every_committed_trial_is_finished_and_verified():
    runs = REPO / "runs"
    try:
        out = subprocess.run(["git", "ls-files", "--", *(f"runs/{e}/*/*/record.json"
                                                          for e in EXPERIMENTS)],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
        paths = [REPO / p for p in out]
    except (OSError, subprocess.CalledProcessError):
        paths = sorted(p for e in EXPERIMENTS for p in runs.glob(f"{e}/*/*/record.json"))
    if not paths:
        pytest.skip("no committed trials")
    store = RunStore(runs)
    for rec_file in paths:
        rec = store.read(rec_file.parent)  # raises if unverified, corrupt or misplaced
        assert rec.record["status"] == "finished"
        assert rec_file.parent.name == f"seed{rec.config.seed}-{rec.config.run_id()}"
        assert store.load(rec.config) is not None


# --- the one-off migration adds hashes only where the existing ones verify ------------------

def _as_old_record(trial: Path) -> None:
    """What records written before every file was hashed look like."""
    rec = json.loads((trial / "record.json").read_text())
    rec["sha256"] = {k: v for k, v in rec["sha256"].items()
                     if k in ("metrics.csv", "summary.csv")}
    (trial / "record.json").write_text(json.dumps(rec, indent=1) + "\n")


def test_migration_adds_hashes_only_where_the_existing_ones_verify(store, tmp_path, capsys):
    from lthlib.store.transfer import migrate_hashes
    trial = only_trial(store)
    _as_old_record(trial)
    assert RunStore(store).list()["status"].tolist() == ["unverified"]
    assert migrate_hashes(store, dry_run=True)["migrated"] and RunStore(store).list()[
        "status"].tolist() == ["unverified"]  # a dry run changes nothing
    assert main(["runs", "migrate", "--runs-dir", str(store)]) == 0
    rec = RunStore(store).read(trial).record  # verifies in full now
    assert "stages/reinit.csv" in rec["sha256"] and rec["sha256_migration"]["added"] > 0
    assert migrate_hashes(store)["complete"] == [str(trial.relative_to(store))]
    capsys.readouterr()
    # an old record whose summary was edited after its hash was removed is refused
    for damage in ("summary", "stage"):
        other = tmp_path / damage
        shutil.copytree(store, other)
        t = only_trial(other)
        _as_old_record(t)
        if damage == "summary":
            rec = json.loads((t / "record.json").read_text())
            del rec["sha256"]["summary.csv"]
            (t / "record.json").write_text(json.dumps(rec))
        else:  # a stage edited without updating its .sha256 file
            stage = t / "stages" / "ticket-L01.csv"
            stage.write_text(stage.read_text().replace("0.", "0.9", 1))
        report = migrate_hashes(other)
        assert report["migrated"] == [] and len(report["refused"]) == 1, damage
        assert RunStore(other).list()["status"].tolist() == ["unverified"]

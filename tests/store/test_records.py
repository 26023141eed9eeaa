"""The one record writer and reader (lthlib.store.records): what it writes verifies, and a
file that was changed, removed or replaced by a link is refused in one line."""
from __future__ import annotations

import hashlib
import json

import pytest

from lthlib.store import records
from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError


def _written(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "a.csv").write_text("x\n1\n")
    rec = records.write_record(tmp_path, {"curve.csv": "a,b\n1,2\n", "lmc.json": "{}\n"},
                               {"status": "finished", "git_commit": "abc"},
                               hashed=["stages/a.csv"])
    return rec


def test_the_written_record_verifies_and_carries_the_common_fields(tmp_path):
    rec = _written(tmp_path)
    assert (tmp_path / "curve.csv").read_text() == "a,b\n1,2\n"
    assert rec["git_commit"] == "abc" and rec["lthlib_version"] and rec["finished_at"]
    assert rec["sha256"] == {
        "stages/a.csv": hashlib.sha256(b"x\n1\n").hexdigest(),
        "curve.csv": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        "lmc.json": hashlib.sha256(b"{}\n").hexdigest()}
    assert json.loads((tmp_path / "record.json").read_text()) == rec
    assert records.read_record(tmp_path, ("curve.csv", "lmc.json")) == rec
    fresh = records.write_record(tmp_path / "other", {"f.txt": "t"}, {})
    assert fresh["git_commit"] == records.git_commit()


@pytest.mark.parametrize("attack, message", [
    (lambda d: (d / "curve.csv").write_text("a,b\n1,3\n"), "does not match its sha256"),
    (lambda d: (d / "stages" / "a.csv").unlink(), "is missing"),
    (lambda d: ((d / "curve.csv").unlink(), (d / "curve.csv").symlink_to(d / "lmc.json")),
     "symbolic link"),
    (lambda d: ((d / "stages" / "a.csv").rename(d / "elsewhere.csv"),
                (d / "stages").rename(d / "real"), (d / "stages").symlink_to(d / "real")),
     "symbolic link"),
])
def test_a_changed_missing_or_linked_file_is_refused_in_one_line(tmp_path, attack, message):
    _written(tmp_path)
    attack(tmp_path)
    with pytest.raises(CorruptRecordError, match=message) as err:
        records.read_record(tmp_path)
    assert "\n" not in str(err.value)


def test_records_that_hash_too_little_or_name_outside_files_are_refused(tmp_path):
    rec = _written(tmp_path)
    with pytest.raises(UnverifiedRecordError, match="no sha256 for path.csv"):
        records.read_record(tmp_path, ("curve.csv", "path.csv"))
    bad = {**rec, "sha256": {"../escape": "00"}}
    (tmp_path / "record.json").write_text(json.dumps(bad))
    with pytest.raises(CorruptRecordError, match="outside the run"):
        records.read_record(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({**rec, "sha256": ["curve.csv"]}))
    with pytest.raises(CorruptRecordError, match="must map file names"):
        records.read_record(tmp_path)
    (tmp_path / "record.json").unlink()
    with pytest.raises(FileNotFoundError):
        records.read_record(tmp_path)


def test_the_writer_owns_its_fields_and_names(tmp_path):
    with pytest.raises(ValueError, match="sha256 are the writer's"):
        records.write_record(tmp_path, {}, {"sha256": {}})
    with pytest.raises(ValueError, match="each name once"):
        records.write_record(tmp_path, {"a.csv": ""}, {}, hashed=["a.csv"])
    with pytest.raises(CorruptRecordError, match="outside the run"):
        records.write_record(tmp_path, {"../a.csv": ""}, {})
    assert not (tmp_path / "record.json").exists()


def test_committed_lmc_records_still_verify():
    from pathlib import Path

    from lthlib.studies.lmc import LMC_FILES
    root = Path(__file__).resolve().parents[2] / "runs" / "lmc"
    found = sorted(root.glob("lenet-*/seed*/record.json"))
    assert found
    for rec_file in found:
        rec = records.read_record(rec_file.parent, LMC_FILES)
        assert rec == json.loads(rec_file.read_text())


def test_an_amended_record_adds_hashes_and_fields_and_keeps_the_rest(tmp_path):
    rec = _written(tmp_path)
    (tmp_path / "stages" / "b.mask.json").write_text('{"bits": ""}\n')
    amended = records.amend_record(tmp_path, rec, hashed=["stages/b.mask.json"],
                                   fields={"sealed": 1})
    assert records.read_record(tmp_path, ["stages/b.mask.json"]) == amended
    assert {k: v for k, v in amended.items() if k not in ("sha256", "sealed")} == \
        {k: v for k, v in rec.items() if k != "sha256"}
    assert set(amended["sha256"]) == {*rec["sha256"], "stages/b.mask.json"}
    with pytest.raises(ValueError, match="the writer's"):
        records.amend_record(tmp_path, rec, fields={"finished_at": "now"})

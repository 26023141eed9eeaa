"""Moving finished trials between stores, and hashing the files of older records.

Results computed elsewhere (a Ray worker, a lent GPU machine, another clone) come in through
:func:`import_trials`, which reads the source as hostile and writes each trial's record last.
:func:`migrate_hashes` is the one-off upgrade of records written before every file was hashed.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from lthlib.util.atomic import atomic_write_text
from lthlib.store.records import amend_record
from lthlib.config.experiment import ExperimentConfig
from lthlib.store.trial_lock import TrialLock
from lthlib.store.file_checks import (RECORD_FILES, STAGE_SUFFIXES, hashed_names, inside,
                                      json_object, links_below, read_text, sha256_text)
from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError
from lthlib.store.run_store import RunStore


def trial_files(trial_dir: Path) -> dict[str, str]:
    """A finished trial's records as ``{relative posix path: text}`` (never checkpoints):
    the record files, and the stage files its record hashes (metrics, hash, timing, masks).
    Files the record does not hash are unknown and stay behind; nothing is read through a
    link or from anything but a regular file."""
    record = json_object(trial_dir / "record.json")
    hashes = record.get("sha256") if isinstance(record.get("sha256"), dict) else {}
    names = [n for n in RECORD_FILES] + sorted(
        n for n in hashes if isinstance(n, str) and n.startswith("stages/")
        and len(PurePosixPath(n).parts) == 2)
    return {name: read_text(trial_dir.joinpath(*PurePosixPath(name).parts)) for name in names}


def write_trial_files(store: RunStore, cfg: ExperimentConfig, files: dict[str, str]) -> None:
    """Write a trial's files (from :func:`trial_files`) into ``store`` atomically, verify it.

    ``record.json`` is written last (it marks the trial finished), so a writer interrupted
    mid-way leaves a partial trial that the next run recomputes, never a wrong one. Every
    destination is checked to lie inside the trial's folder; a set that does not verify
    leaves no finished record behind.
    """
    missing = [n for n in RECORD_FILES if n not in files]
    if missing:
        raise ValueError(f"trial files lack {', '.join(missing)}; expected at least "
                         f"{', '.join(RECORD_FILES)}")
    root = store.writable_dir(cfg)
    for name in files:
        rel = PurePosixPath(name)
        ok = (not rel.is_absolute() and ".." not in rel.parts and len(rel.parts) >= 1
              and (name in RECORD_FILES or (len(rel.parts) == 2 and rel.parts[0] == "stages"
                                            and rel.suffix in STAGE_SUFFIXES)))
        if not ok:
            raise ValueError(f"refusing to write {name!r} outside the trial's records; allowed: "
                             f"{', '.join(RECORD_FILES)}, stages/*.csv|.sha256|.json")
        links = links_below(store.root, root.joinpath(*rel.parts)) if root.is_relative_to(
            store.root) else []
        if links:
            raise ValueError(f"refusing to write {name!r} through the symbolic link "
                             f"{links[0]} in {store.root}")
        inside(root, root.joinpath(*rel.parts))
    for name in sorted(files, key=lambda n: n == "record.json"):
        atomic_write_text(root.joinpath(*PurePosixPath(name).parts), files[name])
    try:
        store.read(root)
    except (FileNotFoundError, CorruptRecordError) as err:
        (root / "record.json").unlink(missing_ok=True)
        raise RuntimeError(f"records written to {root} do not verify ({err}); removed their "
                           f"record.json, so the trial counts as partial") from err


IMPORT_OUTCOMES = ("imported", "already_present", "partial", "corrupt", "unverified",
                   "symlinks", "busy", "ignored")


def import_trials(source: str | os.PathLike, dest: str | os.PathLike | None = None,
                  wait: bool = True) -> dict[str, list[str]]:
    """Copy the finished, verified trials of the store at ``source`` into ``dest``.

    For results computed elsewhere (a lent GPU machine, another clone). The source is read
    as hostile: a trial is copied only when its folder is the one its config hashes to,
    every field naming a folder is a plain name, every file matches the sha256 in its
    record and no file is a symbolic link; every destination is checked to lie inside
    ``dest``. A trial whose run id ``dest`` already holds finished is skipped, never
    overwritten. Each destination trial's lock is taken first (:class:`TrialLock`): a
    trial another process is training is waited for (``wait``) or skipped (``busy``), so
    an import never records a trial a running process computes. Returns the relative paths
    per outcome (:data:`IMPORT_OUTCOMES`; corrupt and unverified ones with their reason,
    every symbolic link met, and the unknown files left behind as ``ignored``).
    """
    src, dst = RunStore(source), RunStore(dest)
    if not src.root.is_dir():
        raise FileNotFoundError(f"no runs store at {src.root}: not a folder")
    if src.root.resolve() == dst.root.resolve():
        raise ValueError(f"source and destination are the same store: {src.root}")
    out: dict[str, list[str]] = {k: [] for k in IMPORT_OUTCOMES}
    for path in src.trial_paths():
        rel = str(path.relative_to(src.root))
        if path.is_symlink():
            out["symlinks"].append(rel)
        else:
            out["symlinks"].extend(f"{rel}/{link}" for link in hashed_names(path)[1])
        try:
            rec = src.read(path)
        except FileNotFoundError:
            out["partial"].append(rel)
            continue
        except UnverifiedRecordError as err:
            out["unverified"].append(f"{rel} ({err})")
            continue
        except (CorruptRecordError, OSError, UnicodeDecodeError) as err:
            out["corrupt"].append(f"{rel} ({err})")
            continue
        out["ignored"].extend(f"{rel}/{name}" for name in rec.unknown)
        try:
            outcome = _import_one(dst, rec.config, rec.path, wait)
        except PermissionError:
            raise  # a destination this user cannot write: one error, not one per trial
        except (ValueError, RuntimeError, OSError, CorruptRecordError) as err:
            out["corrupt"].append(f"{rel} ({err})")
            continue
        out[outcome].append(rel)
    if out["imported"]:
        dst.write_index_or_warn()
    else:
        dst.ensure_index()
    return out


def _import_one(dst: RunStore, cfg: ExperimentConfig, source: Path, wait: bool) -> str:
    """Copy one verified trial under the destination trial's lock: "imported",
    "already_present" or "busy" (another process holds the lock and ``wait`` is False)."""
    if dst.load(cfg) is not None:
        return "already_present"
    lock = TrialLock(dst.writable_dir(cfg))
    if wait:
        lock.acquire()
    elif not lock.try_acquire():
        return "busy"
    try:
        if dst.load(cfg) is not None:  # finished by the process that held the lock
            return "already_present"
        write_trial_files(dst, cfg, trial_files(source))
        return "imported"
    finally:
        lock.release(remove=True)


# --- one-off: hash every file of records written before stage files were hashed -------------

def migrate_hashes(runs_dir: str | os.PathLike | None = None, dry_run: bool = False
                   ) -> dict[str, list[str]]:
    """Add the missing sha256 of older finished trials, only where the existing ones verify.

    Records written before this rule hashed ``metrics.csv`` and ``summary.csv`` only. A trial
    is migrated when those hashes match, its folder is the one its config hashes to (so
    ``config.json`` is verified by the run id), each stage CSV matches the ``.sha256`` file
    written beside it, and nothing is a symbolic link; the stage timing/mask JSON files had
    no hash and are taken as they are. The record then hashes every file and says when and
    how it was migrated (``sha256_migration``). Returns the trial paths per outcome:
    migrated, complete (nothing to add), refused (with the reason), partial.
    """
    store = RunStore(runs_dir)
    out: dict[str, list[str]] = {"migrated": [], "complete": [], "refused": [], "partial": []}
    for path in store.trial_paths():
        rel = str(path.relative_to(store.root))
        try:
            rec = store.read(path, require_all_hashes=False)
            names, _ = hashed_names(path)
            lacking = [n for n in names if n not in (rec.record.get("sha256") or {})]
            for name in lacking:
                if not name.startswith("stages/") and name != "config.json":
                    raise UnverifiedRecordError(f"its record has no sha256 for {name}, "
                                                f"which nothing else can verify")
                if name.endswith(".csv"):
                    csv = path.joinpath(*PurePosixPath(name).parts)
                    side = csv.with_suffix(".sha256")
                    try:
                        ok = read_text(side, 1024).strip() == sha256_text(read_text(csv))
                    except FileNotFoundError:
                        ok = False
                    if not ok:
                        raise CorruptRecordError(f"{csv} does not match its .sha256 file")
        except FileNotFoundError:
            out["partial"].append(rel)
            continue
        except (CorruptRecordError, OSError, UnicodeDecodeError) as err:
            out["refused"].append(f"{rel} ({err})")
            continue
        if not lacking:
            out["complete"].append(rel)
            continue
        migration = {
            "migrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "added": len(lacking),
            "rule": "added after the existing sha256 (metrics.csv, summary.csv) verified, the "
                    "folder matched its config's run id and every stage CSV matched its "
                    ".sha256 file; stage JSON files had no earlier hash"}
        if not dry_run:
            amend_record(path, rec.record, hashed=lacking,
                         fields={"sha256_migration": migration})
            store.read(path)  # the migrated record must now verify in full
        out["migrated"].append(rel)
    if out["migrated"] and not dry_run:
        store.write_index()
    return out

"""The one writer and reader of a stored run's ``record.json``: its files' sha256, checked back.

Every stored run (a trial of :mod:`lthlib.store.run_store`, an lmc measurement, a stability
pair, a plateau curve) ends with a ``record.json`` that holds the sha256 of the files it
vouches for, the lthlib version, the commit of the code that computed it and when it was
written. :func:`write_record` writes the files first and the record last (atomically), so a
record never names a file that is not yet there; :func:`read_record` refuses, with a one-line
:class:`~lthlib.util.errors.CorruptRecordError`, a record whose files do not match, are
missing, or are symbolic links, reading through the size-limited readers of
:mod:`lthlib.store.file_checks`. :func:`amend_record` adds hashes of files written later
(sealed masks, a migration) to a finished record.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from lthlib.store.file_checks import json_object, read_bytes, sha256_text
from lthlib.util.atomic import atomic_write_text
from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError
from lthlib.util.version import __version__

RECORD_NAME = "record.json"
WRITER_FIELDS = ("lthlib_version", "git_commit", "finished_at", "sha256")


def git_commit() -> str:
    """HEAD of the code's repository, ``-dirty`` when tracked files differ from it. Changes
    under ``runs/`` do not count: finished trials rewrite the index while others still run."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, cwd=here, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)runs"],
                               capture_output=True, text=True, cwd=here, timeout=5)
        sha = out.stdout.strip()
        return (sha + ("-dirty" if dirty.stdout.strip() else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _relative(folder: Path, name: object, what: str) -> Path:
    """``folder / name`` for a plain relative ``/``-separated name that stays in ``folder``."""
    rel = PurePosixPath(name) if isinstance(name, str) else None
    if rel is None or not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise CorruptRecordError(f"{what} names {name!r}, outside the run; allowed: a "
                                 f"relative path inside {folder}")
    return folder.joinpath(*rel.parts)


def _linked_part(folder: Path, name: str) -> Path | None:
    """The first component of ``name`` below ``folder`` that is a symbolic link, if any."""
    cur = folder
    for part in PurePosixPath(name).parts:
        cur = cur / part
        if cur.is_symlink():
            return cur
    return None


def file_digest(path: Path) -> str:
    """sha256 of a regular file's bytes (size-limited; links refused, never followed)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()


def write_record(folder: str | os.PathLike, texts: Mapping[str, str],
                 record: Mapping[str, Any], *, hashed: Sequence[str] = ()) -> dict[str, Any]:
    """Write each of ``texts`` (name -> text) atomically into ``folder``, then ``record.json``
    last: ``record`` plus the sha256 of every text and of the ``hashed`` files already in
    ``folder``, the lthlib version, the commit (``git_commit`` unless ``record`` gives one)
    and ``finished_at``. Returns the record as written."""
    folder = Path(folder)
    given = [k for k in ("sha256", "finished_at") if k in record]
    if given:
        raise ValueError(f"record fields {', '.join(given)} are the writer's; allowed: "
                         f"any other field")
    overlap = sorted(set(texts) & set(hashed))
    if overlap:
        raise ValueError(f"{', '.join(overlap)} given both as text and as a file on disk; "
                         f"allowed: each name once")
    for name, text in texts.items():
        atomic_write_text(_relative(folder, name, "a text to write"), text)
    digests: dict[str, str] = {}
    for name in hashed:
        link = _linked_part(folder, name)
        if link is not None:
            raise CorruptRecordError(f"{link} is a symbolic link; links are never followed")
        digests[name] = file_digest(_relative(folder, name, "a file to hash"))
    digests.update({name: sha256_text(text) for name, text in texts.items()})
    full = dict(record)
    full.setdefault("lthlib_version", __version__)
    if "git_commit" not in full:
        full["git_commit"] = git_commit()
    full["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    full["sha256"] = digests
    atomic_write_text(folder / RECORD_NAME, json.dumps(full, indent=1) + "\n")
    return full


def amend_record(folder: str | os.PathLike, record: Mapping[str, Any], *,
                 hashed: Sequence[str] = (), fields: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Rewrite ``folder``'s finished ``record`` with the sha256 of more files already in
    ``folder`` (mask files sealed later, hashes added by a migration) and more ``fields``;
    its other fields, ``finished_at`` included, and its existing hashes are kept. The caller
    verifies the record first where that matters. Returns the record as written."""
    folder = Path(folder)
    if fields and any(k in fields for k in ("sha256", "finished_at")):
        raise ValueError("fields sha256 and finished_at are the writer's; allowed: any other "
                         "field")
    digests = dict(record.get("sha256") or {})
    for name in hashed:
        link = _linked_part(folder, name)
        if link is not None:
            raise CorruptRecordError(f"{link} is a symbolic link; links are never followed")
        digests[name] = file_digest(_relative(folder, name, "a file to hash"))
    full = {**record, **(fields or {}), "sha256": digests}
    atomic_write_text(folder / RECORD_NAME, json.dumps(full, indent=1) + "\n")
    return full


def verify_record(folder: str | os.PathLike, record: Mapping[str, Any],
                  required: Sequence[str] = (),
                  allowed: str = "allowed: a record hashing every file") -> None:
    """Every file ``record`` hashes is a regular file in ``folder`` that matches (else
    CorruptRecordError), and every name in ``required`` is hashed (else
    UnverifiedRecordError, whose message ends with ``allowed``)."""
    folder = Path(folder)
    rec_file = folder / RECORD_NAME
    hashes = record.get("sha256")
    hashes = {} if hashes is None else hashes
    if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        raise CorruptRecordError(f"{rec_file}: 'sha256' must map file names to hex digests")
    for name, digest in hashes.items():
        f = _relative(folder, name, str(rec_file))
        link = _linked_part(folder, name)
        if link is not None:
            raise CorruptRecordError(f"{link} is a symbolic link; links are never followed")
        try:
            ok = file_digest(f) == digest
        except FileNotFoundError:
            ok = False
        except OSError as err:
            raise CorruptRecordError(f"{f} is unreadable ({err.strerror})") from None
        if not ok:
            raise CorruptRecordError(f"{f} is missing or does not match its sha256")
    lacking = [n for n in required if n not in hashes]
    if lacking:
        raise UnverifiedRecordError(f"{folder} is unverified: its record has no sha256 for "
                                    f"{', '.join(lacking)}; {allowed}")


def read_record_json(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``folder/record.json``, unverified (FileNotFoundError when absent;
    CorruptRecordError for a link, a special file, bad JSON or another JSON type)."""
    return json_object(Path(folder) / RECORD_NAME)


def read_record(folder: str | os.PathLike, required: Sequence[str] = ()) -> dict[str, Any]:
    """``folder``'s record after :func:`verify_record`: FileNotFoundError when it has none,
    UnverifiedRecordError when a ``required`` file is not hashed, CorruptRecordError for
    anything else wrong."""
    record = read_record_json(folder)
    verify_record(folder, record, required)
    return record

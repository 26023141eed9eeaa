"""What a stored trial's record must hash, and the checks that let a store be read as hostile.

A trial is trusted only when ``record.json`` holds the sha256 of every other file that travels
with it (stage files included), no file is a symbolic link, and every config field that names
a folder is a plain name that keeps the path inside the store. These checks are shared by
reading (:mod:`lthlib.store`), listing (:mod:`lthlib.store_index`) and moving trials between
stores (:mod:`lthlib.store_transfer`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

RECORD_FILES = ("config.json", "metrics.csv", "summary.csv", "record.json")
_COMPONENT = re.compile(r"[a-z0-9][a-z0-9.\-]*\Z")  # experiment, arch, dataset, profile, lr
STAGE_SUFFIXES = (".csv", ".sha256", ".json")


class CorruptRecordError(RuntimeError):
    """A stored trial cannot be trusted: a file does not match its hash, a JSON file has the
    wrong type, the folder is not the config's, or a file is a symbolic link."""


class UnverifiedRecordError(CorruptRecordError):
    """A finished record lacks the sha256 of some of its files, so they cannot be checked."""


def df_to_csv_text(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def component(what: str, value: object) -> str:
    """A config value that becomes one path component: a short lower-case name, no slashes."""
    if not isinstance(value, str) or not _COMPONENT.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} cannot name a folder of the store; allowed: "
                         f"lower-case letters, digits, '.' and '-' (no '..', no '/')")
    return value


def inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it lies inside ``root`` once '..' and links resolve."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{path} resolves to {real}, outside the store {root}; refusing it")
    return path


def links_below(root: Path, path: Path) -> list[str]:
    """Components of ``path`` below ``root`` that are symbolic links (never followed)."""
    out, cur = [], root
    for part in path.relative_to(root).parts:
        cur = cur / part
        if cur.is_symlink():
            out.append(str(cur.relative_to(root)))
    return out


def stage_files(trial_dir: Path) -> tuple[list[str], list[str]]:
    """``(files, links)`` of a trial's ``stages/`` folder as ``stages/<name>`` paths: the
    regular files that travel with a trial (.csv, .sha256, .json) and any symbolic links."""
    stages = trial_dir / "stages"
    files: list[str] = []
    links: list[str] = []
    if stages.is_symlink():
        return files, ["stages"]
    if not stages.is_dir():
        return files, links
    for f in sorted(stages.iterdir()):
        if f.is_symlink():
            links.append(f"stages/{f.name}")
        elif f.suffix in STAGE_SUFFIXES and f.is_file():
            files.append(f"stages/{f.name}")
    return files, links


def hashed_names(trial_dir: Path) -> tuple[list[str], list[str]]:
    """``(names, links)``: every file of a trial that its record must hash (all that travel
    except ``record.json`` itself), and the symbolic links found instead of files."""
    names = [n for n in RECORD_FILES if n != "record.json"]
    links = [n for n in RECORD_FILES if (trial_dir / n).is_symlink()]
    files, stage_links = stage_files(trial_dir)
    return names + files, links + stage_links


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; CorruptRecordError for bad JSON or another JSON type."""
    if path.is_symlink():
        raise CorruptRecordError(f"{path} is a symbolic link; links are never followed")
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptRecordError(f"{path} is unreadable: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise CorruptRecordError(f"{path} holds a JSON {type(value).__name__}, expected an "
                                 f"object")
    return value


def check_hashes(path: Path, rec_file: Path, record: dict[str, Any],
                 require_all_hashes: bool = True) -> None:
    """Every file the record hashes matches; with ``require_all_hashes`` every file that
    travels with the trial is hashed (else UnverifiedRecordError); links are refused."""
    hashes = record.get("sha256")
    if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        hashes = {} if hashes is None else None
    if hashes is None:
        raise CorruptRecordError(f"{rec_file}: 'sha256' must map file names to hex "
                                 f"digests")
    names, links = hashed_names(path)
    if links:
        raise CorruptRecordError(f"{path}: {', '.join(links)} is a symbolic link; links "
                                 f"are never followed")
    for name, digest in hashes.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise CorruptRecordError(f"{rec_file} names {name!r}, outside the trial")
        f = path.joinpath(*rel.parts)
        if f.is_symlink():
            raise CorruptRecordError(f"{f} is a symbolic link; links are never followed")
        try:
            ok = f.is_file() and sha256_text(f.read_text()) == digest
        except (OSError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise CorruptRecordError(f"{f} is missing or does not match its sha256")
    lacking = [n for n in names if n not in hashes]
    if lacking and require_all_hashes:
        shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more"
                                          if len(lacking) > 3 else "")
        raise UnverifiedRecordError(
            f"{path} is unverified: its record has no sha256 for {shown}; allowed: a "
            f"record hashing every file (`python -m lthlib runs migrate` adds the missing "
            f"hashes of older trials whose existing hashes verify)")

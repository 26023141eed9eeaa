"""What a stored trial's record must hash, and the checks that let a store be read as hostile.

A trial is trusted only when ``record.json`` holds the sha256 of every other file that travels
with it (stage files included), no file is a symbolic link, and every config field that names
a folder is a plain name that keeps the path inside the store. These checks are shared by
reading (:mod:`lthlib.store.run_store`), listing (:mod:`lthlib.store.index`) and moving trials between
stores (:mod:`lthlib.store.transfer`).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.util.errors import CorruptRecordError

RECORD_FILES = ("config.json", "metrics.csv", "summary.csv", "record.json")
_COMPONENT = re.compile(r"[a-z0-9][a-z0-9.\-]*\Z")  # experiment, arch, dataset, profile, lr
STAGE_SUFFIXES = (".csv", ".sha256", ".json")
# what a hostile file may cost to read: a rewind state of ResNet-18 is 1.5 MB, a paper-profile
# LeNet metrics.csv 3 MB; JSON deeper than this is no record lthlib writes
MAX_JSON_BYTES = 64 * 2**20
MAX_TEXT_BYTES = 256 * 2**20
MAX_JSON_DEPTH = 32


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
    regular files that travel with a trial (.csv, .sha256, .json) and any symbolic links
    (checked with ``lstat``: nothing is followed or opened)."""
    stages = trial_dir / "stages"
    files: list[str] = []
    links: list[str] = []
    try:
        mode = stages.lstat().st_mode
    except OSError:
        return files, links
    if stat.S_ISLNK(mode):
        return files, ["stages"]
    if not stat.S_ISDIR(mode):
        return files, links
    for f in sorted(stages.iterdir()):
        mode = f.lstat().st_mode
        if stat.S_ISLNK(mode):
            links.append(f"stages/{f.name}")
        elif f.suffix in STAGE_SUFFIXES and stat.S_ISREG(mode):
            files.append(f"stages/{f.name}")
    return files, links


def hashed_names(trial_dir: Path) -> tuple[list[str], list[str]]:
    """``(names, links)``: every file of a trial that may travel with it (all record files
    except ``record.json`` itself, and the stage files), and the symbolic links found
    instead of files."""
    names = [n for n in RECORD_FILES if n != "record.json"]
    links = [n for n in RECORD_FILES if (trial_dir / n).is_symlink()]
    files, stage_links = stage_files(trial_dir)
    return names + files, links + stage_links


def unknown_files(trial_dir: Path, hashes: dict[str, str]) -> list[str]:
    """Entries of ``stages/`` that the record does not hash: never used, adopted or copied."""
    stages = trial_dir / "stages"
    if stages.is_symlink() or not stages.is_dir():
        return []
    return [f"stages/{f.name}" for f in sorted(stages.iterdir())
            if f"stages/{f.name}" not in hashes and not f.is_symlink()]


def file_kind(mode: int) -> str:
    """What a file is, in words, from its ``st_mode``."""
    for test, word in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def read_bytes(path: Path, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; never follows a
    link and never blocks on a FIFO or device (opened non-blocking, checked before reading).
    FileNotFoundError when absent; CorruptRecordError for anything else that is no record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CorruptRecordError(f"{path} is a symbolic link; links are never "
                                     f"followed") from None
        if err.errno in (errno.ENXIO, errno.EISDIR):  # a socket, a directory opened for write
            raise CorruptRecordError(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptRecordError(f"{path} is a {file_kind(st.st_mode)}, not a regular "
                                     f"file; allowed: a regular file")
        if st.st_size > max_bytes:
            raise CorruptRecordError(f"{path} holds {st.st_size} bytes; allowed: at most "
                                     f"{max_bytes}")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise CorruptRecordError(f"{path} grew beyond {max_bytes} bytes while read")
        return data
    finally:
        os.close(fd)


def read_text(path: Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """:func:`read_bytes` decoded as UTF-8 (CorruptRecordError when it is not)."""
    try:
        return read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptRecordError(f"{path} is not UTF-8 text ({err.reason} at byte "
                                 f"{err.start})") from None


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (walked without recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


def parse_json(text: str, what: object, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)`` with its nesting depth capped, so hostile input gives a
    CorruptRecordError naming ``what``, never a RecursionError."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise CorruptRecordError(f"{what} is unreadable: not valid JSON ({reason}); "
                                 f"allowed: JSON nested at most {max_depth} deep") from None
    depth = json_depth(value)
    if depth > max_depth:
        raise CorruptRecordError(f"{what} nests JSON {depth} deep; allowed: at most "
                                 f"{max_depth}")
    return value


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in the regular file ``path`` (size and depth capped)."""
    return parse_json(read_text(path, max_bytes), path)


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; CorruptRecordError for bad JSON or another JSON type."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise CorruptRecordError(f"{path} holds a JSON {type(value).__name__}, expected an "
                                 f"object")
    return value

"""The store's table of contents: every trial folder with its status, and the index files.

``runs/README.md`` and ``runs/index.csv`` are regenerated whenever a trial finishes, and
rebuilt by any run that finds them stale, so a person browsing the repository sees what the
store holds and why a trial is not finished. A damaged trial is listed with its reason,
never hidden and never used.
"""
from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.util.atomic import atomic_write_text
from lthlib.config.paper import EXPERIMENTS
from lthlib.config.experiment import experiment_from_dict
from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError
from lthlib.store.file_checks import df_to_csv_text, file_kind, json_object, read_text

INDEX_FILES = ("index.csv", "README.md")

STATUSES = ("finished", "partial", "corrupt", "unverified")
LIST_COLUMNS = ("path", "experiment", "arch", "dataset", "profile", "seed", "lr_setting",
                "levels", "networks", "wall_time_s", "git_commit", "reinits", "device",
                "status", "reason")


class StoreIndex:
    """Listing and index files of a store; :class:`lthlib.store.run_store.RunStore` provides ``root``
    and ``read`` (a verified finished trial)."""

    root: Path

    def read(self, path: Path, require_all_hashes: bool = True) -> Any:
        raise NotImplementedError

    def trial_paths(self) -> list[Path]:
        """Every trial folder (``<experiment>/<group>/<trial>/`` holding a config or a
        record, under a folder named after one of ``config.EXPERIMENTS``; analyses such as
        ``lmc/`` keep their own layout), symbolic links included but never entered."""
        out: list[Path] = []
        if not self.root.is_dir():
            return out

        def walk(folder: Path, depth: int) -> None:
            for child in sorted(folder.iterdir()):
                if child.name.startswith(".") or not (child.is_dir() or child.is_symlink()):
                    continue
                if depth == 1 and child.name not in EXPERIMENTS:
                    continue
                if child.is_symlink():  # listed (as corrupt), never entered
                    out.append(child)
                    continue
                if depth == 3:
                    if any((child / n).exists() or (child / n).is_symlink()
                           for n in ("config.json", "record.json")):
                        out.append(child)
                else:
                    walk(child, depth + 1)

        walk(self.root, 1)
        return out

    def list(self) -> pd.DataFrame:
        """One row per trial folder: finished, partial, corrupt or unverified (with the
        reason). Never raises for a damaged trial: damage is what it reports."""
        rows = []
        for path in self.trial_paths():
            rel = path.relative_to(self.root)
            row: dict[str, Any] = {c: None for c in LIST_COLUMNS}
            row.update({"path": str(rel), "experiment": rel.parts[0], "reason": ""})
            try:
                rec = self.read(path)
                row.update({k: rec.record.get(k) for k in (
                    "experiment", "arch", "dataset", "profile", "seed", "lr_setting", "levels",
                    "networks", "wall_time_s", "git_commit")})
                row["reinits"] = rec.config.reinits
                row["lr_setting"] = rec.config.setting  # late rewinding shows as such
                hardware = rec.record.get("hardware")
                row["device"] = hardware.get("device") if isinstance(hardware, dict) else None
                row["status"] = "finished"
                notes = [f"ignores files its record does not hash: "
                         f"{', '.join(rec.unknown[:3])}"] if rec.unknown else []
                if rec.record.get("summary_from_metrics") is False:
                    notes.append("its record says summary.csv was not computed from "
                                 "metrics.csv (not compared)")
                row["reason"] = "; ".join(notes)
            except FileNotFoundError:
                row["status"] = "partial"
                try:
                    cfg = experiment_from_dict(json_object(path / "config.json"))
                    row.update({"experiment": cfg.experiment, "arch": cfg.model.arch,
                                "dataset": cfg.data.dataset, "profile": cfg.profile,
                                "seed": cfg.seed, "lr_setting": cfg.setting,
                                "reinits": cfg.reinits})
                except Exception as err:  # noqa: BLE001 - a hostile config is listed, not raised
                    row["reason"] = f"config.json unreadable ({err})"
            except UnverifiedRecordError as err:
                row.update({"status": "unverified", "reason": str(err)})
            except CorruptRecordError as err:
                row.update({"status": "corrupt", "reason": str(err)})
            except (OSError, UnicodeDecodeError) as err:
                row.update({"status": "corrupt", "reason": f"unreadable ({err})"})
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                row.update({"status": "corrupt", "reason": f"unreadable ({err})"})
            rows.append(row)
        df = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
        # integers, even beside partial rows' gaps
        for col in ("seed", "levels", "networks", "reinits"):  # a hostile record's value
            num = pd.to_numeric(df[col], errors="coerce").astype("float64")  # is dropped
            df[col] = num.where((num.abs() < 2**53) & (num == num.round())).astype("Int64")
        return df

    def _index_paths(self) -> tuple[Path, Path]:
        """``index.csv`` and ``README.md``, checked to be regular files (or absent)."""
        out = []
        for name in INDEX_FILES:
            path = self.root / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                mode = stat.S_IFREG
            if not stat.S_ISREG(mode):
                raise ValueError(f"{path} is a {file_kind(mode)}; allowed: a regular file "
                                 f"(remove it and lthlib rebuilds the index)")
            out.append(path)
        return out[0], out[1]

    def write_index(self) -> None:
        """Regenerate ``README.md`` and ``index.csv`` at the store's root."""
        index, readme = self._index_paths()
        df = self.list()
        if df.empty:
            return
        atomic_write_text(index, df_to_csv_text(df))
        cols = [c for c in ("experiment", "arch", "dataset", "profile", "lr_setting", "seed",
                            "levels", "networks", "reinits", "status", "wall_time_s", "device",
                            "path")
                if c in df]
        lines = ["# runs/ index", "",
                 "Regenerated by `lthlib` whenever a trial finishes. One row per trial; "
                 "open a trial's folder for `summary.csv`, `metrics.csv` and `record.json`.",
                 "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in df[cols].astype(object).fillna("").iterrows():
            lines.append("| " + " | ".join(str(v) for v in r.tolist()) + " |")
        atomic_write_text(readme, "\n".join(lines) + "\n")

    def write_index_or_warn(self) -> bool:
        """:meth:`write_index`, or one warning line when the index cannot be written (a
        read-only store, an index path that is a folder): the trials stay as they are."""
        try:
            self.write_index()
        except (ValueError, OSError) as err:
            reason = err if isinstance(err, ValueError) else (
                f"{err.filename or self.root}: {err.strerror}")
            warnings.warn(f"the store index was not rebuilt: {reason}", stacklevel=2)
            return False
        return True

    def _index_is_fresh(self) -> bool:
        """Cheap check (no hashing): both index files exist, list the same trial folders,
        agree on which are finished, and are newer than every record."""
        index, readme = self.root / "index.csv", self.root / "README.md"
        if index.is_symlink() or not index.is_file() or not readme.is_file():
            return False
        try:
            listed = pd.read_csv(io.StringIO(read_text(index)), usecols=["path", "status"],
                                 dtype=str)
        except (OSError, ValueError, CorruptRecordError):
            return False
        status = dict(zip(listed["path"], listed["status"]))
        newest = index.stat().st_mtime
        paths = self.trial_paths()
        if set(status) != {str(p.relative_to(self.root)) for p in paths}:
            return False
        for path in paths:
            rec = path / "record.json"
            try:
                finished = (not path.is_symlink()
                            and json_object(rec).get("status") == "finished")
                if rec.lstat().st_mtime > newest:
                    return False
            except (OSError, CorruptRecordError):
                finished = False
            was = status[str(path.relative_to(self.root))]
            if (was == "partial") == finished:
                return False
        return True

    def ensure_index(self) -> bool:
        """Rebuild a missing or stale ``README.md``/``index.csv`` (e.g. after a kill between
        a trial's record and the index); True when it rewrote them."""
        if not self.root.is_dir() or self._index_is_fresh():
            return False
        if not self.trial_paths():
            return False
        return self.write_index_or_warn()

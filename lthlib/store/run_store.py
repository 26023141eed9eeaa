"""The ``runs/`` store: one directory per (experiment config, trial), identified by a hash.

Layout (browsable by a person; ``runs/README.md`` is a regenerated index)::

    runs/<experiment>/<arch>-<dataset>-<profile>[-<lr setting>]/seed<s>-<run id>/
        config.json    the whole resolved config of this trial (its hash is the run id)
        stages/*.csv   per-stage metrics, written as each stage finishes (resume points),
                       with the stage's training time in stages/*.json
        metrics.csv    every evaluation of every network in the trial (long format)
        summary.csv    one row per network: Pm, early-stop iteration and metrics, final accs
        record.json    status, sha256 of the CSVs, hardware, wall time, lthlib version, commit
        ckpt/          checkpoints (gitignored; loaded with weights_only=True)

A finished record is returned without recomputation; a changed config hashes elsewhere, so
stale results are never reused. The store is read as if it were hostile: ``record.json``
must hold the sha256 of every other file of the trial (stage files included), the folder
must be the one its ``config.json`` hashes to, every config field that becomes a path
component is checked, and symbolic links are never followed. A trial that fails a check is
listed with its reason (``corrupt``, or ``unverified`` when hashes are missing) and is
never used or imported; ``run`` recomputes it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from lthlib.util import paths
from lthlib.util.atomic import atomic_write_text
from lthlib.config.experiment import ExperimentConfig, experiment_from_dict
# RECORD_FILES, the errors, LIST_COLUMNS and STATUSES are part of this module's interface
from lthlib.store.file_checks import (RECORD_FILES, component, df_to_csv_text, hashed_names,
                                      inside, json_object, links_below, read_text, sha256_text,
                                      unknown_files)
# git_commit is part of this module's interface (the commit a computing process started from)
from lthlib.store.records import git_commit, read_record_json, verify_record, write_record
from lthlib.util.errors import CorruptRecordError, UnverifiedRecordError
from lthlib.store.index import LIST_COLUMNS, STATUSES, StoreIndex
from lthlib.store.stages import NUMERIC_SETTINGS, StageFiles
from lthlib.store.history import early_stop_summary
from lthlib.util.version import __version__

MEMBER_KEYS = ["variant", "level", "replicate"]
MIGRATE_HINT = ("allowed: a record hashing every file (`python -m lthlib runs migrate` adds the "
                "missing hashes of older trials whose existing hashes verify)")
TRIAL_FOLDERS = ("stages", "ckpt")  # written into: never through a link


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per network: its Pm, retroactive early-stop point and final accuracies."""
    rows = []
    for key, hist in metrics.groupby(MEMBER_KEYS, sort=True):
        row = dict(zip(MEMBER_KEYS, key))
        row["pm"] = float(hist["pm"].iloc[0])
        row.update(early_stop_summary(hist.sort_values("iteration")))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_text(metrics_text: str) -> str:
    """``summary.csv`` as computed from ``metrics.csv``'s text (what a finished trial's summary
    must equal: a hand-edited summary is caught on load)."""
    return df_to_csv_text(summarize(pd.read_csv(io.StringIO(metrics_text))))


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """Argument, else env LTH_RUNS_DIR, else the repository's ``runs/`` (:mod:`lthlib.util.paths`)."""
    return paths.runs_dir(runs_dir or None)


@dataclass
class TrialRecord:
    """A finished trial as read back from disk."""

    config: ExperimentConfig
    path: Path
    summary: pd.DataFrame
    record: dict[str, Any]
    unknown: tuple[str, ...] = ()  # files the record does not hash: listed, never used

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(read_text(self.path / "metrics.csv")))


@dataclass
class ExperimentResult:
    """All finished trials of an experiment, read back from the store (:meth:`RunStore.results`)."""

    config: ExperimentConfig
    trials: list[TrialRecord]

    @property
    def summary(self) -> pd.DataFrame:
        """Per-network summary rows of every trial, with a ``seed`` column."""
        if not self.trials:
            raise ValueError(f"no finished trials of {self.config.experiment} "
                             f"{self.config.model.arch}/{self.config.data.dataset} profile="
                             f"{self.config.profile} in the store; `python -m lthlib runs ls` "
                             f"lists what it holds and why")
        return pd.concat([tr.summary.assign(seed=tr.config.seed) for tr in self.trials],
                         ignore_index=True)

    def metrics(self) -> pd.DataFrame:
        return pd.concat([tr.metrics().assign(seed=tr.config.seed) for tr in self.trials],
                         ignore_index=True)

    @property
    def wall_time_s(self) -> float:
        return sum(tr.record.get("wall_time_s", 0.0) for tr in self.trials)


def config_of(path: Path) -> ExperimentConfig:
    """The config stored in ``path`` (FileNotFoundError when absent); CorruptRecordError for
    anything that is no valid config, whatever the hostile content."""
    cfg_dict = json_object(path)
    try:
        return experiment_from_dict(cfg_dict)
    except Exception as err:  # noqa: BLE001 - hostile input: any failure means corrupt
        raise CorruptRecordError(f"{path} is not a valid config ({type(err).__name__}: "
                                 f"{err})") from None


class RunStore(StageFiles, StoreIndex):
    """Reads and writes trial records under one runs directory."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"runs_dir must be a path (str or os.PathLike) or None, got "
                             f"{type(root).__name__} {root!r}")
        if root is not None and not os.fspath(root).strip():
            raise ValueError(f"runs_dir {os.fspath(root)!r} is empty; allowed: a folder path, "
                             f"or none for env LTH_RUNS_DIR or the repository's runs/")
        self.root = resolve_runs_dir(root)
        self._summaries_checked: set[tuple[str, str]] = set()
        if os.path.lexists(self.root) and not self.root.is_dir():
            raise ValueError(f"runs_dir {self.root} is not a folder; allowed: a folder "
                             f"(existing or to be created)")

    # --- paths ---
    def trial_dir(self, cfg: ExperimentConfig) -> Path:
        """Directory of a single-trial config (``cfg.trials == 1``), checked to lie inside
        the store: every config field that names a folder must be a plain name."""
        if cfg.trials != 1:
            raise ValueError(f"trial_dir() wants a single-trial config, got trials={cfg.trials}")
        parts = [component(what, value) for what, value in (
            ("arch", cfg.model.arch), ("dataset", cfg.data.dataset), ("profile", cfg.profile))]
        if cfg.lr_setting:
            parts.append(component("lr_setting", cfg.lr_setting))
        seed = cfg.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed {seed!r} cannot name a folder; allowed: an integer >= 0")
        path = (self.root / component("experiment", cfg.experiment) / "-".join(parts)
                / f"seed{seed}-{cfg.run_id()}")
        links = links_below(self.root, path)
        if links:
            raise ValueError(f"{self.root / links[0]} is a symbolic link; the store never "
                             f"follows links (remove it to compute or read this trial)")
        return inside(self.root, path)

    def writable_dir(self, cfg: ExperimentConfig) -> Path:
        """:meth:`trial_dir`, after checking that its ``stages/`` and ``ckpt/`` are folders
        (or absent), never links: nothing is written through a link out of the store; and
        that no record file is a folder (the trial could not be finished)."""
        path = self.trial_dir(cfg)
        for name in (*TRIAL_FOLDERS, *RECORD_FILES):
            try:
                mode = (path / name).lstat().st_mode
            except FileNotFoundError:
                continue
            if name in TRIAL_FOLDERS and not stat.S_ISDIR(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
                raise ValueError(f"{path / name} is {kind}; allowed: a folder inside the "
                                 f"store (remove it to compute this trial)")
            if name in RECORD_FILES and stat.S_ISDIR(mode):  # anything else is replaced
                raise ValueError(f"{path / name} is a directory; allowed: a regular file "
                                 f"(remove it to compute this trial)")
        return path

    def ckpt_dir(self, cfg: ExperimentConfig) -> Path:
        return self.writable_dir(cfg) / "ckpt"

    # --- finished trials ---
    def results(self, cfg: ExperimentConfig) -> ExperimentResult:
        """Every finished, verified trial of ``cfg`` (all its seeds); never trains anything.
        Trials that are missing, partial, corrupt or unverified are left out."""
        cfg = cfg.canonical()
        records = [rec for rec in (self.load(t) for t in cfg.trial_configs()) if rec is not None]
        return ExperimentResult(cfg, records)

    def load(self, cfg: ExperimentConfig) -> TrialRecord | None:
        """The finished record for ``cfg``, or None if absent, partial, corrupt or unverified
        (warns for the last two)."""
        path = self.trial_dir(cfg)
        try:
            return self.read(path)
        except FileNotFoundError:
            return None
        except CorruptRecordError as err:
            warnings.warn(f"{err}; it will be recomputed")
            return None

    def read(self, path: Path, require_all_hashes: bool = True) -> TrialRecord:
        """Read and verify a finished trial. FileNotFoundError: not finished (partial);
        UnverifiedRecordError: hashes missing; CorruptRecordError: anything else wrong
        (a mismatch, a file that is no regular file, a summary that ``metrics.csv`` does
        not give, a misplaced folder)."""
        path = Path(path)
        rec_file = path / "record.json"
        links = links_below(self.root, path) if path.is_relative_to(self.root) else []
        if links:
            raise CorruptRecordError(f"{path}: {', '.join(links)} is a symbolic link; links "
                                     f"are never followed")
        record = read_record_json(path)  # FileNotFoundError: partial
        if record.get("status") != "finished":
            raise FileNotFoundError(rec_file)
        try:
            config = config_of(path / "config.json")
            expected = self.trial_dir(config)
        except FileNotFoundError:
            raise CorruptRecordError(f"{path / 'config.json'} is missing") from None
        except ValueError as err:
            raise CorruptRecordError(f"{path / 'config.json'} names no trial folder "
                                     f"({err})") from None
        if path.is_relative_to(self.root) and (
                path.relative_to(self.root) != expected.relative_to(self.root)):
            raise CorruptRecordError(
                f"{path} holds the config of {expected.relative_to(self.root)}: the folder "
                f"must be the one its config.json hashes to")
        if config.run_id() != record.get("run_id"):
            raise CorruptRecordError(f"config in {path} does not hash to its recorded run id")
        _, linked = hashed_names(path)
        if linked:
            raise CorruptRecordError(f"{path}: {', '.join(linked)} is a symbolic link; links "
                                     f"are never followed")
        verify_record(path, record, RECORD_FILES[:-1] if require_all_hashes else (),
                      allowed=MIGRATE_HINT)
        try:
            metrics, summary = (read_text(path / n) for n in ("metrics.csv", "summary.csv"))
        except FileNotFoundError as err:
            raise CorruptRecordError(f"{err.filename} is missing") from None
        if record.get("summary_from_metrics") is not False:
            self._check_summary(path, metrics, summary)
        return TrialRecord(config, path, pd.read_csv(io.StringIO(summary)), record,
                           tuple(unknown_files(path, record.get("sha256") or {})))

    def _check_summary(self, path: Path, metrics: str, summary: str) -> None:
        """``summary`` must be the summary computed from ``metrics`` (a pair once found
        equal is remembered by its digests: listing a store reads every trial)."""
        key = (sha256_text(metrics), sha256_text(summary))
        if key in self._summaries_checked:
            return
        try:
            recomputed = summary_text(metrics)
        except (ValueError, KeyError, TypeError, pd.errors.ParserError) as err:
            raise CorruptRecordError(f"{path / 'metrics.csv'} holds no metrics a summary can "
                                     f"be computed from ({type(err).__name__}: {err})") from None
        if recomputed != summary:
            raise CorruptRecordError(f"{path / 'summary.csv'} differs from the summary "
                                     f"computed from metrics.csv")
        self._summaries_checked.add(key)

    def finish(self, cfg: ExperimentConfig, metrics: pd.DataFrame, summary: pd.DataFrame,
               wall_time: float, hardware: dict[str, Any], extra: dict[str, Any] | None = None,
               code_version: str | None = None, resumed_stages: Sequence[str] = (),
               carried_wall_times: Sequence[float | None] = (),
               stage_files: Sequence[str] | None = None) -> TrialRecord:
        """Write the trial's final metrics and record (the record last: it marks completion).

        ``wall_time`` is this process's share. Stages listed in ``resumed_stages`` were
        trained by earlier, interrupted processes: their stored times (see
        :meth:`save_stage`) are added, and where one was never timed the record says its wall
        time is incomplete. ``code_version`` is the commit the computing process started from
        (default: HEAD now). ``carried_wall_times`` are the earlier seconds of stages this
        process only completed (the reused part of an extended trial, :mod:`lthlib.store.extension`).
        The record hashes the record files and ``stage_files`` (``stages/<name>`` paths: the
        files this trial wrote; None: every stage file present), and, per setting, the
        values its stages ran with (``stage_settings``; ``numeric_settings_mixed`` says
        whether they differ between stages). A ``summary`` that is not the one computed from
        ``metrics`` is stored as given and the record says so (``summary_from_metrics``).
        """
        path = self.writable_dir(cfg)
        if stage_files is None:
            stage_files, links = hashed_names(path)
            stage_files = [n for n in stage_files if n.startswith("stages/")]
            if links:
                raise CorruptRecordError(f"{path}: {', '.join(links)} is a symbolic link; "
                                         f"refusing to finish the trial")
        names = [n for n in stage_files if n.endswith(".csv")]
        stage_names = [PurePosixPath(n).stem for n in names]
        stages = self.stage_times(cfg, stage_names)
        settings = self.stage_settings(cfg, stages=stage_names)
        earlier = [stages.get(name) for name in resumed_stages] + list(carried_wall_times)
        timing: dict[str, Any] = {"process_wall_time_s": round(wall_time, 2),
                                  "wall_time_complete": all(v is not None for v in earlier),
                                  "stage_wall_time_s": stages}
        if settings:
            timing["stage_settings"] = settings
            timing["numeric_settings_mixed"] = any(
                len({json.dumps(s.get(k)) for s in settings.values()}) > 1
                for k in NUMERIC_SETTINGS)
        wall_time += sum(v for v in earlier if v is not None)
        self._write_config(cfg)
        texts = {"metrics.csv": df_to_csv_text(metrics), "summary.csv": df_to_csv_text(summary)}
        computed = summary_text(texts["metrics.csv"])
        if texts["summary.csv"] != computed:
            timing["summary_from_metrics"] = False
        record = {
            "status": "finished", "run_id": cfg.run_id(), "experiment": cfg.experiment,
            "arch": cfg.model.arch, "dataset": cfg.data.dataset, "profile": cfg.profile,
            "seed": cfg.seed, "lr_setting": cfg.lr_setting,
            "levels": int(summary["level"].nunique()) if "level" in summary else 0,
            "networks": len(summary), "wall_time_s": round(wall_time, 2), "hardware": hardware,
            "lthlib_version": __version__, "git_commit": code_version or git_commit(),
            **timing, **(extra or {}),
        }
        record = write_record(path, texts, record, hashed=["config.json", *stage_files])
        self.write_index_or_warn()
        return TrialRecord(cfg, path, summary, record)

    def _write_config(self, cfg: ExperimentConfig) -> None:
        """Write ``config.json`` unless it already holds this config (a damaged or foreign
        one is replaced: the trial being computed defines what its folder holds)."""
        path = self.writable_dir(cfg) / "config.json"
        try:
            if config_of(path).run_id() == cfg.run_id():
                return
        except (FileNotFoundError, CorruptRecordError):
            pass
        if path.is_symlink():
            path.unlink()
        atomic_write_text(path, json.dumps({**cfg.to_dict()}, indent=1) + "\n")

    def claim(self, cfg: ExperimentConfig) -> list[str]:
        """Make ``cfg``'s folder its own before computing into it. When its ``config.json``
        is unreadable or names another config (a damaged or misplaced folder), the stage
        files, checkpoints and records there belong to no known config: they are removed
        (never resumed from) with a warning, and ``cfg``'s config is written. Returns the
        names removed."""
        path = self.trial_dir(cfg)
        try:
            if config_of(path / "config.json").run_id() == cfg.run_id():
                return []
        except FileNotFoundError:
            return []
        except CorruptRecordError:
            pass
        removed = []
        for name in ("stages", "ckpt", "record.json", "metrics.csv", "summary.csv",
                     "reused_from.json", "config.json"):
            f = path / name
            if f.is_symlink() or f.is_file():
                f.unlink()
            elif f.is_dir():
                shutil.rmtree(f)
            else:
                continue
            removed.append(name)
        warnings.warn(f"{path} held files of another or unreadable config; removed "
                      f"{', '.join(removed)} and computing the trial afresh")
        self._write_config(cfg)
        return removed


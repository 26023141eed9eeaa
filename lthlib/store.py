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

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from . import paths
from .atomic import atomic_write_text
from .config import EXPERIMENTS, ExperimentConfig, experiment_from_dict
from .version import __version__

MEMBER_KEYS = ["variant", "level", "replicate"]
RECORD_FILES = ("config.json", "metrics.csv", "summary.csv", "record.json")


class CorruptRecordError(RuntimeError):
    """A stored trial cannot be trusted: a file does not match its hash, a JSON file has the
    wrong type, the folder is not the config's, or a file is a symbolic link."""


class UnverifiedRecordError(CorruptRecordError):
    """A finished record lacks the sha256 of some of its files, so they cannot be checked."""


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """Argument, else env LTH_RUNS_DIR, else the repository's ``runs/`` (:mod:`lthlib.paths`)."""
    return paths.runs_dir(runs_dir or None)


def df_to_csv_text(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit() -> str:
    """HEAD of the code's repository, ``-dirty`` when tracked files differ from it. Changes
    under ``runs/`` do not count: finished trials rewrite the index while others still run."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)runs"],
                               capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=5)
        sha = out.stdout.strip()
        return (sha + ("-dirty" if dirty.stdout.strip() else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"



# --- what may become a path, and which files a record must hash -----------------------------

_COMPONENT = re.compile(r"[a-z0-9][a-z0-9.\-]*\Z")  # experiment, arch, dataset, profile, lr
_TRIAL_NAME = re.compile(r"seed(\d+)-([0-9a-f]{12})\Z")
_STAGE_SUFFIXES = (".csv", ".sha256", ".json")
STATUSES = ("finished", "partial", "corrupt", "unverified")
# per-stage settings that change the numbers (float reductions, the sparse path)
NUMERIC_SETTINGS = ("threads", "sparse_path_below_density")
LIST_COLUMNS = ("path", "experiment", "arch", "dataset", "profile", "seed", "lr_setting",
                "levels", "networks", "wall_time_s", "git_commit", "reinits", "device",
                "status", "reason")


def _component(what: str, value: object) -> str:
    """A config value that becomes one path component: a short lower-case name, no slashes."""
    if not isinstance(value, str) or not _COMPONENT.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} cannot name a folder of the store; allowed: "
                         f"lower-case letters, digits, '.' and '-' (no '..', no '/')")
    return value


def _inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it lies inside ``root`` once '..' and links resolve."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{path} resolves to {real}, outside the store {root}; refusing it")
    return path


def _links_below(root: Path, path: Path) -> list[str]:
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
        elif f.suffix in _STAGE_SUFFIXES and f.is_file():
            files.append(f"stages/{f.name}")
    return files, links


def hashed_names(trial_dir: Path) -> tuple[list[str], list[str]]:
    """``(names, links)``: every file of a trial that its record must hash (all that travel
    except ``record.json`` itself), and the symbolic links found instead of files."""
    names = [n for n in RECORD_FILES if n != "record.json"]
    links = [n for n in RECORD_FILES if (trial_dir / n).is_symlink()]
    files, stage_links = stage_files(trial_dir)
    return names + files, links + stage_links


def _json_object(path: Path) -> dict[str, Any]:
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


@dataclass
class TrialRecord:
    """A finished trial as read back from disk."""

    config: ExperimentConfig
    path: Path
    summary: pd.DataFrame
    record: dict[str, Any]

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "metrics.csv")


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


class RunStore:
    """Reads and writes trial records under one runs directory."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"runs_dir must be a path (str or os.PathLike) or None, got "
                             f"{type(root).__name__} {root!r}")
        self.root = resolve_runs_dir(root)

    # --- paths ---
    def trial_dir(self, cfg: ExperimentConfig) -> Path:
        """Directory of a single-trial config (``cfg.trials == 1``), checked to lie inside
        the store: every config field that names a folder must be a plain name."""
        if cfg.trials != 1:
            raise ValueError(f"trial_dir() wants a single-trial config, got trials={cfg.trials}")
        parts = [_component(what, value) for what, value in (
            ("arch", cfg.model.arch), ("dataset", cfg.data.dataset), ("profile", cfg.profile))]
        if cfg.lr_setting:
            parts.append(_component("lr_setting", cfg.lr_setting))
        seed = cfg.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed {seed!r} cannot name a folder; allowed: an integer >= 0")
        path = (self.root / _component("experiment", cfg.experiment) / "-".join(parts)
                / f"seed{seed}-{cfg.run_id()}")
        links = _links_below(self.root, path)
        if links:
            raise ValueError(f"{self.root / links[0]} is a symbolic link; the store never "
                             f"follows links (remove it to compute or read this trial)")
        return _inside(self.root, path)

    def ckpt_dir(self, cfg: ExperimentConfig) -> Path:
        return self.trial_dir(cfg) / "ckpt"

    # --- stages (resume points) ---
    def stage_path(self, cfg: ExperimentConfig, stage: str) -> Path:
        return self.trial_dir(cfg) / "stages" / f"{stage}.csv"

    def save_stage(self, cfg: ExperimentConfig, stage: str, metrics: pd.DataFrame,
                   wall_time_s: float | None = None,
                   settings: dict[str, Any] | None = None) -> None:
        """Write one stage's metrics atomically, with its hash beside it, and the stage's
        training time and numeric settings (``stages/<stage>.json``: threads, sparse-path
        threshold), so that a trial resumed across processes still reports its whole
        training time and says which settings trained which stage."""
        self._write_config(cfg)
        text = df_to_csv_text(metrics)
        path = self.stage_path(cfg, stage)
        if wall_time_s is not None or settings:
            timing: dict[str, Any] = {}
            if wall_time_s is not None:
                timing["wall_time_s"] = round(float(wall_time_s), 2)
            timing["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            timing.update(settings or {})
            atomic_write_text(path.with_suffix(".json"), json.dumps(timing) + "\n")
        atomic_write_text(path, text)
        atomic_write_text(path.with_suffix(".sha256"), sha256_text(text) + "\n")

    def _stage_json(self, cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for csv in sorted((self.trial_dir(cfg) / "stages").glob("*.csv")):
            try:
                value = json.loads(csv.with_suffix(".json").read_text())
            except (OSError, ValueError):
                value = {}
            out[csv.stem] = value if isinstance(value, dict) else {}
        return out

    def stage_times(self, cfg: ExperimentConfig) -> dict[str, float | None]:
        """Training seconds of each stored stage of a trial (None where it was not timed)."""
        out: dict[str, float | None] = {}
        for name, info in self._stage_json(cfg).items():
            try:
                out[name] = float(info["wall_time_s"])
            except (KeyError, TypeError, ValueError):
                out[name] = None
        return out

    def stage_settings(self, cfg: ExperimentConfig, keys: Sequence[str] = NUMERIC_SETTINGS
                       ) -> dict[str, dict[str, Any]]:
        """``{stage: {setting: value}}`` for the stored stages that recorded their settings
        (stages written before settings were recorded are left out)."""
        return {name: {k: info[k] for k in keys if k in info}
                for name, info in self._stage_json(cfg).items()
                if any(k in info for k in keys)}

    def load_stage(self, cfg: ExperimentConfig, stage: str) -> pd.DataFrame | None:
        path = self.stage_path(cfg, stage)
        sha = path.with_suffix(".sha256")
        if not path.exists() or not sha.exists() or path.is_symlink() or sha.is_symlink():
            return None
        text = path.read_text()
        if sha256_text(text) != sha.read_text().strip():
            warnings.warn(f"stage file {path} does not match its hash: recomputing it")
            return None
        return pd.read_csv(io.StringIO(text))

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
            return self._read(path)
        except FileNotFoundError:
            return None
        except CorruptRecordError as err:
            warnings.warn(f"{err}; it will be recomputed")
            return None

    def _read(self, path: Path, require_all_hashes: bool = True) -> TrialRecord:
        """Read and verify a finished trial. FileNotFoundError: not finished (partial);
        UnverifiedRecordError: hashes missing; CorruptRecordError: anything else wrong."""
        path = Path(path)
        rec_file = path / "record.json"
        links = _links_below(self.root, path) if path.is_relative_to(self.root) else []
        if links:
            raise CorruptRecordError(f"{path}: {', '.join(links)} is a symbolic link; links "
                                     f"are never followed")
        if not rec_file.exists() and not rec_file.is_symlink():
            raise FileNotFoundError(rec_file)
        record = _json_object(rec_file)
        if record.get("status") != "finished":
            raise FileNotFoundError(rec_file)
        cfg_dict = _json_object(path / "config.json")
        try:
            config = experiment_from_dict(cfg_dict)
            expected = self.trial_dir(config)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CorruptRecordError(f"{path / 'config.json'} is not a valid config "
                                     f"({type(err).__name__}: {err})") from err
        if path.is_relative_to(self.root) and (
                path.relative_to(self.root) != expected.relative_to(self.root)):
            raise CorruptRecordError(
                f"{path} holds the config of {expected.relative_to(self.root)}: the folder "
                f"must be the one its config.json hashes to")
        if config.run_id() != record.get("run_id"):
            raise CorruptRecordError(f"config in {path} does not hash to its recorded run id")
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
        try:
            summary = pd.read_csv(path / "summary.csv")
        except (OSError, ValueError) as err:
            raise CorruptRecordError(f"{path / 'summary.csv'} is unreadable ({err})") from err
        return TrialRecord(config, path, summary, record)

    def finish(self, cfg: ExperimentConfig, metrics: pd.DataFrame, summary: pd.DataFrame,
               wall_time: float, hardware: dict[str, Any], extra: dict[str, Any] | None = None,
               code_version: str | None = None, resumed_stages: Sequence[str] = (),
               carried_wall_times: Sequence[float | None] = ()) -> TrialRecord:
        """Write the trial's final metrics and record (the record last: it marks completion).

        ``wall_time`` is this process's share. Stages listed in ``resumed_stages`` were
        trained by earlier, interrupted processes: their stored times (see
        :meth:`save_stage`) are added, and where one was never timed the record says its wall
        time is incomplete. ``code_version`` is the commit the computing process started from
        (default: HEAD now). ``carried_wall_times`` are the earlier seconds of stages this
        process only completed (the reused part of an extended trial, :mod:`lthlib.reuse`).
        The record hashes every file of the trial (stage files included) and, per setting,
        the values its stages ran with (``stage_settings``; ``numeric_settings_mixed`` says
        whether they differ between stages).
        """
        path = self.trial_dir(cfg)
        stages = self.stage_times(cfg)
        settings = self.stage_settings(cfg)
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
        for name, text in texts.items():
            atomic_write_text(path / name, text)
        names, links = hashed_names(path)
        if links:
            raise CorruptRecordError(f"{path}: {', '.join(links)} is a symbolic link; refusing "
                                     f"to finish the trial")
        hashes = {name: texts[name] if name in texts else
                  path.joinpath(*PurePosixPath(name).parts).read_text() for name in names}
        record = {
            "status": "finished", "run_id": cfg.run_id(), "experiment": cfg.experiment,
            "arch": cfg.model.arch, "dataset": cfg.data.dataset, "profile": cfg.profile,
            "seed": cfg.seed, "lr_setting": cfg.lr_setting,
            "levels": int(summary["level"].nunique()) if "level" in summary else 0,
            "networks": len(summary), "wall_time_s": round(wall_time, 2), "hardware": hardware,
            "lthlib_version": __version__, "git_commit": code_version or git_commit(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sha256": {name: sha256_text(text) for name, text in hashes.items()},
            **timing, **(extra or {}),
        }
        atomic_write_text(path / "record.json", json.dumps(record, indent=1) + "\n")
        self.write_index()
        return TrialRecord(cfg, path, summary, record)

    def _write_config(self, cfg: ExperimentConfig) -> None:
        """Write ``config.json`` unless it already holds this config (a damaged or foreign
        one is replaced: the trial being computed defines what its folder holds)."""
        path = self.trial_dir(cfg) / "config.json"
        if path.exists() and not path.is_symlink():
            try:
                if experiment_from_dict(_json_object(path)).run_id() == cfg.run_id():
                    return
            except (CorruptRecordError, OSError, KeyError, TypeError, ValueError,
                    AttributeError):
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
        cfg_file = path / "config.json"
        if not cfg_file.exists() and not cfg_file.is_symlink():
            return []
        try:
            if experiment_from_dict(_json_object(cfg_file)).run_id() == cfg.run_id():
                return []
        except (CorruptRecordError, OSError, KeyError, TypeError, ValueError, AttributeError):
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

    # --- listing ---
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
                rec = self._read(path)
                row.update({k: rec.record.get(k) for k in (
                    "experiment", "arch", "dataset", "profile", "seed", "lr_setting", "levels",
                    "networks", "wall_time_s", "git_commit")})
                row["reinits"] = rec.config.reinits
                hardware = rec.record.get("hardware")
                row["device"] = hardware.get("device") if isinstance(hardware, dict) else None
                row["status"] = "finished"
            except FileNotFoundError:
                row["status"] = "partial"
                try:
                    cfg = experiment_from_dict(_json_object(path / "config.json"))
                    row.update({"experiment": cfg.experiment, "arch": cfg.model.arch,
                                "dataset": cfg.data.dataset, "profile": cfg.profile,
                                "seed": cfg.seed, "lr_setting": cfg.lr_setting,
                                "reinits": cfg.reinits})
                except (CorruptRecordError, OSError, KeyError, TypeError, ValueError,
                        AttributeError) as err:
                    row["reason"] = f"config.json unreadable ({err})"
            except UnverifiedRecordError as err:
                row.update({"status": "unverified", "reason": str(err)})
            except CorruptRecordError as err:
                row.update({"status": "corrupt", "reason": str(err)})
            except (OSError, UnicodeDecodeError) as err:
                row.update({"status": "corrupt", "reason": f"unreadable ({err})"})
            rows.append(row)
        df = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
        # integers, even beside partial rows' gaps
        for col in ("seed", "levels", "networks", "reinits"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
        return df

    def write_index(self) -> None:
        """Regenerate ``README.md`` and ``index.csv`` at the store's root."""
        df = self.list()
        if df.empty:
            return
        atomic_write_text(self.root / "index.csv", df_to_csv_text(df))
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
        atomic_write_text(self.root / "README.md", "\n".join(lines) + "\n")

    def _index_is_fresh(self) -> bool:
        """Cheap check (no hashing): both index files exist, list the same trial folders,
        agree on which are finished, and are newer than every record."""
        index, readme = self.root / "index.csv", self.root / "README.md"
        if not index.is_file() or not readme.is_file():
            return False
        try:
            listed = pd.read_csv(index, usecols=["path", "status"], dtype=str)
        except (OSError, ValueError):
            return False
        status = dict(zip(listed["path"], listed["status"]))
        newest = index.stat().st_mtime
        paths = self.trial_paths()
        if set(status) != {str(p.relative_to(self.root)) for p in paths}:
            return False
        for path in paths:
            rec = path / "record.json"
            try:
                finished = (not path.is_symlink() and not rec.is_symlink() and rec.is_file()
                            and json.loads(rec.read_text()).get("status") == "finished")
                if rec.is_file() and rec.stat().st_mtime > newest:
                    return False
            except (OSError, ValueError, AttributeError):
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
        self.write_index()
        return True


# --- moving finished trials between stores (Ray workers, a lent GPU machine) ----------------

def trial_files(trial_dir: Path) -> dict[str, str]:
    """A finished trial's records as ``{relative posix path: text}`` (never checkpoints):
    the record files, and each stage's metrics, hash, timing and masks. Symbolic links are
    never followed: they are left out (:meth:`RunStore._read` refuses such a trial)."""
    files = {name: (trial_dir / name).read_text() for name in RECORD_FILES
             if not (trial_dir / name).is_symlink()}
    for name in stage_files(trial_dir)[0]:
        files[name] = trial_dir.joinpath(*PurePosixPath(name).parts).read_text()
    return files


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
    root = store.trial_dir(cfg)
    for name in files:
        rel = PurePosixPath(name)
        ok = (not rel.is_absolute() and ".." not in rel.parts and len(rel.parts) >= 1
              and (name in RECORD_FILES or (len(rel.parts) == 2 and rel.parts[0] == "stages"
                                            and rel.suffix in _STAGE_SUFFIXES)))
        if not ok:
            raise ValueError(f"refusing to write {name!r} outside the trial's records; allowed: "
                             f"{', '.join(RECORD_FILES)}, stages/*.csv|.sha256|.json")
        links = _links_below(store.root, root.joinpath(*rel.parts)) if root.is_relative_to(
            store.root) else []
        if links:
            raise ValueError(f"refusing to write {name!r} through the symbolic link "
                             f"{links[0]} in {store.root}")
        _inside(root, root.joinpath(*rel.parts))
    for name in sorted(files, key=lambda n: n == "record.json"):
        atomic_write_text(root.joinpath(*PurePosixPath(name).parts), files[name])
    try:
        store._read(root)
    except (FileNotFoundError, CorruptRecordError) as err:
        (root / "record.json").unlink(missing_ok=True)
        raise RuntimeError(f"records written to {root} do not verify ({err}); removed their "
                           f"record.json, so the trial counts as partial") from err


IMPORT_OUTCOMES = ("imported", "already_present", "partial", "corrupt", "unverified",
                   "symlinks")


def import_trials(source: str | os.PathLike, dest: str | os.PathLike | None = None
                  ) -> dict[str, list[str]]:
    """Copy the finished, verified trials of the store at ``source`` into ``dest``.

    For results computed elsewhere (a lent GPU machine, another clone). The source is read
    as hostile: a trial is copied only when its folder is the one its config hashes to,
    every field naming a folder is a plain name, every file matches the sha256 in its
    record and no file is a symbolic link; every destination is checked to lie inside
    ``dest``. A trial whose run id ``dest`` already holds finished is skipped, never
    overwritten. Returns the relative paths per outcome (:data:`IMPORT_OUTCOMES`; corrupt
    and unverified ones with their reason, and every symbolic link met).
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
            rec = src._read(path)
        except FileNotFoundError:
            out["partial"].append(rel)
            continue
        except UnverifiedRecordError as err:
            out["unverified"].append(f"{rel} ({err})")
            continue
        except (CorruptRecordError, OSError, UnicodeDecodeError) as err:
            out["corrupt"].append(f"{rel} ({err})")
            continue
        try:
            if dst.load(rec.config) is not None:
                out["already_present"].append(rel)
                continue
            write_trial_files(dst, rec.config, trial_files(rec.path))
        except (ValueError, RuntimeError, OSError) as err:
            out["corrupt"].append(f"{rel} ({err})")
            continue
        out["imported"].append(rel)
    if out["imported"]:
        dst.write_index()
    else:
        dst.ensure_index()
    return out


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
            rec = store._read(path, require_all_hashes=False)
            names, _ = hashed_names(path)
            lacking = [n for n in names if n not in rec.record.get("sha256", {})]
            for name in lacking:
                if not name.startswith("stages/") and name != "config.json":
                    raise UnverifiedRecordError(f"its record has no sha256 for {name}, "
                                                f"which nothing else can verify")
                if name.endswith(".csv"):
                    csv = path.joinpath(*PurePosixPath(name).parts)
                    side = csv.with_suffix(".sha256")
                    if side.is_symlink() or not side.is_file() or (
                            side.read_text().strip() != sha256_text(csv.read_text())):
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
        record = dict(rec.record)
        record["sha256"] = {**record.get("sha256", {}), **{
            n: sha256_text(path.joinpath(*PurePosixPath(n).parts).read_text()) for n in lacking}}
        record["sha256_migration"] = {
            "migrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "added": len(lacking),
            "rule": "added after the existing sha256 (metrics.csv, summary.csv) verified, the "
                    "folder matched its config's run id and every stage CSV matched its "
                    ".sha256 file; stage JSON files had no earlier hash"}
        if not dry_run:
            atomic_write_text(path / "record.json", json.dumps(record, indent=1) + "\n")
            store._read(path)  # the migrated record must now verify in full
        out["migrated"].append(rel)
    if out["migrated"] and not dry_run:
        store.write_index()
    return out

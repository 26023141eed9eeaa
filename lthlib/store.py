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
stale results are never reused; a record whose files do not match their recorded sha256 is
reported as corrupt and recomputed, never used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from .config import ExperimentConfig, experiment_from_dict

DEFAULT_RUNS_DIR = Path(__file__).resolve().parents[1] / "runs"
MEMBER_KEYS = ["variant", "level", "replicate"]
RECORD_FILES = ("config.json", "metrics.csv", "summary.csv", "record.json")


class CorruptRecordError(RuntimeError):
    """A stored file does not match the hash recorded for it."""


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """Argument, else env LTH_RUNS_DIR, else the repository's ``runs/``."""
    return Path(runs_dir or os.environ.get("LTH_RUNS_DIR") or DEFAULT_RUNS_DIR)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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


@dataclass
class TrialRecord:
    """A finished trial as read back from disk."""

    config: ExperimentConfig
    path: Path
    summary: pd.DataFrame
    record: dict[str, Any]

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "metrics.csv")


class RunStore:
    """Reads and writes trial records under one runs directory."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = resolve_runs_dir(root)

    # --- paths ---
    def trial_dir(self, cfg: ExperimentConfig) -> Path:
        """Directory of a single-trial config (``cfg.trials == 1``)."""
        if cfg.trials != 1:
            raise ValueError(f"trial_dir() wants a single-trial config, got trials={cfg.trials}")
        group = f"{cfg.model.arch}-{cfg.data.dataset}-{cfg.profile}"
        if cfg.lr_setting:
            group += f"-{cfg.lr_setting}"
        return self.root / cfg.experiment / group / f"seed{cfg.seed}-{cfg.run_id()}"

    def ckpt_dir(self, cfg: ExperimentConfig) -> Path:
        return self.trial_dir(cfg) / "ckpt"

    # --- stages (resume points) ---
    def stage_path(self, cfg: ExperimentConfig, stage: str) -> Path:
        return self.trial_dir(cfg) / "stages" / f"{stage}.csv"

    def save_stage(self, cfg: ExperimentConfig, stage: str, metrics: pd.DataFrame,
                   wall_time_s: float | None = None) -> None:
        """Write one stage's metrics atomically, with its hash beside it, and the stage's
        training time (``stages/<stage>.json``) so that a trial resumed across processes
        still reports its whole training time."""
        self._write_config(cfg)
        text = df_to_csv_text(metrics)
        path = self.stage_path(cfg, stage)
        if wall_time_s is not None:
            timing = {"wall_time_s": round(float(wall_time_s), 2),
                      "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            atomic_write_text(path.with_suffix(".json"), json.dumps(timing) + "\n")
        atomic_write_text(path, text)
        atomic_write_text(path.with_suffix(".sha256"), sha256_text(text) + "\n")

    def stage_times(self, cfg: ExperimentConfig) -> dict[str, float | None]:
        """Training seconds of each stored stage of a trial (None where it was not timed)."""
        out: dict[str, float | None] = {}
        for csv in sorted((self.trial_dir(cfg) / "stages").glob("*.csv")):
            timing = csv.with_suffix(".json")
            try:
                out[csv.stem] = float(json.loads(timing.read_text())["wall_time_s"])
            except (OSError, ValueError, KeyError, TypeError):
                out[csv.stem] = None
        return out

    def load_stage(self, cfg: ExperimentConfig, stage: str) -> pd.DataFrame | None:
        path = self.stage_path(cfg, stage)
        sha = path.with_suffix(".sha256")
        if not path.exists() or not sha.exists():
            return None
        text = path.read_text()
        if sha256_text(text) != sha.read_text().strip():
            warnings.warn(f"stage file {path} does not match its hash: recomputing it")
            return None
        return pd.read_csv(io.StringIO(text))

    # --- finished trials ---
    def load(self, cfg: ExperimentConfig) -> TrialRecord | None:
        """The finished record for ``cfg``, or None if absent, partial or corrupt (warns)."""
        path = self.trial_dir(cfg)
        try:
            return self._read(path)
        except FileNotFoundError:
            return None
        except CorruptRecordError as err:
            warnings.warn(f"{err}; it will be recomputed")
            return None

    def _read(self, path: Path) -> TrialRecord:
        rec_file = path / "record.json"
        if not rec_file.exists():
            raise FileNotFoundError(rec_file)
        try:
            record = json.loads(rec_file.read_text())
            config = experiment_from_dict(json.loads((path / "config.json").read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise CorruptRecordError(f"record in {path} is unreadable ({err})") from err
        if record.get("status") != "finished":
            raise FileNotFoundError(rec_file)
        for name, digest in record.get("sha256", {}).items():
            f = path / name
            if not f.exists() or sha256_text(f.read_text()) != digest:
                raise CorruptRecordError(f"{f} is missing or does not match its sha256")
        if config.run_id() != record.get("run_id"):
            raise CorruptRecordError(f"config in {path} does not hash to its recorded run id")
        return TrialRecord(config, path, pd.read_csv(path / "summary.csv"), record)

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
        """
        from . import __version__
        path = self.trial_dir(cfg)
        stages = self.stage_times(cfg)
        earlier = [stages.get(name) for name in resumed_stages] + list(carried_wall_times)
        timing: dict[str, Any] = {"process_wall_time_s": round(wall_time, 2),
                                  "wall_time_complete": all(v is not None for v in earlier),
                                  "stage_wall_time_s": stages}
        wall_time += sum(v for v in earlier if v is not None)
        self._write_config(cfg)
        texts = {"metrics.csv": df_to_csv_text(metrics), "summary.csv": df_to_csv_text(summary)}
        for name, text in texts.items():
            atomic_write_text(path / name, text)
        record = {
            "status": "finished", "run_id": cfg.run_id(), "experiment": cfg.experiment,
            "arch": cfg.model.arch, "dataset": cfg.data.dataset, "profile": cfg.profile,
            "seed": cfg.seed, "lr_setting": cfg.lr_setting,
            "levels": int(summary["level"].nunique()) if "level" in summary else 0,
            "networks": len(summary), "wall_time_s": round(wall_time, 2), "hardware": hardware,
            "lthlib_version": __version__, "git_commit": code_version or git_commit(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sha256": {name: sha256_text(text) for name, text in texts.items()},
            **timing, **(extra or {}),
        }
        atomic_write_text(path / "record.json", json.dumps(record, indent=1) + "\n")
        self.write_index()
        return TrialRecord(cfg, path, summary, record)

    def _write_config(self, cfg: ExperimentConfig) -> None:
        path = self.trial_dir(cfg) / "config.json"
        if not path.exists():
            atomic_write_text(path, json.dumps({**cfg.to_dict()}, indent=1) + "\n")

    # --- listing ---
    def list(self) -> pd.DataFrame:
        """One row per trial directory: finished, partial or corrupt."""
        rows = []
        for cfg_file in sorted(self.root.glob("*/*/*/config.json")):
            path = cfg_file.parent
            row: dict[str, Any] = {"path": str(path.relative_to(self.root))}
            try:
                rec = self._read(path)
                row.update({k: rec.record.get(k) for k in (
                    "experiment", "arch", "dataset", "profile", "seed", "lr_setting", "levels",
                    "networks", "wall_time_s", "git_commit")})
                row["reinits"] = rec.config.reinits
                row["device"] = rec.record.get("hardware", {}).get("device")
                row["status"] = "finished"
            except FileNotFoundError:
                cfg = experiment_from_dict(json.loads(cfg_file.read_text()))
                row.update({"experiment": cfg.experiment, "arch": cfg.model.arch,
                            "dataset": cfg.data.dataset, "profile": cfg.profile,
                            "seed": cfg.seed, "lr_setting": cfg.lr_setting,
                            "reinits": cfg.reinits, "status": "partial"})
            except CorruptRecordError:
                row["status"] = "corrupt"
            rows.append(row)
        df = pd.DataFrame(rows)
        # integers, even beside partial rows' gaps
        for col in ("seed", "levels", "networks", "reinits"):
            if col in df:
                df[col] = df[col].astype("Int64")
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


# --- moving finished trials between stores (Ray workers, a lent GPU machine) ----------------

def trial_files(trial_dir: Path) -> dict[str, str]:
    """A finished trial's records as ``{relative posix path: text}`` (never checkpoints):
    the record files, and each stage's metrics, hash and timing."""
    files = {name: (trial_dir / name).read_text() for name in RECORD_FILES}
    stages = trial_dir / "stages"
    if stages.is_dir():
        for f in sorted(stages.iterdir()):
            if f.suffix in (".csv", ".sha256", ".json") and f.is_file():
                files[f"stages/{f.name}"] = f.read_text()
    return files


def write_trial_files(store: RunStore, cfg: ExperimentConfig, files: dict[str, str]) -> None:
    """Write a trial's files (from :func:`trial_files`) into ``store`` atomically, verify it.

    ``record.json`` is written last (it marks the trial finished), so a writer interrupted
    mid-way leaves a partial trial that the next run recomputes, never a wrong one.
    """
    missing = [n for n in RECORD_FILES if n not in files]
    if missing:
        raise ValueError(f"trial files lack {', '.join(missing)}; expected at least "
                         f"{', '.join(RECORD_FILES)}")
    root = store.trial_dir(cfg)
    for name in sorted(files, key=lambda n: n == "record.json"):
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or rel.parts[0] not in (
                *RECORD_FILES, "stages"):
            raise ValueError(f"refusing to write {name!r} outside the trial's records; allowed: "
                             f"{', '.join(RECORD_FILES)}, stages/*")
        atomic_write_text(root.joinpath(*rel.parts), files[name])
    if store.load(cfg) is None:
        raise RuntimeError(f"records written to {root} do not verify against their sha256")


def import_trials(source: str | os.PathLike, dest: str | os.PathLike | None = None
                  ) -> dict[str, list[str]]:
    """Copy the finished, verified trials of the store at ``source`` into ``dest``.

    For results computed elsewhere (a lent GPU machine, another clone). A trial whose run id
    ``dest`` already holds finished is skipped, never overwritten: the same config is the
    same result, and the first stored one stays. Partial trials are skipped; corrupt ones
    are refused and named. Checkpoints never travel. Returns the relative paths per outcome.
    """
    src, dst = RunStore(source), RunStore(dest)
    if src.root.resolve() == dst.root.resolve():
        raise ValueError(f"source and destination are the same store: {src.root}")
    if not src.root.is_dir():
        raise FileNotFoundError(f"no runs store at {src.root}")
    out: dict[str, list[str]] = {"imported": [], "already_present": [], "partial": [],
                                 "corrupt": []}
    for cfg_file in sorted(src.root.glob("*/*/*/config.json")):
        rel = str(cfg_file.parent.relative_to(src.root))
        try:
            rec = src._read(cfg_file.parent)
        except FileNotFoundError:
            out["partial"].append(rel)
            continue
        except CorruptRecordError as err:
            out["corrupt"].append(f"{rel} ({err})")
            continue
        if dst.load(rec.config) is not None:
            out["already_present"].append(rel)
            continue
        write_trial_files(dst, rec.config, trial_files(rec.path))
        out["imported"].append(rel)
    if out["imported"]:
        dst.write_index()
    return out

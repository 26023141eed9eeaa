"""The stored trials of :func:`lthlib.experiments.find_ticket`: one folder per trial, named by a hash.

Layout, beside the experiments' folders (which ``runs ls`` lists; this one it leaves out)::

    runs/own-network/<name>/seed<s>-<run id>/
        config.json         hyperparameters, architecture and data fingerprints, θ0's digest
        stages/<stage>.csv  one network's evaluations, written when it finishes (+ .sha256,
                            .json with its training time); <stage>.mask.json: packed masks
        metrics.csv, summary.csv, record.json (sha256 of every other file; written last)
        ckpt/               resume checkpoints of the network in training (gitignored)

The run id is the sha256 of ``config.json``'s content, so a changed model, dataset or
hyperparameter never reuses stored numbers. A stage is used only when it matches its hash;
a finished trial only when every file matches the record.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.store.file_checks import component, df_to_csv_text, sha256_text
from lthlib.store.records import read_record, write_record
from lthlib.util.atomic import atomic_write_text
from lthlib.util.errors import CorruptRecordError

__all__ = ["FOLDER", "TrialFiles", "run_id"]

FOLDER = "own-network"


def run_id(config: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of the canonical JSON of a trial's config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrialFiles:
    """Reads and writes one find_ticket trial's folder."""

    root: Path
    name: str
    config: dict[str, Any]

    @property
    def path(self) -> Path:
        seed = self.config["seed"]
        return (Path(self.root) / FOLDER / component("name", self.name)
                / f"seed{int(seed)}-{run_id(self.config)}")

    @property
    def ckpt(self) -> Path:
        return self.path / "ckpt"

    def stage_csv(self, stage: str) -> Path:
        return self.path / "stages" / f"{stage}.csv"

    def write_config(self) -> None:
        text = json.dumps(self.config, indent=1, sort_keys=True) + "\n"
        target = self.path / "config.json"
        if not target.is_file() or target.read_text() != text:
            atomic_write_text(target, text)

    def save_stage(self, stage: str, metrics: pd.DataFrame, wall_time_s: float,
                   settings: dict[str, Any]) -> None:
        """One network's evaluations, its hash and its training time (the resume point)."""
        self.write_config()
        text = df_to_csv_text(metrics)
        path = self.stage_csv(stage)
        info = {"wall_time_s": round(wall_time_s, 2),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **settings}
        atomic_write_text(path.with_suffix(".json"), json.dumps(info) + "\n")
        atomic_write_text(path, text)
        atomic_write_text(path.with_suffix(".sha256"), sha256_text(text) + "\n")

    def load_stage(self, stage: str) -> pd.DataFrame | None:
        """The stage's evaluations if stored and matching their hash, else None."""
        path = self.stage_csv(stage)
        sha = path.with_suffix(".sha256")
        if not path.is_file() or not sha.is_file() or path.is_symlink():
            return None
        text = path.read_text()
        if sha256_text(text) != sha.read_text().strip():
            return None
        return pd.read_csv(io.StringIO(text))

    def stage_seconds(self, key: str = "wall_time_s") -> float:
        """Sum of the stored stages' ``wall_time_s`` (or ``cpu_time_s``): the trial's
        training time, whichever processes trained it."""
        total = 0.0
        for info in sorted((self.path / "stages").glob("*.json")):
            if info.name.endswith(".mask.json"):
                continue
            try:
                total += float(json.loads(info.read_text()).get(key, 0.0))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
        return total

    def _files(self) -> list[str]:
        names = ["config.json", "metrics.csv", "summary.csv"]
        stages = self.path / "stages"
        names += sorted(f"stages/{p.name}" for p in stages.iterdir()
                        if p.is_file() and not p.is_symlink()) if stages.is_dir() else []
        return names

    def finish(self, metrics: pd.DataFrame, summary: pd.DataFrame,
               extra: dict[str, Any]) -> dict[str, Any]:
        """Write metrics, summary and, last, the record holding every file's sha256
        (through the store's one record writer)."""
        texts = {"metrics.csv": df_to_csv_text(metrics), "summary.csv": df_to_csv_text(summary)}
        hashed = [n for n in self._files() if n not in texts]
        record = {"status": "finished", "run_id": run_id(self.config), "name": self.name,
                  "seed": self.config["seed"], "networks": len(summary),
                  "wall_time_s": round(self.stage_seconds(), 2),
                  "cpu_time_s": round(self.stage_seconds("cpu_time_s"), 2), **extra}
        return write_record(self.path, texts, record, hashed=hashed)

    def finished(self) -> dict[str, Any] | None:
        """The record of a finished trial whose files all match it, else None."""
        try:
            record = read_record(self.path, self._files())
        except (OSError, CorruptRecordError):
            return None
        hashes = record.get("sha256")
        if (record.get("status") != "finished" or not isinstance(hashes, dict)
                or set(hashes) != set(self._files())
                or record.get("run_id") != run_id(self.config)):
            return None
        return record

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.path / name)

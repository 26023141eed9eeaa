"""A trial's resume points: the files of ``stages/`` written as each stage finishes.

Each stage stores its metrics (``<stage>.csv``), their sha256 (``<stage>.sha256``) and a small
JSON document (``<stage>.json``: training time, numeric settings and the stage's identity,
:mod:`lthlib.experiments.stage_identity`). :class:`StageFiles` writes them and reads them back with the
checks ``runs ls`` applies to a finished trial, so resume trusts nothing listing would not.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.util.atomic import atomic_write_text
from lthlib.config.experiment import ExperimentConfig
from lthlib.store.file_checks import (MAX_JSON_BYTES, df_to_csv_text, json_object, read_json,
                                      read_text, sha256_text)
from lthlib.util.errors import CorruptRecordError

# per-stage settings that change the numbers (float reductions, the sparse path)
NUMERIC_SETTINGS = ("threads", "sparse_path_below_density")


class StageFiles:
    """Stage files of a store's trials; :class:`lthlib.store.run_store.RunStore` provides the folders."""

    def trial_dir(self, cfg: ExperimentConfig) -> Path:
        raise NotImplementedError

    def writable_dir(self, cfg: ExperimentConfig) -> Path:
        raise NotImplementedError

    def _write_config(self, cfg: ExperimentConfig) -> None:
        raise NotImplementedError

    def stage_path(self, cfg: ExperimentConfig, stage: str) -> Path:
        return self.trial_dir(cfg) / "stages" / f"{stage}.csv"

    def save_stage(self, cfg: ExperimentConfig, stage: str, metrics: pd.DataFrame,
                   wall_time_s: float | None = None,
                   settings: dict[str, Any] | None = None,
                   identity: dict[str, Any] | None = None) -> None:
        """Write one stage's metrics atomically, with its hash beside it, and the stage's
        training time, numeric settings (threads, sparse-path threshold) and identity
        (``stages/<stage>.json``; :mod:`lthlib.experiments.stage_identity`), so that a trial resumed
        across processes still reports its whole training time, says which settings
        trained which stage, and resumes only from its own stages."""
        self._write_config(cfg)
        text = df_to_csv_text(metrics)
        path = self.writable_dir(cfg) / "stages" / f"{stage}.csv"
        info: dict[str, Any] = {}
        if wall_time_s is not None:
            info["wall_time_s"] = round(float(wall_time_s), 2)
        info["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        info.update(settings or {})
        if identity is not None:
            info["identity"] = {**identity, "csv_sha256": sha256_text(text)}
        atomic_write_text(path.with_suffix(".json"), json.dumps(info) + "\n")
        atomic_write_text(path, text)
        atomic_write_text(path.with_suffix(".sha256"), sha256_text(text) + "\n")

    def stage_info(self, cfg: ExperimentConfig, stages: Sequence[str] | None = None
                   ) -> dict[str, dict[str, Any]]:
        """``{stage: its .json}`` for ``stages`` (default: every stored stage); an
        unreadable one reads as empty."""
        folder = self.trial_dir(cfg) / "stages"
        if stages is None:
            stages = sorted(p.stem for p in folder.glob("*.csv")) if not folder.is_symlink() \
                else []
        out: dict[str, dict[str, Any]] = {}
        for name in stages:
            try:
                value = read_json(folder / f"{name}.json", MAX_JSON_BYTES)
            except (OSError, CorruptRecordError):
                value = {}
            out[name] = value if isinstance(value, dict) else {}
        return out

    def stage_times(self, cfg: ExperimentConfig, stages: Sequence[str] | None = None
                    ) -> dict[str, float | None]:
        """Training seconds of each stored stage of a trial (None where it was not timed);
        ``stages`` names the ones to read (default: every stored stage)."""
        out: dict[str, float | None] = {}
        for name, info in self.stage_info(cfg, stages).items():
            try:
                out[name] = float(info["wall_time_s"])
            except (KeyError, TypeError, ValueError, OverflowError):
                out[name] = None
        return out

    def stage_settings(self, cfg: ExperimentConfig, keys: Sequence[str] = NUMERIC_SETTINGS,
                       stages: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """``{stage: {setting: value}}`` for the stored stages that recorded their settings
        (stages written before settings were recorded are left out)."""
        return {name: {k: info[k] for k in keys if k in info}
                for name, info in self.stage_info(cfg, stages).items()
                if any(k in info for k in keys)}

    def verified_stage_text(self, cfg: ExperimentConfig, stage: str) -> str:
        """A stage's metrics text if its files pass the checks ``runs ls`` applies: regular
        files, the ``.sha256`` beside it, and the sha256 in ``record.json`` wherever a record
        lists the stage's files. FileNotFoundError when none is stored; CorruptRecordError
        naming the file and the reason otherwise."""
        path = self.stage_path(cfg, stage)
        text = read_text(path)
        try:
            side = read_text(path.with_suffix(".sha256"), 1024).strip()
        except FileNotFoundError:
            raise CorruptRecordError(f"{path} has no .sha256 file beside it") from None
        if sha256_text(text) != side:
            raise CorruptRecordError(f"{path} does not match its .sha256 file")
        try:
            hashes = json_object(path.parent.parent / "record.json").get("sha256")
        except (FileNotFoundError, CorruptRecordError):
            hashes = None  # no record (a partial trial), or one that vouches for nothing
        for f in (path, path.with_suffix(".json")):
            want = hashes.get(f"stages/{f.name}") if isinstance(hashes, dict) else None
            if want is not None and sha256_text(read_text(f)) != want:
                raise CorruptRecordError(f"{f} does not match the sha256 in its record.json")
        return text

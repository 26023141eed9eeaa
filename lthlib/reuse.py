"""Extending a finished trial instead of recomputing it: more IMP rounds, more controls.

An IMP trial with R rounds is a prefix of the same trial with R' > R rounds: level k's mask
depends only on levels below k, and every control's init is derived from (seed, level,
replicate) alone (:func:`lthlib.members.derive_seed`). Likewise a trial with more
re-inits or random sparse networks per level contains the smaller one's networks unchanged.
So a new trial whose config differs from a finished one *only* by more ``prune.rounds`` or
more ``reinits`` starts from a copy of that trial's stage files and checkpoints, and trains
only the networks the finished trial lacks. The new trial keeps its own identity (its own
config hash and folder); its record names the trial it was extended from
(``reused_from``), that trial's commit and how much of the wall time was computed there.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import ExperimentConfig
from .masks import MASK_SUFFIX
from .rewind import state_path
from .atomic import atomic_save, atomic_write_text
from .store import RunStore, TrialRecord

REUSE_FILE = "reused_from.json"
_IMP_FAMILY = ("imp", "global-imp")


def _fixed_part(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with the fields an extension may grow set to zero."""
    return replace(cfg, reinits=0, prune=replace(cfg.prune, rounds=0))


def extends(source: ExperimentConfig, target: ExperimentConfig) -> bool:
    """True when ``target`` holds every network of ``source`` unchanged, and more."""
    if source == target or _fixed_part(source) != _fixed_part(target):
        return False
    if source.reinits > target.reinits:
        return False
    if target.experiment in _IMP_FAMILY and source.prune.rounds > target.prune.rounds:
        return False
    return True


def find_source(store: RunStore, target: ExperimentConfig) -> TrialRecord | None:
    """The finished trial with the most networks that ``target`` extends, if any."""
    best: TrialRecord | None = None
    for cfg_file in sorted(store.trial_dir(target).parent.glob(f"seed{target.seed}-*/config.json")):
        try:
            rec = store.read(cfg_file.parent)
        except Exception:  # partial or corrupt trials are never reused
            continue
        if extends(rec.config, target) and (best is None or len(rec.summary) > len(best.summary)):
            best = rec
    return best


def _copy_atomic(src: Path, dst: Path) -> None:
    atomic_save(dst, lambda tmp: shutil.copyfile(src, tmp))


def seed_from(store: RunStore, target: ExperimentConfig, source: TrialRecord) -> dict[str, Any]:
    """Copy ``source``'s stage files and checkpoints into ``target``'s fresh folder.

    The stored masks and the late-rewinding state come along, so the extension needs no
    checkpoint for the levels the source finished: only its last level, whose final weights
    give the first new mask, retrains where ``ckpt/`` is missing (same numbers, slower).
    Checkpoints are copied when present (they are not in git).
    """
    dst = store.trial_dir(target)
    if (dst / "stages").exists():
        raise FileExistsError(f"{dst} already has stages; it is resumed, not seeded")
    stages = sorted(p.stem for p in (source.path / "stages").glob("*.csv"))
    # each stage's files and its stored mask, and the late-rewinding state: with them the
    # extension resumes after the source's last level even where ckpt/ is absent (a clone)
    files = [f"{name}{suffix}" for name in stages
             for suffix in (".csv", ".sha256", ".json", MASK_SUFFIX)]
    if source.config.rewind_iteration:
        files.append(state_path(source.path, source.config.rewind_iteration).name)
    for name in files:
        src = source.path / "stages" / name
        if src.is_file() and not src.is_symlink():  # links are never followed
            _copy_atomic(src, dst / "stages" / src.name)
    ckpts = sorted(ck for ck in (source.path / "ckpt").glob("*.pt")
                   if ck.is_file() and not ck.is_symlink())
    for ck in ckpts:
        _copy_atomic(ck, dst / "ckpt" / ck.name)
    note = {
        "path": str(source.path.relative_to(store.root)), "run_id": source.record["run_id"],
        "git_commit": source.record.get("git_commit"), "rounds": source.config.prune.rounds,
        "reinits": source.config.reinits, "networks": len(source.summary),
        "stages": stages, "checkpoints": [ck.stem for ck in ckpts],
        "wall_time_s": source.record.get("wall_time_s"),
    }
    atomic_write_text(dst / REUSE_FILE, json.dumps(note, indent=1) + "\n")
    return note


def seed_missing(store: RunStore, targets: list[ExperimentConfig]) -> list[dict[str, Any]]:
    """Seed every target that has not started yet from the best finished source."""
    notes = []
    for t in targets:
        if (store.trial_dir(t) / "stages").exists():
            continue
        source = find_source(store, t)
        if source is not None:
            notes.append(seed_from(store, t, source))
    return notes


def reuse_note(store: RunStore, cfg: ExperimentConfig) -> dict[str, Any] | None:
    path = store.trial_dir(cfg) / REUSE_FILE
    return json.loads(path.read_text()) if path.exists() else None

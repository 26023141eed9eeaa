"""Extending a finished trial instead of recomputing it: more IMP rounds, more controls.

An IMP trial with R rounds is a prefix of the same trial with R' > R rounds: level k's mask
depends only on levels below k, and every control's init is derived from (seed, level,
replicate) alone (:func:`lthlib.training.stage_networks.derive_seed`). Likewise a trial with more
re-inits or random sparse networks per level contains the smaller one's networks unchanged.
So a new trial whose config differs from a finished one *only* by more ``prune.rounds`` or
more ``reinits`` starts from a copy of that trial's stage files and checkpoints, and trains
only the networks the finished trial lacks. The new trial keeps its own identity (its own
config hash and folder); its record names the trial it was extended from
(``reused_from``), that trial's commit and how much of the wall time was computed there.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from lthlib.util.atomic import atomic_write_bytes, atomic_write_text
from lthlib.config.experiment import ExperimentConfig
from lthlib.util.errors import CorruptRecordError
from lthlib.store.file_checks import read_bytes, read_json, read_text, sha256_text
from lthlib.store.run_store import RunStore, TrialRecord

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
    group = store.trial_dir(target).parent
    for cfg_file in sorted(group.glob(f"seed{target.seed}-*/config.json")):
        try:
            rec = store.read(cfg_file.parent)
        except (FileNotFoundError, CorruptRecordError, OSError):
            continue  # partial or corrupt trials are never reused
        if extends(rec.config, target) and (best is None or len(rec.summary) > len(best.summary)):
            best = rec
    return best


def seed_from(store: RunStore, target: ExperimentConfig, source: TrialRecord) -> dict[str, Any]:
    """Copy ``source``'s stage files and checkpoints into ``target``'s fresh folder.

    Only the stage files the source's record hashes are copied, each checked against that
    hash as it is read (the stored masks and the late-rewinding state among them), so the
    extension needs no checkpoint for the levels the source finished: only its last level,
    whose final weights give the first new mask, retrains where ``ckpt/`` is missing (same
    numbers, slower). Checkpoints are copied when present (they are not in git; each
    carries its own identity, checked on resume). The note lists the copied files' sha256.
    """
    dst = store.writable_dir(target)
    if (dst / "stages").exists() or (dst / "stages").is_symlink():
        raise FileExistsError(f"{dst} already has stages; it is resumed, not seeded")
    hashes = source.record.get("sha256") or {}
    copied: dict[str, str] = {}
    for name, digest in sorted(hashes.items()):
        rel = PurePosixPath(name)
        if len(rel.parts) != 2 or rel.parts[0] != "stages":
            continue
        data = read_bytes(source.path / "stages" / rel.name)
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptRecordError(f"{source.path / name} changed since it was verified")
        atomic_write_bytes(dst / "stages" / rel.name, data)
        copied[name] = digest
    ckpts = []
    for ck in sorted((source.path / "ckpt").glob("*.pt")):
        try:
            atomic_write_bytes(dst / "ckpt" / ck.name, read_bytes(ck, 16 * 2**30))
            ckpts.append(ck.stem)
        except (CorruptRecordError, OSError):  # no regular file: never followed or copied
            continue
    stages = sorted(PurePosixPath(n).stem for n in copied if n.endswith(".csv"))
    note = {
        "path": str(source.path.relative_to(store.root)), "run_id": source.record["run_id"],
        "git_commit": source.record.get("git_commit"), "rounds": source.config.prune.rounds,
        "reinits": source.config.reinits, "networks": len(source.summary),
        "stages": stages, "checkpoints": ckpts,
        "wall_time_s": source.record.get("wall_time_s"), "sha256": copied,
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


def read_note(trial_dir: Path) -> dict[str, Any] | None:
    """The note of the verified trial this one was seeded from, if a readable one is stored
    (an unreadable note trusts nothing)."""
    try:
        note = read_json(Path(trial_dir) / REUSE_FILE)
    except (FileNotFoundError, CorruptRecordError, OSError):
        return None
    return note if isinstance(note, dict) else None


def reuse_note(store: RunStore, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """What the record says in ``reused_from`` (the note without its list of hashes)."""
    note = read_note(store.trial_dir(cfg))
    return {k: v for k, v in note.items() if k != "sha256"} if note else None


def foreign_reason(trial_dir: Path, doc: Any, path: Path) -> str | None:
    """Why the stored document ``doc`` (a mask or θk read from ``path``) is not this trial's,
    None when it is: it names this trial's folder (seed and run id) or that of the verified
    trial this one extends, or it names none and was copied unchanged from that trial."""
    trial_dir = Path(trial_dir)
    note = read_note(trial_dir) or {}
    seed = trial_dir.name.split("-")[0]
    owners = {trial_dir.name} | ({f"{seed}-{note['run_id']}"}
                                 if isinstance(note.get("run_id"), str) else set())
    named = doc.get("trial") if isinstance(doc, dict) else None
    if named in owners:
        return None
    vouched = note.get("sha256") if isinstance(note.get("sha256"), dict) else {}
    if named is None and vouched.get(f"stages/{path.name}") == sha256_text(read_text(path)):
        return None
    if named is None:
        return "it names no trial (written by an older lthlib, or copied from elsewhere)"
    return f"it belongs to trial {named!r}, not {trial_dir.name!r}"

"""What ties a resume point to its trial: the identity every stage file and checkpoint carries.

A stage's metrics (``stages/<stage>.csv``) and its checkpoint (``ckpt/<stage>.pt``) are used
on resume only when they pass the checks that ``runs ls`` applies (regular files, their
hashes, the record's sha256 where a record lists them) and carry this trial's identity: the
run id (or, for an extension, that of the verified trial it was seeded from), the seed, the
stage, and per network the digest of its mask and starting weights. Anything else is
discarded with its reason and recomputed, so a file copied from another seed, another config
or another stage is never trained on or reported. An identity is a checksum, not a signature:
it stops accidents and careless copies, not a forger who recomputes it.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lthlib.util.atomic import atomic_save
from lthlib.config.experiment import ExperimentConfig
from lthlib.pruning.mask_files import mask_digest, theta0_digest
from lthlib.training.stage_networks import Member, member_key
from lthlib.pruning.prune import State
from lthlib.store.file_checks import MAX_JSON_BYTES, read_bytes, read_json, read_text, sha256_text
from lthlib.util.errors import CorruptRecordError
from lthlib.store.extension import read_note
from lthlib.store.run_store import MEMBER_KEYS, RunStore

MAX_CKPT_BYTES = 16 * 2**30
STAGE_COLUMNS = (*MEMBER_KEYS, "pm", "iteration")


def member_digest(m: Member) -> str:
    """sha256 of what a network starts from: its mask (or "dense") and its initial weights."""
    mask = mask_digest(m.mask) if m.mask is not None else "dense"
    return hashlib.sha256(f"{mask}|{theta0_digest(m.init)}".encode()).hexdigest()


def stage_identity(trial_run_id: str, seed: int, stage: str,
                   members: Iterable[Member]) -> dict[str, Any]:
    """The identity written into a stage's ``.json`` and its checkpoint."""
    return {"run_id": trial_run_id, "seed": seed, "stage": stage,
            "members": {m.key: member_digest(m) for m in members}}


def trusted_run_ids(trial_dir: Path, run_id: str) -> set[str]:
    """This trial's run id and that of the finished trial it extends."""
    note = read_note(trial_dir)
    source = note.get("run_id") if note else None
    return {run_id} | ({source} if isinstance(source, str) else set())


def _reused_hashes(trial_dir: Path) -> dict[str, str]:
    """sha256 of the stage files copied from a verified trial (older files carry no
    identity; their hash in the verified source's record vouches for them)."""
    note = read_note(trial_dir)
    hashes = note.get("sha256") if note else None
    return hashes if isinstance(hashes, dict) else {}


def own_stages(store: RunStore, trial: ExperimentConfig) -> list[str]:
    """The stored stages whose ``.json`` names this trial (or that were copied unchanged
    from the trial it extends): only their settings decide whether a resume may go on."""
    trial_dir = store.trial_dir(trial)
    trusted, vouched = trusted_run_ids(trial_dir, trial.run_id()), _reused_hashes(trial_dir)
    out = []
    for name, info in store.stage_info(trial).items():
        found = info.get("identity")
        if isinstance(found, dict):
            if found.get("run_id") in trusted and found.get("seed") == trial.seed:
                out.append(name)
            continue
        try:
            text = read_text(trial_dir / "stages" / f"{name}.json")
        except (OSError, CorruptRecordError):
            continue
        if vouched.get(f"stages/{name}.json") == sha256_text(text):
            out.append(name)
    return out


def identity_problem(found: Any, want: dict[str, Any], trusted: set[str],
                     keys: Iterable[str]) -> str | None:
    """Why ``found`` (a stored identity) is not ``want``'s for the networks ``keys``
    (None when it is)."""
    if not isinstance(found, dict):
        return "it carries no identity (run id, seed, stage, digests)"
    if found.get("run_id") not in trusted:
        return f"it belongs to run id {found.get('run_id')!r}, not {want['run_id']!r}"
    for field in ("seed", "stage"):
        if found.get(field) != want[field]:
            return f"it belongs to {field} {found.get(field)!r}, not {want[field]!r}"
    stored = found.get("members")
    if not isinstance(stored, dict):
        return "its identity lists no networks"
    for key in keys:
        if key not in stored:
            return f"its identity lacks network {key}"
        if stored[key] != want["members"].get(key):
            return (f"network {key} started from another mask or other initial weights than "
                    f"this trial's")
    return None


def load_stage(store: RunStore, trial: ExperimentConfig, stage: str, members: list[Member]
               ) -> tuple[pd.DataFrame | None, str | None]:
    """``(rows, None)`` for a stage file this trial may resume from (only rows of its own
    networks), ``(None, None)`` when none is stored, ``(None, reason)`` when one is stored
    but must be discarded."""
    csv = store.stage_path(trial, stage)
    try:
        text = store.verified_stage_text(trial, stage)
    except FileNotFoundError:
        return None, None
    except (CorruptRecordError, OSError) as err:
        return None, str(err)
    trial_dir = csv.parent.parent
    try:
        info = read_json(csv.with_suffix(".json"), MAX_JSON_BYTES)
    except FileNotFoundError:
        info = None
    except (CorruptRecordError, OSError) as err:
        return None, str(err)
    found = info.get("identity") if isinstance(info, dict) else None
    if found is None and _reused_hashes(trial_dir).get(f"stages/{csv.name}") == sha256_text(
            text):
        found = "reused"  # copied unchanged from the verified trial this one extends
    try:
        rows = pd.read_csv(io.StringIO(text))
        keys = [member_key(v, int(lv), int(rp))
                for v, lv, rp in rows[list(MEMBER_KEYS)].itertuples(index=False)]
        if rows.empty or not set(STAGE_COLUMNS) <= set(rows.columns):
            raise ValueError(f"columns {list(rows.columns)[:8]}")
    except (ValueError, KeyError, TypeError, OverflowError, pd.errors.ParserError) as err:
        return None, f"its rows are not a stage's metrics ({err})"
    mine = {m.key for m in members}
    if not set(keys) <= mine:
        return None, (f"it holds networks this trial does not train "
                      f"({', '.join(sorted(set(keys) - mine)[:3])})")
    if found != "reused":
        want = stage_identity(trial.run_id(), trial.seed, stage, members)
        problem = identity_problem(found, want, trusted_run_ids(trial_dir, trial.run_id()),
                                   sorted(set(keys)))
        if problem is None and found.get("csv_sha256") != sha256_text(text):
            problem = "its identity names other metrics (csv_sha256)"
        if problem:
            return None, problem
    return rows, None


def save_checkpoint(path: Path, identity: dict[str, Any], states: dict[str, State]) -> None:
    """Final weights of a stage's networks, with the stage's identity and their digests."""
    doc = {"identity": identity, "states": states,
           "digests": {k: theta0_digest(s) for k, s in states.items()}}
    atomic_save(path, lambda tmp: torch.save(doc, tmp))


def load_checkpoint(path: Path, identity: dict[str, Any], trusted: set[str],
                    keys: Iterable[str]) -> tuple[dict[str, State], str | None]:
    """``(states, None)`` of the networks ``keys`` when ``path`` holds this stage's
    checkpoint, ``({}, None)`` when there is none, ``({}, reason)`` when it is discarded."""
    try:
        data = read_bytes(path, MAX_CKPT_BYTES)
        doc = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return {}, None
    except (CorruptRecordError, OSError) as err:
        return {}, str(err)
    except Exception as err:  # noqa: BLE001 - any damage to a checkpoint means: recompute
        return {}, f"unreadable checkpoint ({type(err).__name__})"
    if not isinstance(doc, dict) or not {"identity", "states", "digests"} <= set(doc):
        return {}, "it carries no identity (written by an older lthlib, or not a checkpoint)"
    states, digests = doc["states"], doc["digests"]
    keys = [k for k in keys if isinstance(states, dict) and k in states]
    problem = identity_problem(doc["identity"], identity, trusted, keys)
    if problem:
        return {}, problem
    for key in keys:
        state = states[key]
        if not isinstance(state, dict) or not isinstance(digests, dict) or not all(
                isinstance(v, torch.Tensor) and v.is_contiguous()
                and v.numel() * v.element_size() <= len(data) for v in state.values()):
            return {}, f"the weights of {key} are not tensors this checkpoint can hold"
        if theta0_digest(state) != digests.get(key):
            return {}, f"the weights of {key} do not match their digest"
    return {k: states[k] for k in keys}, None


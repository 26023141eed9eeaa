"""The rewind state of late rewinding, kept in the trial's stages so a resume never retrains it.

With ``rewind_iteration = k`` (Frankle et al. 2019, arXiv:1903.01611) IMP resets the surviving
weights to their values at iteration k of the dense run, θk, instead of θ0. θ0 regenerates
from the seed; θk needs k iterations of training, and on another machine float rounding could
give other bits. So θk is stored: ``stages/rewind-K<k>.state.json`` holds every tensor of the
state dict as base64 bytes with a digest over names, dtypes, shapes and bytes. Like every stage
file it travels with the trial (``runs import``) and is covered by the record's sha256 set
(ResNet-18: about 1.5 MB of text).
"""
from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthlib.util.atomic import atomic_write_text
from lthlib.pruning.mask_files import theta0_digest
from lthlib.util.errors import CorruptRecordError
from lthlib.store.file_checks import read_json
from lthlib.store.extension import foreign_reason

STATE_FORMAT = "lthlib-state-base64/1"
State = dict[str, torch.Tensor]


def state_path(trial_dir: Path, iteration: int) -> Path:
    return Path(trial_dir) / "stages" / f"rewind-K{iteration:06d}.state.json"


def pack_state(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A JSON-ready document holding every tensor of ``state`` bit for bit."""
    tensors = []
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        tensors.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."),
                        "shape": list(t.shape),
                        "data": base64.b64encode(t.numpy().tobytes()).decode("ascii")})
    return {"format": STATE_FORMAT, "digest": theta0_digest(state), "tensors": tensors}


def unpack_state(doc: Mapping[str, Any]) -> State:
    """Inverse of :func:`pack_state`; raises when the format or the digest does not match."""
    if doc.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown state format {doc.get('format')!r}; allowed: {STATE_FORMAT}")
    out: State = {}
    for item in doc["tensors"]:
        dtype = getattr(torch, item["dtype"])
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        arr = np.frombuffer(base64.b64decode(item["data"]), dtype=np_dtype).copy()
        out[item["name"]] = torch.from_numpy(arr).reshape(item["shape"])
    if theta0_digest(out) != doc.get("digest"):
        raise ValueError(f"rewind state does not match its digest {doc.get('digest')!r}")
    return out


def save_rewind_state(trial_dir: Path, iteration: int, state: Mapping[str, torch.Tensor],
                      wall_time_s: float) -> Path:
    """Write θk atomically, with the seconds its k iterations took and the trial it belongs
    to (its folder name: seed and run id)."""
    doc = {**pack_state(state), "iteration": iteration, "wall_time_s": round(wall_time_s, 2),
           "trial": Path(trial_dir).name}
    path = state_path(trial_dir, iteration)
    atomic_write_text(path, json.dumps(doc) + "\n")
    return path


def rewind_state_seconds(trial_dir: Path, iteration: int) -> float | None:
    """The seconds the stored θk took to train (None when absent or not recorded)."""
    try:
        return float(read_json(state_path(trial_dir, iteration))["wall_time_s"])
    except (OSError, CorruptRecordError, KeyError, TypeError, ValueError, OverflowError):
        return None


def load_rewind_state(trial_dir: Path, iteration: int) -> State | None:
    """θk if a readable, self-consistent copy of this trial's is stored, else None (then it
    is retrained; a stored file that is refused is named in a warning)."""
    path = state_path(trial_dir, iteration)
    try:
        doc = read_json(path)
        if not isinstance(doc, dict) or doc.get("iteration") != iteration:
            raise ValueError(f"it holds no θ of iteration {iteration}")
        problem = foreign_reason(trial_dir, doc, path)
        if problem:
            raise ValueError(problem)
        return unpack_state(doc)
    except FileNotFoundError:
        return None
    except (OSError, CorruptRecordError, ValueError, KeyError, TypeError, AttributeError,
            RuntimeError) as err:
        warnings.warn(f"discarding {path}: {err}; θk will be recomputed", stacklevel=2)
        return None

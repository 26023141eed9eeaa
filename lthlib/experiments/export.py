"""A found ticket as files: the winning initialisation, and trained weights stored sparsely.

:func:`export_ticket` writes what the hypothesis is about: θ0 (or θk with late rewinding)
with the ticket's mask applied, plus the mask, not the trained weights. :func:`load_ticket`
puts it into a fresh model of the same architecture, pruned with torch.nn.utils.prune's
masks, ready to train. :func:`export_sparse` stores any pruned weights compactly (one bit
per weight for the mask, then only the kept values); :func:`load_sparse` reads it back.
Files are written atomically and read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lthlib.util.atomic import atomic_save
from lthlib.experiments.find_ticket import TicketResult
from lthlib.pruning.mask_files import mask_digest
from lthlib.nets.paper_networks import prunable_layers
from lthlib.pruning.prune import apply_masks, get_masks, plain_state, reset_to

__all__ = ["TICKET_FORMAT", "SPARSE_FORMAT", "export_ticket", "load_ticket", "export_sparse",
           "load_sparse", "dense_bytes"]

TICKET_FORMAT = "lthlib-ticket/1"
SPARSE_FORMAT = "lthlib-sparse-packbits/1"
Masks = dict[str, Tensor]


def _load(path: str | os.PathLike, fmt: str) -> dict[str, Any]:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path} holds {found!r}; allowed: a file in format {fmt}")
    return blob


def _masked(state: dict[str, Tensor], masks: Masks) -> dict[str, Tensor]:
    out = {k: v.detach().cpu().clone() for k, v in state.items()}
    for name, mask in masks.items():
        out[f"{name}.weight"] = out[f"{name}.weight"] * mask
    return out


def export_ticket(result: TicketResult, level: int, path: str | os.PathLike, trial: int = 0,
                  weights: str | None = None) -> dict[str, Any]:
    """Write the winning ticket of ``level`` (trial index ``trial``): the masked initial
    weights and the mask. ``weights``: "theta0", or "thetak" (late rewinding's θk, the
    default when the result rewound). Returns what was written (level, Pm, sizes)."""
    if not 0 <= trial < len(result.trials):
        raise ValueError(f"trial {trial!r} is not in the result; allowed: 0 .. "
                         f"{len(result.trials) - 1}")
    tr = result.trials[trial]
    levels = [0, *sorted(tr.masks)]
    if level not in levels:
        raise ValueError(f"level {level!r} is not in the result; allowed: {levels}")
    which = weights or ("thetak" if result.rewind_iteration else "theta0")
    if which not in ("theta0", "thetak"):
        raise ValueError(f"weights {which!r} is not known; allowed: theta0, thetak")
    if which == "thetak" and tr.rewound is None:
        raise ValueError(f"θk of {tr.path} is not available (rewind_iteration "
                         f"{result.rewind_iteration}, no ckpt/); allowed: weights='theta0'")
    masks = tr.masks.get(level) or {r.name: torch.ones(r.shape) for r in result.plan}
    state = _masked(tr.theta0 if which == "theta0" else tr.rewound, masks)  # type: ignore[arg-type]
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    blob = {"format": TICKET_FORMAT, "name": result.name, "seed": tr.seed, "level": level,
            "weights": which, "rewind_iteration": result.rewind_iteration,
            "pm": kept / total, "mask_digest": mask_digest(masks), "state_dict": state,
            "masks": {k: v.to(torch.bool) for k, v in masks.items()}}
    atomic_save(Path(path), lambda tmp: torch.save(blob, tmp))
    return {"path": str(path), "level": level, "weights": which, "pm": kept / total,
            "bytes": Path(path).stat().st_size}


def load_ticket(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an exported ticket into ``model`` (same architecture): its weights become the
    masked initial weights and its layers carry the ticket's masks. Returns ``model``."""
    blob = _load(path, TICKET_FORMAT)
    masks = {k: v.to(torch.float32) for k, v in blob["masks"].items()}
    apply_masks(model, masks)
    return reset_to(model, blob["state_dict"])


def dense_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save`` of the model's plain (unpruned-layout) state dict."""
    buf = io.BytesIO()
    torch.save(plain_state(model), buf)
    return buf.getbuffer().nbytes


def export_sparse(model: nn.Module, masks: Masks | None, path: str | os.PathLike
                  ) -> dict[str, Any]:
    """Write ``model``'s weights with each masked layer as packed mask bits plus its kept
    values (float32), everything else dense. ``masks``: None = the model's own pruning
    masks. Returns the sizes on disk against the dense ``state_dict``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model is a {type(model).__name__}; allowed: a torch.nn.Module")
    layers = {name for name, _, _ in prunable_layers(model)}
    own = {name: m for name, m in get_masks(model).items()
           if hasattr(dict(model.named_modules())[name], "weight_mask")}
    chosen = own if masks is None else masks
    unknown = sorted(set(chosen) - layers)
    if unknown:
        raise ValueError(f"masks for unknown layers {unknown}; allowed: {', '.join(sorted(layers))}")
    state = plain_state(model)
    sparse: dict[str, Any] = {}
    for name, mask in sorted(chosen.items()):
        key = f"{name}.weight"
        if tuple(mask.shape) != tuple(state[key].shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}; allowed: "
                             f"{tuple(state[key].shape)}")
        keep = mask.detach().cpu().flatten().to(torch.bool)
        values = state.pop(key).detach().cpu().flatten()[keep].to(torch.float32)
        bits = np.packbits(keep.numpy())
        sparse[key] = {"shape": list(mask.shape), "bits": torch.from_numpy(bits),
                       "values": values.clone()}
    blob = {"format": SPARSE_FORMAT, "dense": state, "sparse": sparse}
    atomic_save(Path(path), lambda tmp: torch.save(blob, tmp))
    size, dense = Path(path).stat().st_size, dense_bytes(model)
    total = sum(m.weight.numel() for _, m, _ in prunable_layers(model))
    dropped = sum(int(m.numel() - m.sum()) for m in chosen.values())
    return {"path": str(path), "bytes_sparse": size, "bytes_dense": dense,
            "size_ratio": size / dense, "pm": (total - dropped) / total}


def load_sparse(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a sparse export into ``model``: masks applied, kept values in place, the rest
    of the state dense. Returns ``model``, which then predicts as the exported one."""
    blob = _load(path, SPARSE_FORMAT)
    state = dict(blob["dense"])
    masks: Masks = {}
    for key, item in blob["sparse"].items():
        shape = [int(s) for s in item["shape"]]
        n = int(np.prod(shape))
        keep = torch.from_numpy(np.unpackbits(item["bits"].numpy(), count=n).astype(bool))
        if int(keep.sum()) != item["values"].numel():
            raise ValueError(f"{path}: {key} has {item['values'].numel()} values for "
                             f"{int(keep.sum())} kept weights")
        dense = torch.zeros(n, dtype=torch.float32)
        dense[keep] = item["values"]
        state[key] = dense.view(shape)
        masks[key[: -len(".weight")]] = keep.view(shape).to(torch.float32)
    apply_masks(model, masks)
    return reset_to(model, state)

"""Pruning masks kept in the store: one bit per weight, so the analyses need no checkpoint.

A LeNet mask (266,200 weights) packs into 33,275 bytes with :func:`numpy.packbits`. The
store hashes and moves text files only (``record.json`` lists each file's sha256 of its
text; ``runs import`` copies ``stages/*.json``), so the packed bytes are written base64
encoded inside a small JSON document, ``stages/<stage>.mask.json``: about 44 KB on disk and
close to the packed size again once git compresses it. The initial weights θ0 are not
stored: they regenerate from the trial's seed (:func:`theta0_digest` is recorded so that
the regeneration can be checked), and trained weights are not stored because no analysis
here reads them.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthlib.store.records import amend_record
from lthlib.util.atomic import atomic_write_text
from lthlib.util.errors import CorruptRecordError
from lthlib.store.file_checks import json_object, read_json, read_text, sha256_text

MASK_FORMAT = "lthlib-mask-packbits/1"
MAX_MASK_WEIGHTS = 2**31  # far above VGG-19's 20M prunable weights
MASK_SUFFIX = ".mask.json"
REINIT_DIGESTS = "reinit.mask-digests.json"

Masks = dict[str, torch.Tensor]


def _bits(masks: Mapping[str, torch.Tensor]) -> tuple[list[list[Any]], np.ndarray]:
    layout, flat = [], []
    for name in sorted(masks):
        m = masks[name].detach().cpu()
        values = m.reshape(-1)
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError(f"mask {name!r} holds values other than 0 and 1; allowed: 0/1")
        layout.append([name, list(m.shape)])
        flat.append(values.to(torch.bool).numpy())
    return layout, np.concatenate(flat) if flat else np.zeros(0, dtype=bool)


def mask_digest(masks: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a mask set's layout and packed bits: equal digests, equal masks."""
    layout, bits = _bits(masks)
    h = hashlib.sha256(json.dumps(layout).encode())
    h.update(np.packbits(bits).tobytes())
    return h.hexdigest()


def pack_masks(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A JSON-ready document holding ``masks`` as packed bits (layers in sorted order)."""
    layout, bits = _bits(masks)
    packed = np.packbits(bits)
    return {"format": MASK_FORMAT, "layers": layout, "kept": int(bits.sum()),
            "total": int(bits.size), "digest": mask_digest(masks),
            "bits": base64.b64encode(packed.tobytes()).decode("ascii")}


def mask_layout(doc: Any) -> list[tuple[str, list[int]]]:
    """The ``[(layer, shape)]`` a mask document claims, checked before anything is
    allocated: names are strings, dimensions non-negative integers, and the total fits the
    bits the document holds. ValueError naming the bad value otherwise."""
    if not isinstance(doc, Mapping) or doc.get("format") != MASK_FORMAT:
        got = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
        raise ValueError(f"unknown mask format {got!r}; allowed: {MASK_FORMAT}")
    layers, bits = doc.get("layers"), doc.get("bits")
    if not isinstance(layers, list) or not isinstance(bits, str):
        raise ValueError("a mask document needs 'layers' (a list) and 'bits' (base64 text)")
    out, total = [], 0
    for item in layers:
        ok = (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], list) and len(item[1]) <= 8
              and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d
                      <= MAX_MASK_WEIGHTS for d in item[1]))
        if not ok:
            raise ValueError(f"mask layer {str(item)[:80]} is not [name, [dims]]; allowed: "
                             f"integer dims from 0 to {MAX_MASK_WEIGHTS}")
        total += int(np.prod(item[1], dtype=object))
        if total > MAX_MASK_WEIGHTS or total > len(bits) * 6:  # base64: 6 bits a character
            raise ValueError(f"mask layers claim {total} weights; the document holds at most "
                             f"{min(MAX_MASK_WEIGHTS, len(bits) * 6)}")
        out.append((item[0], list(item[1])))
    return out


def unpack_masks(doc: Mapping[str, Any]) -> Masks:
    """Inverse of :func:`pack_masks`: ``{layer: float 0/1 tensor}``; checks the layout
    (:func:`mask_layout`) before it allocates, and the digest after."""
    layout = mask_layout(doc)
    total = sum(int(np.prod(shape)) for _, shape in layout)
    packed = np.frombuffer(base64.b64decode(doc["bits"], validate=True), dtype=np.uint8)
    if packed.size * 8 < total:
        raise ValueError(f"mask bits hold {packed.size * 8} weights; its layers claim {total}")
    bits = np.unpackbits(packed, count=total)
    out: Masks = {}
    start = 0
    for name, shape in layout:
        n = int(np.prod(shape))
        out[name] = torch.from_numpy(bits[start:start + n].astype(np.float32)).reshape(shape)
        start += n
    if mask_digest(out) != doc.get("digest"):
        raise ValueError(f"mask bits do not match their digest {doc.get('digest')!r}")
    return out


def mask_path(trial_dir: Path, stage: str) -> Path:
    return Path(trial_dir) / "stages" / f"{stage}{MASK_SUFFIX}"


def save_masks(trial_dir: Path, stage: str, masks: Mapping[str, torch.Tensor]) -> Path:
    """Write one stage's masks atomically (rewriting equal content is harmless), naming the
    trial they belong to (its folder: seed and run id), which a resume checks."""
    path = mask_path(trial_dir, stage)
    doc = {**pack_masks(masks), "trial": Path(trial_dir).name}
    atomic_write_text(path, json.dumps(doc) + "\n")
    return path


def load_masks(trial_dir: Path, stage: str) -> Masks:
    """The masks a stage trained with. In a trial with a record, the file must be one the
    record hashes, and match it (a stray or edited mask is refused, naming the file)."""
    path = mask_path(trial_dir, stage)
    if not path.exists() and not path.is_symlink():
        available = sorted(p.name[: -len(MASK_SUFFIX)] for p in
                           (Path(trial_dir) / "stages").glob(f"*{MASK_SUFFIX}"))
        raise FileNotFoundError(f"no masks for stage {stage!r} in {trial_dir}; available: "
                                f"{', '.join(available) or 'none (trial predates mask storage)'}")
    try:
        text = read_text(path)
        record = Path(trial_dir) / "record.json"
        if record.exists() or record.is_symlink():
            hashes = json_object(record).get("sha256")
            if not isinstance(hashes, dict):
                raise ValueError(f"{record} is not a trial record (no sha256 map); allowed: "
                                 f"a finished trial's record.json")
            expected = hashes.get(f"stages/{path.name}")
            if expected is None:
                raise ValueError(f"{path} is not in its record's sha256 set; allowed: masks "
                                 f"the trial wrote")
            if sha256_text(text) != expected:
                raise ValueError(f"{path} does not match the sha256 in its record")
        from_json = read_json(path)
    except CorruptRecordError as err:
        raise ValueError(str(err)) from None
    return unpack_masks(from_json)


def save_reinit_digests(trial_dir: Path, digests: Mapping[int, str]) -> Path:
    """The digest of the mask each re-init level trained with (a check against the ticket's)."""
    path = Path(trial_dir) / "stages" / REINIT_DIGESTS
    atomic_write_text(path, json.dumps({str(k): v for k, v in sorted(digests.items())},
                                       indent=1) + "\n")
    return path


def theta0_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (for θ0 regeneration)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def seal(trial_dir: Path, extra: Mapping[str, Any] | None = None,
         names: list[str] | None = None) -> list[str]:
    """Add mask files of a finished trial to its record's sha256 set (and ``extra``
    fields), rewriting ``record.json`` atomically: ``names`` (``stages/<file>`` paths), by
    default every mask file present. Returns the files added."""
    trial_dir = Path(trial_dir)
    rec_path = trial_dir / "record.json"
    record = json_object(rec_path)
    if names is None:
        files = sorted([p for p in (trial_dir / "stages").glob(f"*{MASK_SUFFIX}")]
                       + [p for p in (trial_dir / "stages").glob(REINIT_DIGESTS)])
        names = [f"stages/{p.name}" for p in files if not p.is_symlink()]
    if not names and not extra:
        return []
    amend_record(trial_dir, record, hashed=names, fields=extra)
    return names

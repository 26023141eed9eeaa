"""Packed-bit mask storage: round trips, sizes, the sha256 set, θ0 regeneration."""
from __future__ import annotations

import json
import os
import re

import pytest
import torch

from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run_experiment
from lthlib.pruning.mask_files import (load_masks, mask_digest, pack_masks, save_masks, seal,
                                       theta0_digest, unpack_masks)
from lthlib.nets.paper_networks import create_network
from lthlib.store.run_store import RunStore
from lthlib.experiments.tickets import mask_trials, reinit_mask_matches, theta0, ticket_masks


def lenet_masks(seed: int = 0, density: float = 0.3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    return {k: (torch.rand(s, generator=gen) < density).float() for k, s in shapes.items()}


def test_round_trip_is_exact_and_compact():
    masks = lenet_masks()
    doc = pack_masks(masks)
    back = unpack_masks(json.loads(json.dumps(doc)))
    assert set(back) == set(masks)
    for k in masks:
        assert torch.equal(back[k], masks[k])
    assert doc["total"] == 266_200 and doc["kept"] == int(sum(m.sum() for m in masks.values()))
    # one bit per weight: 266,200 / 8 bytes, base64 adds a third
    assert len(json.dumps(doc)) < 266_200 / 8 * 4 / 3 + 1_000


def test_hand_made_mask_and_digest():
    masks = {"a": torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])}
    doc = pack_masks(masks)
    assert doc["kept"] == 3 and doc["total"] == 6
    assert torch.equal(unpack_masks(doc)["a"], masks["a"])
    other = {"a": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])}
    assert mask_digest(masks) != mask_digest(other)
    bad = dict(doc, digest="0" * 64)
    with pytest.raises(ValueError, match="digest"):
        unpack_masks(bad)
    with pytest.raises(ValueError, match="0 and 1"):
        pack_masks({"a": torch.tensor([0.5, 1.0])})


def test_load_checks_the_record(tmp_path):
    masks = lenet_masks()
    save_masks(tmp_path, "ticket-L01", masks)
    (tmp_path / "record.json").write_text(json.dumps({"status": "finished", "sha256": {}}))
    assert seal(tmp_path) == ["stages/ticket-L01.mask.json"]
    assert torch.equal(load_masks(tmp_path, "ticket-L01")["fc2"], masks["fc2"])
    path = tmp_path / "stages" / "ticket-L01.mask.json"
    doc = json.loads(path.read_text())
    doc["kept"] += 1  # tampered content, still well-formed
    path.write_text(json.dumps(doc) + "\n")
    with pytest.raises(ValueError, match="sha256"):
        load_masks(tmp_path, "ticket-L01")
    with pytest.raises(FileNotFoundError, match="available: ticket-L01"):
        load_masks(tmp_path, "ticket-L05")


def test_theta0_regenerates_bit_identically():
    a = create_network("lenet", seed=7).state_dict()
    b = create_network("lenet", seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert theta0_digest(a) == theta0_digest(b)
    assert theta0_digest(a) != theta0_digest(create_network("lenet", seed=8).state_dict())


def test_imp_trial_stores_masks_in_its_sha256_set(tmp_path):
    cfg = make_experiment("imp", "lenet", "mnist", "smoke", trials=1, rounds=2)
    res = run_experiment(cfg, tmp_path, device="cpu", progress=False)
    tr = res.trials[0]
    names = set(tr.record["sha256"])
    assert {"stages/ticket-L01.mask.json", "stages/ticket-L02.mask.json",
            "stages/reinit.mask-digests.json"} <= names
    assert reinit_mask_matches(tr) == {1: True, 2: True}
    # Pm of the stored masks is the Pm the summary reports
    s = tr.summary.set_index(["variant", "level"])["pm"]
    for level in (1, 2):
        m = ticket_masks(tr, level)
        kept = sum(float(v.sum()) for v in m.values()) / sum(v.numel() for v in m.values())
        assert kept == pytest.approx(s[("ticket", level)], abs=1e-6)
    # θ0 regenerated from the seed matches the digest recorded when it trained
    assert tr.record["theta0_sha256"] == theta0_digest(theta0(tr))
    assert [t.config.seed for t in mask_trials(profile="smoke", runs_dir=tmp_path)] == [0]
    # the masks travel with `runs import` and verify there
    from lthlib.store.transfer import import_trials
    other = tmp_path.parent / f"{tmp_path.name}-imported"
    assert len(import_trials(tmp_path, other)["imported"]) == 1
    moved = mask_trials(profile="smoke", runs_dir=other)[0]
    assert torch.equal(ticket_masks(moved, 2)["fc1"], ticket_masks(tr, 2)["fc1"])
    # a changed mask file makes the trial corrupt for the store (it would be recomputed)
    path = tr.path / "stages" / "ticket-L02.mask.json"
    path.write_text(path.read_text().replace('"kept": ', '"kept": 1'))
    with pytest.warns(UserWarning, match="sha256"):
        assert RunStore(tmp_path).load(tr.config) is None


def test_oneshot_trial_stores_ticket_masks(tmp_path):
    cfg = make_experiment("oneshot", "lenet", "mnist", "smoke", trials=1)
    tr = run_experiment(cfg, tmp_path, device="cpu", progress=False).trials[0]
    assert {"stages/oneshot-L01.mask.json", "stages/oneshot-L02.mask.json"} <= set(
        tr.record["sha256"])
    m = load_masks(tr.path, "oneshot-L02")
    kept = sum(float(v.sum()) for v in m.values()) / sum(v.numel() for v in m.values())
    pm = tr.summary[(tr.summary.variant == "ticket") & (tr.summary.level == 2)]["pm"].iloc[0]
    assert kept == pytest.approx(pm, abs=1e-6)


def test_committed_mask_trials_verify():
    """Every committed trial with masks: files match the record, θ0 regenerates, the re-init
    trained with the ticket's mask, and the masks stay within the size budget."""
    trials = mask_trials(profile="quick") + mask_trials(dataset="fashionmnist", profile="quick")
    if not trials:
        pytest.skip("no committed trials with masks")
    for tr in trials:
        assert tr.record["theta0_sha256"] == theta0_digest(theta0(tr))
        assert all(reinit_mask_matches(tr).values())
        sizes = [os.path.getsize(tr.path / n) for n in tr.record["sha256"] if "mask" in n]
        assert max(sizes) < 45_000


@pytest.mark.parametrize("layers,words", [
    ([["fc1", [-1]]], "dims from 0"),
    ([["fc1", [10**15]]], "dims from 0"),
    ([["fc1", [2**20, 2**20]]], "claim"),
    ("fc1", "'layers' (a list)"),
    ([["fc1", ["3"]]], "dims from 0"),
])
def test_mask_with_impossible_layers_is_refused_before_allocation(layers, words):
    doc = {**pack_masks(lenet_masks()), "layers": layers}
    with pytest.raises(ValueError, match=re.escape(words)):
        unpack_masks(doc)


def test_a_stray_mask_the_record_does_not_hash_is_refused(tmp_path):
    save_masks(tmp_path, "ticket-L01", lenet_masks())
    (tmp_path / "record.json").write_text(json.dumps({"status": "finished", "sha256": {}}))
    with pytest.raises(ValueError, match="not in its record's sha256 set"):
        load_masks(tmp_path, "ticket-L01")

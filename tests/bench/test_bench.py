"""The benchmark's measurements run and report what they measured (no timing is asserted),
and its reference IMP trial does the paper's procedure."""
from __future__ import annotations

import importlib
import json

import pytest
import torch

from lthlib import bench
from lthlib.data.datasets import load_tensors


@pytest.fixture(scope="module")
def data():
    return load_tensors("mnist", train_subset=2000, eval_subset=500, train_eval_size=200)


def test_single_network_against_plain_loop_and_eval_cost(data):
    cpu = torch.device("cpu")
    k1 = bench.k1_against_plain(data, cpu, threads=1, seconds=0.05, rounds=1)
    assert set(k1) == {"plain_it_s", "engine_k1_it_s", "ratio"}
    assert k1["plain_it_s"] > 0 and k1["engine_k1_it_s"] > 0
    assert k1["ratio"] == pytest.approx(k1["engine_k1_it_s"] / k1["plain_it_s"])
    for k in (1, 3):
        assert bench.eval_ms_per_member(data, cpu, k, repeats=1) > 0
    info = bench.machine()
    assert info["cores"] >= 1 and len(info["load_avg"]) == 3
    assert set(info["cpu_features"]) <= {"avx2", "fma", "avx512f", "avx512_bf16",
                                          "avx512_fp16", "amx_bf16", "amx_tile"}


def test_single_network_with_evaluation_schedule(data):
    before = torch.get_num_threads()
    rates = bench.k1_with_evaluation(data, threads=2, seconds=0.05, eval_every=5)
    assert set(rates) == {"plain_eval_it_s", "engine_k1_eval_inline_it_s",
                          "engine_k1_eval_it_s"}
    assert all(v > 0 for v in rates.values())
    assert torch.get_num_threads() == before  # the measurement restores torch's setting


def test_reference_trial_prunes_as_the_paper():
    """Smoke profile: 3 ticket levels and a re-init at levels 1 and 2, each keeping the
    ticket's mask (fc layers lose 20% of what remains per round, the output layer 10%)."""
    out = bench.reference_imp_trial("smoke", seed=1)
    nets = out["networks"]
    assert [(n["variant"], n["level"]) for n in nets] == [
        ("ticket", 0), ("ticket", 1), ("ticket", 2), ("reinit", 1), ("reinit", 2)]
    def kept(size: int, rate: float, rounds: int) -> int:
        for _ in range(rounds):  # torch prunes round(rate * what remains)
            size -= round(rate * size)
        return size

    total = 784 * 300 + 300 * 100 + 100 * 10
    for n in nets:
        lv = n["level"]
        want = kept(784 * 300, 0.2, lv) + kept(300 * 100, 0.2, lv) + kept(1000, 0.1, lv)
        assert n["pm"] == pytest.approx(want / total)
        assert n["early_stop_iteration"] in range(0, 41, 10)
        assert 0.0 < n["early_stop_test_acc"] <= 1.0
    assert out["train_s"] > 0


def test_imp_trial_against_reference_writes_its_record(tmp_path, capsys):
    out = tmp_path / "bench" / "imp.json"
    assert bench.main(["--imp-trial", "smoke", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = json.loads(out.read_text())
    assert printed == stored
    assert stored["networks"] == stored["reference_networks"] == 5
    assert stored["trial_s"] > 0 and stored["reference_s"] > 0
    assert stored["ratio"] == pytest.approx(stored["reference_s"] / stored["trial_s"], abs=0.01)
    assert stored["command"] == "python -m lthlib.bench --imp-trial smoke --json"
    assert stored["trial_cpu_s"] > 0 and stored["reference_cpu_s"] > 0
    for key in ("load_avg_at_start", "load_avg_when_lthlib_ended",
                "load_avg_when_reference_ended", "cpu", "cpu_features", "torch", "git_commit",
                "date", "threads"):
        assert key in stored


def test_register_adds_the_bench_subcommand_with_its_handler():
    """The one CLI (``python -m lthlib bench``) gets the same options as
    ``python -m lthlib.bench``; the stored command names the options in one order."""
    import argparse
    parser = argparse.ArgumentParser(prog="lthlib")
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--json", "--imp-trial", "smoke", "--out", "x.json"])
    assert args.handler is bench.handle and args.out == "x.json"
    assert bench._command(args) == "python -m lthlib.bench --imp-trial smoke --json"
    args = parser.parse_args(["bench", "--quick", "--population", "16"])
    assert bench._command(args) == "python -m lthlib.bench --quick --population 16"
    with pytest.raises(SystemExit, match="--population must be >= 1"):
        bench.handle(parser.parse_args(["bench", "--population", "0"]))


def test_engine_search_reports_the_fastest_kind_with_its_population(data):
    from lthlib.bench.lenet import best_engine
    notes: list[tuple] = []
    out = best_engine(data, torch.device("cpu"), threads=1, quick=True, population=2,
                      iterations=4, seconds=0.01, note=lambda *row: notes.append(row))
    assert [row[0] for row in notes] == ["engine: K=2, shared batches, auto split",
                                         "engine: K=2, own batches, auto split"]
    assert out["engine_it_s"] == max(out["engine_shared_batches_it_s"],
                                     out["engine_own_batches_it_s"])
    assert out["population"] == 2 and out["batches"] in ("shared", "own")


def test_sparse_inference_bench_writes_ratios(tmp_path, capsys, monkeypatch):
    """LeNet only (ResNet-18's batch of 1,000 takes minutes): each configuration in its own
    process, the CSR copy agrees with the dense one, and the record holds the ratios."""
    si = importlib.import_module("lthlib.bench.sparse_inference")
    monkeypatch.setattr(si, "QUICK_LEVELS", {"lenet": (12,)})
    out = tmp_path / "sparse-inference.json"
    assert bench.main(["--sparse-inference", "--quick", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert [(r["level"], r["mode"]) for r in printed["rows"]] == [(12, "dense"), (12, "sparse")]
    (r,) = printed["ratios"]
    assert r["pm"] == pytest.approx(0.0695, abs=1e-4)  # fc 0.8^12, output 0.9^12
    assert r["max_abs_logit_diff"] <= 1e-5
    assert r["latency_speedup"] > 0 and r["throughput_speedup"] > 0
    assert r["size_ratio"] == pytest.approx(
        r["bytes_sparse_export"] / r["bytes_dense_state_dict"], abs=1e-4)
    assert r["size_ratio"] < 0.2
    assert printed["command"] == "python -m lthlib.bench --sparse-inference --quick --json"
    for key in ("cpu", "load_avg_at_start", "load_avg_at_end", "torch", "date", "threads"):
        assert key in printed

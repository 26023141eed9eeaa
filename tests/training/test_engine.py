"""The population engine gives every member what lthlib.training.one_network.train gives it alone.

Both sides run with one intra-op thread: torch's CPU kernels round the same way only at the
same thread count, and then the engine's weights equal train()'s bit for bit (the asserts
below allow 1e-5). The engine's default on a multi-core CPU (one single-threaded part per
core) is compared too.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from lthlib.training.population import engine
from lthlib.config.paper import TrainConfig
from lthlib.data.datasets import load_tensors
from lthlib.nets.paper_networks import create_network
from lthlib.pruning.prune import get_masks, plain_state, prune_network
from lthlib.training.population.stack_eval import SPARSE_EVAL_DENSITY
from lthlib.store.history import early_stop_summary
from lthlib.training.one_network import train

ADAM = TrainConfig("adam", 1.2e-3, 60, 60, eval_every=20)
SGD = TrainConfig("sgd", 0.05, 60, 60, eval_every=20, momentum=0.9, weight_decay=1e-3,
                  milestones=(25, 45), gamma=0.3, warmup=10)


@pytest.fixture(scope="module")
def data():
    return load_tensors("mnist", train_subset=2000, eval_subset=500, train_eval_size=200)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _members(arch: str, amounts: list[float | None], seed0: int = 1):
    """Nets (pruned as asked, twice for the last to mimic IMP), plain inits and masks."""
    nets, inits, masks = [], [], []
    for i, amount in enumerate(amounts):
        net = create_network(arch, seed=seed0 + i)
        if amount is not None:
            prune_network(net, amount=amount)
            if i == len(amounts) - 1:
                prune_network(net, amount=amount)
        nets.append(net)
        inits.append(plain_state(net))
        masks.append(get_masks(net) if amount is not None else None)
    return nets, inits, masks


def _check(nets, inits, masks, seeds, data, cfg, arch, weight_tol=1e-5, **kwargs):
    results = engine.train_population(arch, inits, masks, data, cfg, seeds, device="cpu",
                                      **kwargs)
    assert len(results) == len(nets)
    for net, mask, seed, res in zip(nets, masks, seeds, results):
        ref = train(copy.deepcopy(net), data, cfg, batch_seed=seed, device="cpu")
        want = plain_state(ref.net)
        assert set(res.final_state) == set(want)
        diff = max((res.final_state[k] - want[k]).abs().max().item() for k in want)
        assert diff < weight_tol, f"final weights differ by {diff}"
        assert list(res.history.columns) == list(ref.history.columns)
        assert res.history["iteration"].tolist() == ref.history["iteration"].tolist()
        np.testing.assert_allclose(res.history.to_numpy(), ref.history.to_numpy(),
                                   rtol=1e-5, atol=1e-6)
        assert (early_stop_summary(res.history)["early_stop_iteration"]
                == ref.early_stop["early_stop_iteration"])
        for name, m in (mask or {}).items():
            w = res.final_state[f"{name}.weight"]
            assert (w[m == 0] == 0).all(), f"pruned weights of {name} moved"
            assert w.device.type == "cpu"
    return results


@pytest.mark.parametrize("cfg", [ADAM, SGD], ids=["adam", "sgd-momentum-wd-milestones-warmup"])
def test_shared_batches_match_train(data, cfg):
    nets, inits, masks = _members("lenet", [None, 0.5, 0.2])
    _check(nets, inits, masks, [5, 5, 5], data, cfg, "lenet", threads=1)


def test_mixed_seeds_and_parts_match_train(data):
    """Per-member batches (bmm path) and a population split across two worker threads."""
    nets, inits, masks = _members("lenet", [None, 0.5, 0.2, 0.5])
    seeds = [3, 4, 3, 9]
    _check(nets, inits, masks, seeds, data, ADAM, "lenet", threads=1)
    _check(nets, inits, masks, seeds, data, ADAM, "lenet", threads=2, parts=2)


def test_mlp_matches_train(data):
    cfg = TrainConfig("adam", 1e-3, 64, 50, eval_every=25)
    nets, inits, masks = _members("mlp", [None, 0.4, 0.3])
    _check(nets, inits, masks, [1, 2, 1], data, cfg, "mlp", threads=1, progress="mlp")


def test_pruned_state_dicts_carry_their_masks(data):
    """inits given as torch-pruned state dicts (weight_orig/weight_mask) need no masks."""
    nets, inits, masks = _members("lenet", [0.5])
    cfg = TrainConfig("adam", 1.2e-3, 60, 10, eval_every=5)
    a = engine.train_population("lenet", [nets[0].state_dict()], [None], data, cfg, [0])
    b = engine.train_population("lenet", inits, masks, data, cfg, [0])
    for k, v in b[0].final_state.items():
        assert torch.equal(a[0].final_state[k], v)
    pd.testing.assert_frame_equal(a[0].history, b[0].history)


def test_very_sparse_members_match_train(data):
    """IMP's late levels (5% of fc1 left): training and evaluation switch to sparse
    matmuls (lthlib.training.population.sparse_train)."""
    cfg = TrainConfig("adam", 1.2e-3, 60, 20, eval_every=10)
    nets = []
    for seed in (1, 2):
        net = create_network("lenet", seed=seed)
        for _ in range(13):
            prune_network(net, amount=0.2)
        nets.append(net)
    masks = [get_masks(n) for n in nets]
    assert max(float(m["fc1"].mean()) for m in masks) < SPARSE_EVAL_DENSITY
    _check(nets, [plain_state(n) for n in nets], masks, [0, 0], data, cfg, "lenet",
           threads=1)


def test_bad_inputs_name_allowed_values(data):
    _, inits, masks = _members("lenet", [None])
    assert engine.supports("LeNet") and engine.supports("mlp")
    assert not engine.supports("conv2")
    with pytest.raises(ValueError, match="lenet, mlp"):
        engine.train_population("conv2", inits, masks, data, ADAM, [0])
    with pytest.raises(ValueError, match="one entry per member"):
        engine.train_population("lenet", inits, masks, data, ADAM, [0, 1])
    bad = {"fc1": torch.ones(3, 3)}
    with pytest.raises(ValueError, match="shape"):
        engine.train_population("lenet", inits, [bad], data, ADAM, [0])
    assert engine.train_population("lenet", [], [], data, ADAM, []) == []


def test_default_device(monkeypatch):
    from lthlib.util.device import default_device
    assert engine.default_device is default_device  # one definition, re-used
    monkeypatch.setenv("LTH_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.delenv("LTH_DEVICE")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_train(data):
    """On a GPU, kernels may round differently between bmm and mm: a looser bound."""
    nets, inits, masks = _members("lenet", [None, 0.5, 0.2])
    seeds = [5, 5, 7]
    results = engine.train_population("lenet", inits, masks, data, ADAM, seeds, device="cuda")
    for net, mask, seed, res in zip(nets, masks, seeds, results):
        ref = train(copy.deepcopy(net), data, ADAM, batch_seed=seed, device="cuda")
        want = {k: v.cpu() for k, v in plain_state(ref.net).items()}
        diff = max((res.final_state[k] - want[k]).abs().max().item() for k in want)
        assert diff < 1e-3, f"final weights differ by {diff}"
        np.testing.assert_allclose(res.history.to_numpy(), ref.history.to_numpy(),
                                   rtol=1e-3, atol=1e-3)
        for name, m in (mask or {}).items():
            assert (res.final_state[f"{name}.weight"][m == 0] == 0).all()


def _imp_pruned(arch: str, rounds: int, seeds=(1, 2)):
    nets = []
    for seed in seeds:
        net = create_network(arch, seed=seed)
        for _ in range(rounds):
            prune_network(net, amount=0.2)
        nets.append(net)
    return nets, [plain_state(n) for n in nets], [get_masks(n) for n in nets]


@pytest.mark.parametrize("cfg", [ADAM, SGD], ids=["adam", "sgd-momentum-wd-milestones-warmup"])
def test_sparse_path_matches_train_beside_dense_members(data, cfg, monkeypatch):
    """Members at or below the sparse threshold train on the CSR path, the others on the
    dense stack, in one call with own seeds and two parts: all agree with train()."""
    sparse_nets, sparse_inits, sparse_masks = _imp_pruned("lenet", 9)  # fc1 at 13% (< 15%)
    nets, inits, masks = _members("lenet", [None, 0.5])
    built = []
    real = engine._sparse_stack
    monkeypatch.setattr(engine, "_sparse_stack",
                        lambda *a, **k: built.append(len(a[1])) or real(*a, **k))
    # the CSR path sums in another order: weights agree to ~1e-5 after 60 steps (the dense
    # members exactly), losses and accuracies to the history tolerance
    _check(nets + sparse_nets, inits + sparse_inits, masks + sparse_masks, [3, 4, 3, 4], data,
           cfg, "lenet", weight_tol=1e-4, threads=2, parts=2)
    assert sorted(built) == [1, 1]  # the two sparse members, one per part


def test_sparse_path_mlp_and_switch_off(data, monkeypatch):
    nets, inits, masks = _imp_pruned("mlp", 10)
    cfg = TrainConfig("adam", 1.2e-3, 60, 30, eval_every=10)
    _check(nets, inits, masks, [0, 1], data, cfg, "mlp", weight_tol=1e-4, threads=1)
    monkeypatch.setattr(engine, "_sparse_stack", lambda *a, **k: pytest.fail("sparse used"))
    _check(nets, inits, masks, [0, 1], data, cfg, "mlp", threads=1, sparse_below=0)
    with pytest.raises(ValueError, match=r"density in \[0, 1\]"):
        engine.train_population("mlp", inits, masks, data, cfg, [0, 1], sparse_below=1.5)
    monkeypatch.setenv("LTH_SPARSE_BELOW", "0")  # the documented switch, e.g. for the bench
    assert engine.sparse_threshold("cpu") == 0.0
    _check(nets, inits, masks, [0, 1], data, cfg, "mlp", threads=1)
    monkeypatch.setenv("LTH_SPARSE_BELOW", "off")
    with pytest.raises(ValueError, match="LTH_SPARSE_BELOW='off' is not a number"):
        engine.sparse_threshold("cpu")


def test_sparse_layer_roundtrip_keeps_its_pattern():
    from lthlib.training.population.sparse_train import _SparseLayer
    w = torch.randn(7, 5)
    mask = (torch.rand(7, 5) < 0.4).float()
    mask[0, 0] = 1.0
    w[0, 0] = 0.0  # a remaining weight that happens to be 0 stays in the pattern
    layer = _SparseLayer(w * mask, mask)
    assert layer.values.numel() == int(mask.sum())
    assert torch.equal(layer.to_dense(), w * mask)
    assert torch.equal(layer.transposed().to_dense(), (w * mask).t())
    layer.values.mul_(2)  # the optimizer's in-place update reaches both matrices
    assert torch.equal(layer.to_dense(), 2 * w * mask)
    assert torch.equal(layer.transposed().to_dense(), 2 * (w * mask).t())


def test_bench_sparse_modes_report_measured_ratios(data):
    """The benchmark modes run and report what they measured (no timing is asserted)."""
    from lthlib import bench
    lines: list[str] = []
    sweep = bench.sparse_sweep(data, seconds=0.05, levels=range(9, 10), echo=lines.append)
    [row] = sweep["levels"]
    assert row["fc1_density"] == pytest.approx(0.8 ** 9, abs=2e-3)
    assert row["dense_it_s"] > 0 and row["sparse_it_s"] > 0 and sweep["sweep_ratio"] > 0
    assert "sparse/dense" in lines[0]
    pair = bench.imp_trial_pair("smoke", echo=lines.append)
    assert pair["networks"] == 5 and pair["dense_wall_s"] > 0 and pair["sparse_wall_s"] > 0
    assert pair["max_abs_diff_final_test_acc_pp"] == 0.0  # smoke: no level is that sparse


def test_single_network_is_bit_identical_to_train(data):
    """K = 1 (what trials=1 gives): the engine's weights are train()'s, bit for bit."""
    nets, inits, masks = _members("lenet", [None, 0.5])
    for net, init, mask in zip(nets, inits, masks):
        [res] = engine.train_population("lenet", [init], [mask], data, ADAM, [7], threads=1)
        ref = train(copy.deepcopy(net), data, ADAM, batch_seed=7, device="cpu")
        want = plain_state(ref.net)
        for key, value in want.items():
            assert torch.equal(res.final_state[key], value), key


@pytest.mark.parametrize("rounds", [0, 13], ids=["dense-path", "sparse-path"])
def test_evaluation_beside_training_gives_the_same_numbers(data, rounds):
    """Evaluation on a helper thread (a spare core) reports exactly what inline evaluation
    reports: every history value, the early-stop summary and the final weights."""
    nets, inits, masks = _imp_pruned("lenet", rounds, seeds=(4,))
    mask = masks[0] or None
    cfg = TrainConfig("adam", 1.2e-3, 60, 60, eval_every=10)
    inline = engine.train_population("lenet", inits, [mask], data, cfg, [2], threads=1,
                                     overlap_eval=False)[0]
    beside = engine.train_population("lenet", inits, [mask], data, cfg, [2], threads=1,
                                     overlap_eval=True)[0]
    auto = engine.train_population("lenet", inits, [mask], data, cfg, [2], threads=2)[0]
    for other in (beside, auto):
        pd.testing.assert_frame_equal(inline.history, other.history, check_exact=True)
        assert early_stop_summary(inline.history) == early_stop_summary(other.history)
        for key, value in inline.final_state.items():
            assert torch.equal(other.final_state[key], value), key


def test_eval_worker_reports_errors_and_checks_its_bound():
    from lthlib.training.population.eval_worker import EvalWorker

    def broken(snapshot):
        raise RuntimeError(f"cannot evaluate {snapshot}")

    worker = EvalWorker(broken, pending=1)
    worker.submit(0, "snapshot-0")
    with pytest.raises(RuntimeError, match="cannot evaluate snapshot-0"):
        for it in range(1, 50):  # submit re-raises once the worker has failed
            worker.submit(it, f"snapshot-{it}")
        worker.results()
    with pytest.raises(ValueError, match="pending must be >= 1"):
        EvalWorker(lambda s: [], pending=0)
    ok = EvalWorker(lambda s: [{"v": float(s)}])
    for it in (0, 10, 20):
        ok.submit(it, it)
    assert ok.results() == {0: [{"v": 0.0}], 10: [{"v": 10.0}], 20: [{"v": 20.0}]}


def test_stored_results_do_not_depend_on_threads_or_overlap(tmp_path):
    """A smoke IMP trial at 1 thread (everything inline, one stack) and at 2 threads
    (tickets evaluated beside training, re-inits in two parts): byte-identical
    metrics.csv and summary.csv."""
    import lthlib as lth
    texts = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        res = lth.run("imp", "lenet", "mnist", profile="smoke", seed=3,
                      runs_dir=tmp_path / f"t{threads}", progress=False, device="cpu")
        [trial] = res.trials
        texts.append({name: (trial.path / name).read_bytes()
                      for name in ("metrics.csv", "summary.csv")})
    assert texts[0] == texts[1]


def test_threaded_parts_wait_for_queued_steps_and_report_a_failed_one():
    """Steps on helper threads are not waited for; evaluation and final states are, and a
    step that failed on a helper thread is raised there, in the caller's thread."""
    from lthlib.training.population.thread_parts import ThreadedParts

    class Part:
        """Counts its updates; its optimizer fails at update ``fail_at``."""

        def __init__(self, k, fail_at=None):
            self.k, self.n, self.fail_at, self.updates = k, 0, fail_at, []
            self.opt = self

        def gradients(self, x, y):
            self.batch = x

        def step(self, lr):  # the optimizer's step
            self.n += 1
            self.updates.append((self.batch, lr))
            if self.n == self.fail_at:
                raise RuntimeError(f"step {self.n} failed")

        def evaluate(self, data):
            return [float(self.n)] * self.k, [0.5] * self.k

        def final_states(self):
            return [{"steps": torch.tensor(self.n)}] * self.k

    def step_all(parts, it):
        """What the engine's loop does: queue parts 1.., then step part 0 here."""
        lr = 0.1 / (it + 1)
        parts.queue_steps([f"x0-{it}", f"x1-{it}"], [None, None], lr)
        parts.parts[0].gradients(f"x0-{it}", None)
        parts.parts[0].opt.step(lr)

    parts = ThreadedParts([Part(1), Part(2)], ahead=2)
    for it in range(9):
        step_all(parts, it)
    assert parts.k == 3 and parts.evaluate(None) == ([9.0] * 3, [0.5] * 3)
    assert [int(s["steps"]) for s in parts.final_states()] == [9, 9, 9]
    for j, part in enumerate(parts.parts):  # each part got its own batch and the lr, in order
        assert part.updates == [(f"x{j}-{it}", 0.1 / (it + 1)) for it in range(9)]
    parts.close()
    bad = ThreadedParts([Part(1), Part(1, fail_at=3)])
    for it in range(5):
        step_all(bad, it)
    with pytest.raises(RuntimeError, match="step 3 failed"):
        bad.final_states()
    bad.close()
    with pytest.raises(ValueError, match="ahead must be >= 1"):
        ThreadedParts([Part(1)], ahead=0)


def test_population_in_stacks_gives_each_member_its_own_numbers(data):
    """Six members with pruned and dense ones and two batch seeds, in one stack (one thread)
    or in two parts (two threads): every member's weights and history are bit for bit those
    it gets when trained alone."""
    cfg = TrainConfig("adam", 1.2e-3, 60, 30, eval_every=10)
    _, inits, masks = _members("lenet", [None, 0.5, None, 0.2, 0.5, None])
    seeds = [1, 1, 2, 1, 2, 1]
    alone = [engine.train_population("lenet", [i], [m], data, cfg, [s], threads=1)[0]
             for i, m, s in zip(inits, masks, seeds)]
    for threads in (1, 2):
        together = engine.train_population("lenet", inits, masks, data, cfg, seeds,
                                           threads=threads)
        for a, b in zip(alone, together):
            pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
            for key, value in a.final_state.items():
                assert torch.equal(b.final_state[key], value), key

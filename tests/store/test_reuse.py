"""Extending a finished trial (more IMP rounds, more controls) gives the numbers a fresh run
gives, trains only the missing networks, and says so in the record."""
from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from lthlib.experiments import procedures as experiments
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run_experiment
from lthlib.store.extension import extends


def smoke(experiment: str, **kw):
    return make_experiment(experiment, "lenet", "mnist", "smoke", **kw)


def keys(res) -> set[str]:
    s = res.trials[0].summary
    return set(s.variant + "-L" + s.level.astype(str) + "-r" + s.replicate.astype(str))


@pytest.fixture
def count_trained(monkeypatch):
    trained: list[str] = []
    real = experiments.train_members

    def spy(members, *a, **k):
        trained.extend(f"{m.variant}-L{m.level}-r{m.replicate}" for m in members)
        return real(members, *a, **k)

    monkeypatch.setattr(experiments, "train_members", spy)
    return trained


@pytest.mark.parametrize("with_checkpoints", [True, False])
def test_more_rounds_and_reinits_extend_an_imp_trial(tmp_path, count_trained,
                                                     with_checkpoints):
    short = smoke("imp", rounds=1)
    long_ = smoke("imp", rounds=3, reinits=2)
    src = run_experiment(short, tmp_path / "a", device="cpu", progress=False).trials[0]
    if not with_checkpoints:  # a fresh clone: checkpoints are not in git
        shutil.rmtree(src.path / "ckpt")
    count_trained.clear()
    ext = run_experiment(long_, tmp_path / "a", device="cpu", progress=False).trials[0]
    # without ckpt/ the stored mask of level 1 stands in for level 0's final weights; only
    # the source's last level retrains (its final weights give the first new mask)
    reused = {"ticket-L0-r0", "reinit-L1-r0"} | ({"ticket-L1-r0"} if with_checkpoints else set())
    assert len(count_trained) == len(ext.summary) - len(reused)
    assert not reused & set(count_trained)
    fresh = run_experiment(long_, tmp_path / "b", device="cpu", progress=False).trials[0]
    assert ext.path.name == fresh.path.name != src.path.name  # its own identity
    assert (ext.path / "metrics.csv").read_bytes() == (fresh.path / "metrics.csv").read_bytes()
    note = ext.record["reused_from"]
    assert note["run_id"] == src.config.run_id() and note["rounds"] == 1
    assert note["checkpoints"] == (["ticket-L00", "ticket-L01"] if with_checkpoints else [])
    # the record's wall time counts the reused networks' stored training time
    assert ext.record["wall_time_complete"] is True
    assert ext.record["wall_time_s"] > ext.record["process_wall_time_s"]
    assert "reused_from" not in fresh.record


def test_a_late_rewinding_extension_on_a_fresh_clone_reuses_masks_and_theta_k(
        tmp_path, count_trained):
    short = smoke("imp", rounds=1, rewind_iteration=10)
    src = run_experiment(short, tmp_path / "a", device="cpu", progress=False).trials[0]
    shutil.rmtree(src.path / "ckpt")
    count_trained.clear()
    long_ = smoke("imp", rounds=2, rewind_iteration=10)
    ext = run_experiment(long_, tmp_path / "a", device="cpu", progress=False).trials[0]
    # neither θk (10 iterations of the dense run) nor level 0 is trained again
    assert sorted(count_trained) == ["reinit-L2-r0", "ticket-L1-r0", "ticket-L2-r0"]
    fresh = run_experiment(long_, tmp_path / "b", device="cpu", progress=False).trials[0]
    assert (ext.path / "metrics.csv").read_bytes() == (fresh.path / "metrics.csv").read_bytes()


def test_more_reinits_extend_a_oneshot_trial(tmp_path, count_trained):
    one = run_experiment(smoke("oneshot", reinits=1), tmp_path, device="cpu", progress=False)
    count_trained.clear()
    two = run_experiment(smoke("oneshot", reinits=2), tmp_path, device="cpu", progress=False)
    assert sorted(count_trained) == sorted(keys(two) - keys(one))
    assert all(k.endswith("-r1") for k in count_trained)


def test_no_reuse_trains_everything(tmp_path, count_trained):
    run_experiment(smoke("imp", rounds=1), tmp_path, device="cpu", progress=False)
    count_trained.clear()
    res = run_experiment(smoke("imp", rounds=2), tmp_path, device="cpu", progress=False,
                         reuse=False)
    assert len(count_trained) == len(res.trials[0].summary)
    assert "reused_from" not in res.trials[0].record


def test_only_pure_extensions_count():
    base = smoke("imp", rounds=2)
    assert extends(base, replace(base, prune=replace(base.prune, rounds=4)))
    assert extends(base, replace(base, reinits=3))
    assert not extends(base, base)
    assert not extends(base, replace(base, prune=replace(base.prune, rounds=1)))
    assert not extends(base, replace(base, train=replace(base.train, lr=1e-3)))
    assert not extends(base, replace(base, seed=1))
    assert not extends(replace(base, reinits=2), replace(base, reinits=1, prune=replace(
        base.prune, rounds=4)))


def test_book_reads_replicated_controls_beside_the_default_run(tmp_path):
    """The chapters' extension table reads the 3-re-init trial, never the default one, and its
    "re-init 1" column is exactly what the one-re-init run measured."""
    from lthlib import report as book

    store = tmp_path / "runs"
    one = run_experiment(smoke("imp", rounds=2), store, device="cpu", progress=False).trials[0]
    assert book.replicated_controls("mnist", "smoke", runs_dir=store).empty
    three = run_experiment(smoke("imp", rounds=2, reinits=3), store, device="cpu",
                           progress=False).trials[0]
    rows = book.replicated_controls("mnist", "smoke", runs_dir=store)
    assert set(rows.reinits) == {3} and set(rows.seed) == {0}
    assert len(rows) == len(three.summary) == 1 + 2 + 2 * 3  # dense, 2 tickets, 6 re-inits
    table = book.replicate_table(rows)
    assert list(table.trials) == [1, 1] and list(table["re-inits"]) == [3, 3]
    re1 = one.summary[one.summary.variant == "reinit"].sort_values("pm", ascending=False)
    assert list(table["test acc. (re-init 1)"]) == [book.pct(x, 2)
                                                    for x in re1.early_stop_test_acc]
    re3 = three.summary[three.summary.variant == "reinit"]
    lvl = re3.groupby("level").early_stop_test_acc
    spread = (lvl.max() - lvl.min()).sort_index()
    assert list(table["re-init spread (pp)"]) == [f"{100 * x:.2f}" for x in spread]
    shift = book.replicate_shift(rows)
    d = 100 * (re3[re3.replicate == 0].set_index("level").early_stop_test_acc
               - lvl.mean()).abs()
    assert shift["levels"] == 2 and shift["max_acc_pp"] == pytest.approx(d.max())
    assert shift["mean_acc_pp"] == pytest.approx(d.mean())

"""The ticket analyses on hand-made masks and toys whose answers are known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lthlib.studies import lmc
from lthlib.experiments import tickets
from lthlib.report.claims import stability_claims as lmc_claims


# --- masks: connectivity, survivors, overlap -------------------------------------------------

def test_input_connectivity_counts_outgoing_connections():
    m = torch.zeros(3, 16)
    m[:, 5] = 1  # pixel (1, 1) keeps all three connections
    m[0, 15] = 1  # pixel (3, 3) keeps one
    pic = tickets.input_connectivity(m, (4, 4))
    assert pic.shape == (4, 4)
    assert pic[1, 1] == 3 and pic[3, 3] == 1 and pic.sum() == 4
    with pytest.raises(ValueError, match="does not fit"):
        tickets.input_connectivity(torch.ones(3, 15), (4, 4))
    border, centre = tickets.border_and_centre(np.pad(np.ones((4, 4)), 2), border=2)
    assert border == 0 and centre == 1


def test_jaccard_on_hand_made_masks():
    a = {"w": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    b = {"w": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    assert tickets.jaccard(a, a) == 1.0
    assert tickets.jaccard(a, b) == pytest.approx(1 / 3)
    assert tickets.jaccard(a, {"w": torch.tensor([0.0, 0.0, 1.0, 1.0])}) == 0.0
    with pytest.raises(ValueError, match="not in both"):
        tickets.jaccard(a, {"v": torch.ones(4)})
    assert tickets.pairwise_jaccard([a, a, b]) == pytest.approx([1.0, 1 / 3, 1 / 3])


@pytest.mark.parametrize("d", [0.05, 0.2, 0.5, 0.8])
def test_random_masks_overlap_by_chance(d):
    """Independent random masks of density d overlap by d / (2 - d) on average."""
    shape = {"fc1": (300, 784)}
    base = {"fc1": (torch.rand(shape["fc1"], generator=torch.Generator().manual_seed(0)) < d)
            .float()}
    draws = [tickets.random_masks_like(base, seed) for seed in range(4)]
    assert all(int(m["fc1"].sum()) == int(base["fc1"].sum()) for m in draws)
    measured = np.mean(tickets.pairwise_jaccard(draws))
    assert measured == pytest.approx(tickets.chance_jaccard(tickets.density(base)), rel=0.02)
    assert tickets.chance_jaccard(1.0) == 1.0 and tickets.chance_jaccard(0.0) == 0.0
    # one layer: the pooled formula is d / (2 - d); two layers of different density pool
    assert tickets.chance_jaccard_layers([d], [100]) == pytest.approx(tickets.chance_jaccard(d))
    pooled = tickets.chance_jaccard_layers([0.1, 0.9], [100, 100])
    assert pooled == pytest.approx((100 * 0.01 + 100 * 0.81) / (100 * 0.19 + 100 * 0.99))
    assert pooled > tickets.chance_jaccard(0.5)  # the pooled density alone understates it


def test_survivor_values_and_small_share():
    init = {"l.weight": torch.tensor([[-0.01, 0.5, 0.02, -0.7]])}
    masks = {"l": torch.tensor([[0.0, 1.0, 0.0, 1.0]])}  # magnitude pruning keeps the large
    all_w, kept = tickets.survivor_values(init, masks, "l")
    assert len(all_w) == 4 and sorted(kept.tolist()) == pytest.approx([-0.7, 0.5])
    assert tickets.small_share(all_w, all_w, 0.5) == 0.5
    assert tickets.small_share(kept, all_w, 0.5) == 0.0
    with pytest.raises(ValueError, match="unknown layer"):
        tickets.survivor_values(init, masks, "x")


def test_map_correlation():
    p = np.arange(16.0).reshape(4, 4)
    assert tickets.map_correlation([p, 2 * p + 1, -p]) == pytest.approx([1.0, -1.0, -1.0])


# --- linear mode connectivity on a two-layer toy ---------------------------------------------

def toy_net() -> nn.Module:
    return nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))


def toy_data():
    x = torch.cat([torch.linspace(1, 2, 50), -torch.linspace(1, 2, 50)]).unsqueeze(1)
    y = (x[:, 0] > 0).long()
    return x, y


def toy_state(sign: float) -> dict[str, torch.Tensor]:
    """Hidden units detect x > 0 and x < 0; ``sign`` -1 swaps them (the same function)."""
    return {"0.weight": sign * torch.tensor([[1.0], [-1.0]]), "0.bias": torch.zeros(2),
            "2.weight": sign * torch.tensor([[0.0, 0.0], [1.0, -1.0]]),
            "2.bias": torch.tensor([0.1, 0.0])}


def test_identical_networks_have_zero_instability():
    x, y = toy_data()
    s = toy_state(1.0)
    path = lmc.path_errors(toy_net(), s, s, x, y, points=30)
    assert len(path) == 30 and path["alpha"].iloc[[0, -1]].tolist() == [0.0, 1.0]
    assert (path["test_error"] == 0).all()
    assert lmc.instability(path["test_error"]) == 0.0


def test_permuted_networks_are_unstable():
    """Two networks with swapped hidden units classify perfectly, but their midpoint has
    zero weights and predicts class 0 everywhere: error 0.5, instability 0.5."""
    x, y = toy_data()
    path = lmc.path_errors(toy_net(), toy_state(1.0), toy_state(-1.0), x, y, points=30)
    e = path["test_error"].to_numpy()
    assert e[0] == 0 and e[-1] == 0
    assert lmc.instability(e) == pytest.approx(0.5)


def test_masks_apply_along_the_path():
    x, y = toy_data()
    s = toy_state(1.0)
    # cutting the x < 0 detector's output keeps the classifier correct (bias 0.1 > 0 decides)
    masks = {"2": torch.tensor([[1.0, 1.0], [1.0, 0.0]])}
    assert lmc.path_errors(toy_net(), s, s, x, y, masks, points=3)["test_error"].max() == 0
    # cutting the x > 0 detector breaks it for every positive example
    masks = {"2": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}
    assert lmc.path_errors(toy_net(), s, s, x, y, masks, points=3)["test_error"].max() == 0.5
    with pytest.raises(ValueError, match="no weight"):
        lmc.masked(s, {"9": torch.ones(1)})


def test_instability_definition():
    assert lmc.instability([0.1, 0.3, 0.2]) == pytest.approx(0.3 - 0.15)
    assert lmc.instability([0.2, 0.1, 0.2]) == 0.0  # a dip below the endpoints is not negative
    with pytest.raises(ValueError, match="two endpoints"):
        lmc.instability([0.1])
    a = {"w": torch.zeros(2)}
    b = {"w": torch.ones(2)}
    assert torch.equal(lmc.interpolate(a, b, 0.25)["w"], torch.full((2,), 0.25))


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """Two smoke IMP trials (seeds 3 and 4) with stored masks."""
    root = tmp_path_factory.mktemp("runs")
    trs = tickets.ensure_mask_trials("mnist", "smoke", 2, 3, runs_dir=root)
    return root, trs


def test_tables_on_stored_trials(smoke_store):
    root, trs = smoke_store
    assert [t.config.seed for t in trs] == [3, 4]
    again = tickets.ensure_mask_trials("mnist", "smoke", 2, 3, runs_dir=root, compute=False)
    assert [t.path for t in again] == [t.path for t in trs]  # read back, nothing trained
    pm = tickets.level_pm(trs[0])
    assert tickets.nearest_levels(pm, (1.0, 0.8, 0.79, 0.6)) == [0, 1, 2]
    conn = tickets.connectivity_table(trs, [1, 2])
    # per-layer densities are exact: fc1 keeps 0.8^level of its weights, ticket and random
    for row in conn.itertuples():
        pic_mean = (row.ticket_border * (28 * 28 - 20 * 20) + row.ticket_centre * 20 * 20) / 784
        assert pic_mean == pytest.approx(0.8 ** row.level, abs=1e-6)
    over = tickets.overlap_table(trs, [2])
    assert set(over.layer) == {"fc1", "fc2", "fc3", "all"} and (over.pairs == 1).all()
    assert over.set_index("layer").loc["fc1", "chance"] == pytest.approx(0.64 / 1.36)
    surv = tickets.survivor_table(trs, [2])
    assert (surv.small_share < 0.25).all() and (surv.magnitude_ratio > 1).all()


def test_figures_draw(smoke_store):
    import matplotlib
    matplotlib.use("Agg")
    from lthlib.report import ticket_plots
    _, trs = smoke_store
    for fig in (ticket_plots.connectivity_figure(trs, [1, 2]),
                ticket_plots.survivor_histograms(trs[0], [1, 2]),
                ticket_plots.overlap_figure(tickets.overlap_table(trs, [1, 2]))):
        assert fig.axes
        matplotlib.pyplot.close(fig)


def test_run_lmc_stores_and_reads_back(smoke_store):
    """A smoke-sized measurement on a stored IMP trial: the record names its source and
    hashes its files, a second call reads it back, a changed file is refused."""
    tmp_path, trs = smoke_store
    tr = trs[0]
    out = lmc.run_lmc(tr, [0, 2], points=5, runs_dir=tmp_path)
    paths, summary, records = lmc.lmc_results(profile="smoke", runs_dir=tmp_path)
    assert len(records) == 1 and records[0]["source_run_id"] == tr.record["run_id"]
    assert set(records[0]["sha256"]) == set(lmc.LMC_FILES)
    assert sorted(zip(summary.variant, summary.level)) == [("reinit", 2), ("ticket", 0),
                                                           ("ticket", 2)]
    assert len(paths) == 3 * 5 and (summary.instability >= 0).all()
    assert lmc.run_lmc(tr, [0, 2], points=5, runs_dir=tmp_path) == out  # read back, not rerun
    import matplotlib
    matplotlib.use("Agg")
    from lthlib.report import ticket_plots
    assert ticket_plots.instability_figure(summary, paths).axes
    _, again, _ = lmc.ensure_lmc(trs[:1], [0, 2], 5, tmp_path, compute=False)
    assert again.drop(columns="seed").equals(summary.drop(columns="seed"))
    good = (out / "summary.csv").read_text()
    (out / "summary.csv").write_text("tampered\n")
    with pytest.raises(ValueError, match="sha256"):
        lmc.lmc_results(profile="smoke", runs_dir=tmp_path)
    (out / "summary.csv").write_text(good)  # the store is shared by the module's tests
    assert isinstance(paths, pd.DataFrame)


def test_same_data_order_gives_zero_instability():
    """Two copies trained by the engine with the same minibatch order end identical."""
    from lthlib.training.population import engine
    from lthlib.config.experiment import make_experiment
    from lthlib.data.datasets import load_tensors_for
    from lthlib.nets.paper_networks import create_network
    cfg = make_experiment("imp", "lenet", "mnist", "smoke")
    data = load_tensors_for(cfg.data)
    init = create_network("lenet", seed=3).state_dict()
    a, b = engine.train_population("lenet", [init, init], [None, None], data, cfg.train,
                                   [5, 5], device="cpu", threads=1)
    net = create_network("lenet", seed=0)
    path = lmc.path_errors(net, a.final_state, b.final_state, data.test_x, data.test_y,
                           points=4)
    assert lmc.instability(path["test_error"]) == 0.0


def _lmc_summary(seeds, dense_inst, ticket_inst, ticket_err):
    rows = []
    for sd in seeds:
        rows.append({"variant": "ticket", "level": 0, "pm": 1.0, "error_a": 0.02,
                     "error_b": 0.02, "instability": dense_inst, "seed": sd})
        for lv, (inst, err) in enumerate(zip(ticket_inst, ticket_err), start=1):
            rows.append({"variant": "ticket", "level": lv, "pm": 0.8 ** lv, "error_a": err,
                         "error_b": err, "instability": inst, "seed": sd})
            rows.append({"variant": "reinit", "level": lv, "pm": 0.8 ** lv, "error_a": 0.05,
                         "error_b": 0.05, "instability": 0.03, "seed": sd})
    return pd.DataFrame(rows)


def test_lmc_claims_judge_known_summaries():
    from lthlib.report.claims.judge import assess
    from lthlib.report.claims.evidence import Evidence, need_key
    stable_at_init, matching_stable = lmc_claims.lmc_claims()
    # the last ticket no longer matches (error 3 pp above dense): its instability is ignored
    s = _lmc_summary([3, 4, 5], 0.001, [0.002, 0.001, 0.04], [0.018, 0.021, 0.05])
    ev = Evidence({need_key(lmc_claims.LMC_NEED): s}, dataset="mnist")
    a = assess(stable_at_init, ev)
    assert a.ours == pytest.approx(0.1) and a.verdict == "reproduced"
    b = assess(matching_stable, ev)
    assert b.ours == pytest.approx(0.2) and b.verdict == "reproduced"
    unstable = _lmc_summary([3, 4, 5], 0.02, [0.02], [0.02])
    a = assess(stable_at_init, Evidence({need_key(lmc_claims.LMC_NEED): unstable}, dataset="mnist"))
    assert a.ours == pytest.approx(2.0) and a.verdict == "not reproduced"
    assert assess(stable_at_init, Evidence({need_key(lmc_claims.LMC_NEED): s},
                                           dataset="fashionmnist")).verdict == "not run"


def test_lmc_ledger_rows_have_the_ledger_columns(smoke_store):
    from lthlib.report.claims.paper_claims import CSV_COLUMNS
    root, trs = smoke_store
    lmc.ensure_lmc(trs, [0, 1, 2], 5, root)
    df = lmc_claims.evaluate_lmc_claims(root, ("mnist",))
    assert list(df.columns) == list(CSV_COLUMNS) and len(df) == 2
    assert set(df.group) == {"beyond the paper"} and set(df.profile) == {"smoke"}
    assert set(df.evidence) == {"indicative"} and (df.trials == 2).all()

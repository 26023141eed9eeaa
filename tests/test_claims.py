"""The claims ledger on synthetic summaries crafted to satisfy or violate specific claims,
and end to end on a tiny fake runs/ store (no training)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lthlib import claims as C
from lthlib.config import make_experiment
from lthlib.store import RunStore

LEVEL_PMS = (1.0, .8, .64, .513, .41, .328, .262, .211, .168, .135, .107, .086, .07, .055,
             .044, .036, .029, .023, .019)
DENSE_ES, DENSE_ACC = 5000.0, 0.980


def interp(pm: float, points: dict[float, float]) -> float:
    """Piecewise-linear in log(Pm) through ``points`` (Pm -> value)."""
    xs = sorted(points)
    return float(np.interp(math.log(pm), [math.log(x) for x in xs], [points[x] for x in xs]))


# A LeNet that behaves as the paper says (Figure 4a): ES ratio and accuracy gain vs Pm.
TICKET_ES = {1.0: 1.0, .211: 0.62, .036: 1.0, .019: 1.3}
TICKET_ACC = {1.0: 0.0, .513: .002, .135: .004, .036: 0.0, .019: -.01}
REINIT_ES = {1.0: 1.0, .211: 0.62 * 2.51, .019: 3.0}
REINIT_ACC = {1.0: 0.0, .41: .001, .211: -.001, .019: -.05}


def summary_rows(pms=LEVEL_PMS, variants=("ticket", "reinit"), seeds=(0, 1),
                 ticket_es=TICKET_ES, ticket_acc=TICKET_ACC, reinit_es=REINIT_ES,
                 reinit_acc=REINIT_ACC, random_like_reinit=False) -> pd.DataFrame:
    """Synthetic summary: two seeds at -/+ a small offset, so means are exactly the design."""
    rows = []
    for level, pm in enumerate(pms):
        for variant in variants:
            if variant != "ticket" and level == 0:
                continue
            es_pts, acc_pts = (ticket_es, ticket_acc) if variant == "ticket" else \
                (reinit_es, reinit_acc)
            for seed in seeds:
                d = (-1) ** (seed + 1) * (0.5 if len(seeds) > 1 else 0)
                es = DENSE_ES * interp(pm, es_pts) + 100 * d
                acc = DENSE_ACC + interp(pm, acc_pts) + 0.0004 * d
                rows.append({"variant": variant, "level": level, "replicate": 0, "pm": pm,
                             "early_stop_iteration": es, "early_stop_val_loss": 0.06,
                             "early_stop_test_acc": acc, "early_stop_train_acc": acc + 0.015,
                             "early_stop_val_acc": acc, "final_iteration": 10_000,
                             "final_test_acc": acc - 0.001, "final_train_acc": 1.0,
                             "seed": seed})
    return pd.DataFrame(rows)


def metrics_rows(summary: pd.DataFrame, step: int = 250, last: int = 10_000) -> pd.DataFrame:
    """Learning curves consistent with a summary: accuracy rises with time constant ~ ES/4
    towards the network's early-stop accuracy."""
    rows = []
    for _, r in summary.iterrows():
        tau = r.early_stop_iteration / 4
        for it in range(0, last + 1, step):
            acc = 0.1 + (r.early_stop_test_acc - 0.1) * (1 - math.exp(-it / tau))
            rows.append({"variant": r.variant, "level": r.level, "replicate": r.replicate,
                         "pm": r.pm, "iteration": it, "train_loss": 0.1, "train_acc": acc,
                         "val_loss": 0.1, "val_acc": acc, "test_loss": 0.1, "test_acc": acc,
                         "seed": r.seed})
    return pd.DataFrame(rows)


def check(claim_id: str, summaries: dict, metrics: dict | None = None,
          dataset: str = "mnist") -> tuple[float | None, str]:
    return C.assess(C.get_claim(claim_id), C.Evidence(summaries, metrics or {}, dataset))


@pytest.fixture(scope="module")
def imp():
    return summary_rows()


def test_ledger_definitions_are_complete():
    ids = [c.id for c in C.CLAIMS]
    assert len(ids) == len(set(ids))
    assert {c.figure for c in C.CLAIMS} == {"1", "3", "4a", "4b", "12", "4c", "8"}
    for c in C.CLAIMS:
        assert c.rule in C.RULE_TEXT and c.tolerance >= 0 and c.criterion()
        assert all(len(n) in (2, 3) for n in c.needs)
    table = C.claims_table()
    assert list(table["claim"]) == ids and table["verdict rule"].str.len().min() > 0
    with pytest.raises(ValueError, match="fig4a-early-stop-38pct-earlier"):
        C.get_claim("no-such-claim")


@pytest.mark.parametrize("rule,ours,target,tol,expected", [
    (C.at_least, 0.4, 0.3, 0.3, "reproduced"), (C.at_least, 0.1, 0.3, 0.3, "partly"),
    (C.at_least, -0.1, 0.3, 0.3, "not reproduced"), (C.at_most, -1, 0, 0.2, "reproduced"),
    (C.at_most, 0.1, 0, 0.2, "partly"), (C.at_most, 0.5, 0, 0.2, "not reproduced"),
    (C.near, 0.2, 0, 0.3, "reproduced"), (C.near, 0.5, 0, 0.3, "partly"),
    (C.near, 0.7, 0, 0.3, "not reproduced"), (C.near_same_sign, 0.4, 0.38, 0.15, "reproduced"),
    (C.near_same_sign, 0.9, 0.38, 0.15, "partly"),
    (C.near_same_sign, -0.1, 0.38, 0.15, "not reproduced"),
    (C.ratio_near, 2.0, 2.51, 0.5, "reproduced"), (C.ratio_near, 1.2, 2.51, 0.5, "partly"),
    (C.ratio_near, 0.8, 2.51, 0.5, "not reproduced"), (C.share, 0.8, 1.0, 0.2, "reproduced"),
    (C.share, 0.6, 1.0, 0.2, "partly"), (C.share, 0.2, 1.0, 0.2, "not reproduced"),
])
def test_rules(rule, ours, target, tol, expected):
    assert rule(ours, target, tol) == expected


def test_claim_verdict_missing_value_is_not_run():
    claim = C.get_claim("fig4a-early-stop-38pct-earlier")
    assert claim.verdict(None) == "not run" and claim.verdict(float("nan")) == "not run"


def test_fig4a_crafted_match_is_reproduced(imp):
    s = {"imp/lenet": imp}
    ours, verdict = check("fig4a-early-stop-38pct-earlier", s)
    assert ours == pytest.approx(0.38, abs=1e-9) and verdict == "reproduced"
    ours, verdict = check("fig4a-test-acc-gain-13.5pct", s)
    assert ours == pytest.approx(0.4) and verdict == "reproduced"
    ours, verdict = check("fig4a-ticket-2.51x-faster-than-reinit", s)
    assert ours == pytest.approx(2.51) and verdict == "reproduced"
    for cid in ("fig4a-early-stop-back-at-3.6pct", "fig4a-test-acc-back-at-3.6pct",
                "fig4a-ticket-holds-to-3.6pct", "fig4a-train-acc-gain-13.5pct",
                "fig4a-reinit-slower-than-dense", "fig4a-reinit-below-dense-at-21pct",
                "fig4b-final-acc-gain-up-to-0.35pp", "fig12-train-acc-100-pm-ge-2pct",
                "fig12-all-train-acc-100-pm-ge-5pct"):
        assert check(cid, s)[1] == "reproduced", cid
    ours, verdict = check("fig4a-ticket-0.5pp-more-accurate-than-reinit", s)
    assert ours == pytest.approx(100 * (interp(.211, TICKET_ACC) + 0.001))
    assert verdict in ("reproduced", "partly")


def test_fig4a_crafted_violation_is_not_reproduced():
    slow = summary_rows(ticket_es={1.0: 1.0, .211: 1.2, .019: 1.5},
                        ticket_acc={1.0: 0.0, .135: -.01, .019: -.02},
                        reinit_es={1.0: 1.0, .211: 0.6, .019: 0.6},
                        reinit_acc={1.0: 0.0, .211: .01, .019: .01})
    s = {"imp/lenet": slow}
    for cid in ("fig4a-early-stop-38pct-earlier", "fig4a-test-acc-gain-13.5pct",
                "fig4a-ticket-2.51x-faster-than-reinit", "fig4a-reinit-below-dense-at-21pct",
                "fig4a-ticket-0.5pp-more-accurate-than-reinit", "fig4a-ticket-holds-to-3.6pct"):
        assert check(cid, s)[1] == "not reproduced", cid


def test_missing_level_or_experiment_is_not_run(imp):
    no21 = imp[~imp["level"].isin([7])]  # Pm 21.1%: the neighbours are > 15% away
    ours, verdict = check("fig4a-early-stop-38pct-earlier", {"imp/lenet": no21})
    assert ours is None and verdict == "not run"
    assert check("fig4a-early-stop-38pct-earlier", {})[1] == "not run"
    assert check("fig4c-iterative-faster-at-small-pm", {"imp/lenet": imp})[1] == "not run"
    # variants missing entirely: a reinit claim on tickets only
    tickets = imp[imp["variant"] == "ticket"]
    assert check("fig4a-ticket-2.51x-faster-than-reinit", {"imp/lenet": tickets}) == \
        (None, "not run")


def test_nearest_level_tolerance():
    levels = pd.Series([1.0, .513, .211, .07], index=[0, 3, 7, 12])
    assert C.nearest_level(levels, .2) == 7 and C.nearest_level(levels, .5) == 3
    assert C.nearest_level(levels, .135) is None
    assert C.nearest_level(pd.Series(dtype=float), .5) is None


def test_fig3_curves(imp):
    m = metrics_rows(imp[imp["variant"] == "ticket"])
    ev = {"imp/lenet": imp}, {"imp/lenet": lambda: m}
    ours, verdict = check("fig3-51pct-learns-faster", *ev)
    assert ours > 0 and verdict == "reproduced"
    assert check("fig3-21pct-faster-still", *ev)[1] == "reproduced"
    assert check("fig3-below-21pct-slows", *ev)[1] == "reproduced"
    assert check("fig3-51pct-higher-accuracy", *ev)[1] == "reproduced"
    assert check("fig3-3.6pct-regresses-to-dense", *ev)[1] == "reproduced"
    # the summary alone is not enough for curve claims
    assert check("fig3-51pct-learns-faster", {"imp/lenet": imp})[1] == "not run"


def oneshot_rows(good: bool = True) -> pd.DataFrame:
    """One-shot summary with random sparse networks (worse than tickets when ``good``)."""
    pms = (1.0, .8, .64, .51, .41, .33, .26, .21, .168, .134, .107, .086, .069, .055, .044)
    s = summary_rows(pms, ("ticket", "reinit"),
                     ticket_es={1.0: 1.0, .21: 0.7, .044: 1.3},
                     ticket_acc={1.0: 0.0, .95: .001, .21: .003, .055: .001, .044: -.003})
    rand = s[s["variant"] == "reinit"].assign(variant="random")
    factor = 1 if good else -1
    rand["early_stop_iteration"] = DENSE_ES * (1 + factor * (1 - rand["pm"]))
    rand["early_stop_test_acc"] = DENSE_ACC - factor * 0.05 * (1 - rand["pm"])
    return pd.concat([s, rand], ignore_index=True)


def test_fig1_and_fig4c(imp):
    good, bad = {"oneshot/lenet": oneshot_rows(True)}, {"oneshot/lenet": oneshot_rows(False)}
    for cid in ("fig1-random-slower-when-sparser", "fig1-random-less-accurate-when-sparser",
                "fig1-ticket-faster-than-random", "fig1-ticket-more-accurate-than-random"):
        assert check(cid, good)[1] == "reproduced", cid
        assert check(cid, bad)[1] == "not reproduced", cid
    assert check("fig1-random-slower-when-sparser", good)[0] == pytest.approx(-1.0)
    assert check("fig4c-oneshot-earlier-67.5-17.6", good) == (1.0, "reproduced")
    assert check("fig4c-oneshot-more-accurate-95-5.17", good)[1] == "reproduced"
    both = {**good, "imp/lenet": imp}
    ours, verdict = check("fig4c-iterative-faster-at-small-pm", both)
    assert ours == 1.0 and verdict == "reproduced"
    assert check("fig4c-iterative-more-accurate-at-small-pm", both)[1] == "reproduced"


def fig8_rows(ticket_gain: float, dense: float = 0.905, best: float = 0.895) -> pd.DataFrame:
    """ResNet-18 levels (global pruning): ticket = reinit + ``ticket_gain``."""
    pms = [(3200 + 267_696 * 0.8 ** n) / 270_896 for n in range(13)]
    rows = []
    for level, pm in enumerate(pms):
        for variant in ("ticket", "reinit"):
            if variant == "reinit" and level == 0:
                continue
            acc = best if 0.21 <= pm <= 0.42 else dense - 0.01 * level / 4
            if level == 0:
                acc = dense
            acc -= 0 if variant == "ticket" else ticket_gain
            rows.append({"variant": variant, "level": level, "replicate": 0, "pm": pm,
                         "early_stop_iteration": 1000, "early_stop_test_acc": acc,
                         "final_test_acc": acc, "final_train_acc": 1.0, "seed": 0})
    return pd.DataFrame(rows)


def test_fig8_absolute_claims_only_on_cifar10():
    s = {"global-imp/resnet18/lr0.1": fig8_rows(0.0),
         "global-imp/resnet18/lr0.01": fig8_rows(0.02),
         "global-imp/resnet18/lr0.03-warmup": fig8_rows(0.02, 0.905, 0.905)}
    ours, verdict = check("fig8-lr0.01-best-ticket-89.5pct", s, dataset="cifar10")
    assert ours == pytest.approx(89.5) and verdict == "reproduced"
    assert check("fig8-lr0.01-best-ticket-89.5pct", s, dataset="mnist") == (None, "not run")
    assert check("fig8-warmup-90.5pct-at-27.1pct", s, dataset="cifar10")[1] == "reproduced"
    for ds in ("mnist", "cifar10"):  # the qualitative companions run anywhere
        assert check("fig8-lr0.1-no-winning-tickets", s, dataset=ds)[1] == "reproduced"
        assert check("fig8-lr0.01-ticket-beats-reinit", s, dataset=ds)[1] == "reproduced"
        assert check("fig8-lr0.01-short-of-dense-lr0.1", s, dataset=ds) == \
            (pytest.approx(-1.0), "reproduced")
        assert check("fig8-warmup-matches-dense-lr0.1", s, dataset=ds)[1] == "reproduced"
        assert check("fig8-warmup-winning-to-11.8pct", s, dataset=ds)[1] == "reproduced"
    s["global-imp/resnet18/lr0.1"] = fig8_rows(0.03)  # winning tickets at lr 0.1: violated
    assert check("fig8-lr0.1-no-winning-tickets", s)[1] == "not reproduced"


# --- end to end on a fake store --------------------------------------------------------------

def fake_trial(store: RunStore, profile: str, seed: int, summary: pd.DataFrame,
               experiment: str = "imp") -> None:
    cfg = make_experiment(experiment, "lenet", "mnist", profile, 1, seed=seed, rounds=18)
    part = summary[summary["seed"] == seed].drop(columns="seed")
    store.finish(cfg, metrics_rows(part.assign(seed=seed), step=1000).drop(columns="seed"),
                 part, wall_time=1.0, hardware={"device": "cpu"})


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory, imp):
    root = tmp_path_factory.mktemp("runs")
    store = RunStore(root)
    for seed in (0, 1):
        fake_trial(store, "smoke", seed, imp)
    fake_trial(store, "quick", 0, imp)
    return root


def test_evaluate_claims_end_to_end(fake_store, tmp_path, imp):
    df = C.evaluate_claims(fake_store, datasets=("mnist", "cifar10"))
    assert tuple(df.columns) == C.CSV_COLUMNS
    assert len(df) == 2 * len(C.CLAIMS)
    assert set(df["verdict"]) <= set(C.VERDICTS)
    row = df[(df.claim == "fig4a-early-stop-38pct-earlier") & (df.dataset == "mnist")].iloc[0]
    assert row.verdict == "reproduced" and row.profile == "quick" and row.trials == 1
    assert row.ours == pytest.approx(0.38, abs=0.01)
    assert row.levels == imp["level"].nunique()  # the run's sparsity levels, dense included
    smoke = C.evaluate_claims(fake_store, datasets=("mnist",), profile="smoke")
    row = smoke[smoke.claim == "fig4a-early-stop-38pct-earlier"].iloc[0]
    assert row.profile == "smoke" and row.trials == 2 and row.verdict == "reproduced"
    # nothing stored for cifar10, one-shot or ResNet: "not run" with no number
    missing = df[(df.dataset == "cifar10") | df.claim.str.startswith(("fig1-", "fig8-", "fig4c-"))]
    assert (missing.verdict == "not run").all() and missing.ours.isna().all()
    assert (missing.profile == "").all() and missing.levels.isna().all()
    counts = C.ledger_summary(df)
    assert list(counts.columns) == [*C.VERDICTS, "total"]
    assert counts.loc["cifar10", "not run"] == len(C.CLAIMS)
    assert counts["total"].tolist() == [len(C.CLAIMS)] * 2


def test_write_claims_csv(fake_store, tmp_path):
    path = C.write_claims_csv(fake_store, datasets=("mnist",))
    assert path == fake_store / "claims.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(C.CSV_COLUMNS)
    back = pd.read_csv(path, keep_default_na=False)
    assert set(back["verdict"]) <= set(C.VERDICTS) and len(back) == len(C.CLAIMS)
    other = C.write_claims_csv(fake_store, tmp_path / "x" / "ledger.csv", datasets=("mnist",))
    assert other.read_text() == path.read_text()


def test_empty_store_is_all_not_run(tmp_path):
    df = C.evaluate_claims(tmp_path / "nothing", datasets=("fashionmnist",))
    assert (df.verdict == "not run").all() and len(df) == len(C.CLAIMS)
    with pytest.raises(ValueError, match="mnist"):
        C.evaluate_claims(tmp_path, datasets=("svhn",))


def test_range_claims_need_the_depth_they_speak_about():
    """Two global-IMP rounds (Pm >= 64%) cannot confirm a claim about tickets down to 11.8%:
    a matching number is capped at "partly"; a run that goes deep enough is not capped."""
    deep = {"global-imp/resnet18/lr0.03-warmup": fig8_rows(0.02, 0.905, 0.905)}
    shallow = {k: v[v.level <= 2] for k, v in deep.items()}
    assert check("fig8-warmup-winning-to-11.8pct", deep)[1] == "reproduced"
    ours, verdict = check("fig8-warmup-winning-to-11.8pct", shallow)
    assert ours == 1.0 and verdict == "partly"
    claim = C.get_claim("fig8-warmup-winning-to-11.8pct")
    assert "stop short of Pm 11.8%" in claim.criterion()
    upto7 = {k: v[v.level <= 7] for k, v in deep.items()}  # Pm 21.2%: within one round of 27.1%
    assert check("fig8-warmup-matches-dense-lr0.1",
                 {**upto7, "global-imp/resnet18/lr0.1": fig8_rows(0.0)})[1] == "reproduced"

"""The claims ledger on synthetic summaries crafted to satisfy or violate specific claims,
and end to end on a tiny fake runs/ store (no training)."""
from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest

from lthlib.report import analysis
from lthlib.report.claims import (paper_claims as claims, claims_csv as evaluate, evidence,
                                  measures, verdict_rules as verdicts)
from lthlib.report.claims.judge import Assessment, assess
from lthlib.config.experiment import make_experiment
from lthlib.store.run_store import RunStore
from lthlib.report.claims.verdict_rules import Below

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


def judge(claim_id: str, summaries: dict, metrics: dict | None = None,
          dataset: str = "mnist") -> Assessment:
    return assess(claims.get_claim(claim_id), evidence.Evidence(summaries, metrics or {}, dataset))


def check(claim_id: str, summaries: dict, metrics: dict | None = None,
          dataset: str = "mnist") -> tuple[float | None, str]:
    a = judge(claim_id, summaries, metrics, dataset)
    return a.ours, a.verdict


@pytest.fixture(scope="module")
def imp():
    return summary_rows()


def test_ledger_definitions_are_complete():
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    assert {c.figure for c in claims.CLAIMS} == {"1", "3", "4a", "4b", "12", "4c", "8"}
    for c in claims.CLAIMS:
        assert c.criterion() and c.group in claims.GROUPS
        assert all(len(n) in (2, 3) for n in c.needs)
    table = claims.claims_table()
    assert list(table["claim"]) == ids and table["verdict rule"].str.len().min() > 0
    with pytest.raises(ValueError, match="fig4a-early-stop-38pct-earlier"):
        claims.get_claim("no-such-claim")


def test_fig4a_crafted_match_is_reproduced(imp):
    """Two trials that differ by a shift shared by every network of a seed: the paired
    intervals are tight around the design values."""
    s = {"imp/lenet": imp}
    a = judge("fig4a-early-stop-38pct-earlier", s)
    assert a.ours == pytest.approx(0.38, abs=1e-9) and a.verdict == "reproduced"
    assert a.ci.low <= a.ours <= a.ci.high and a.ci.n == 2
    assert "paired t-interval over 2 trials" in a.rule
    ours, verdict = check("fig4a-test-acc-gain-13.5pct", s)
    assert ours == pytest.approx(0.4) and verdict == "reproduced"
    ours, verdict = check("fig4a-ticket-2.51x-faster-than-reinit", s)
    assert ours == pytest.approx(2.51) and verdict == "reproduced"
    for cid in ("fig4a-early-stop-back-at-3.6pct", "fig4a-test-acc-back-at-3.6pct",
                "fig4a-train-acc-gain-13.5pct", "fig4a-reinit-slower-than-dense",
                "fig4a-reinit-below-dense-at-21pct", "fig4b-final-acc-gain-up-to-0.35pp",
                "fig12-train-acc-100-pm-ge-2pct", "fig12-all-train-acc-100-pm-ge-5pct",
                "fig4a-ticket-0.5pp-more-accurate-than-reinit"):
        assert check(cid, s)[1] == "reproduced", cid
    # the design puts the ticket exactly at the dense accuracy at Pm 3.6%: a strict ">= 0"
    # cannot be confirmed there, so that level is inconclusive and the claim partly holds
    a = judge("fig4a-ticket-holds-to-3.6pct", s)
    assert a.verdict == "partly" and "cannot tell at Pm 3.6%" in a.detail


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


def noisy(summary: pd.DataFrame, metric: str, variant: str, level: int, offsets) -> pd.DataFrame:
    """``summary`` with ``offsets[seed]`` added to ``metric`` of one variant at one level."""
    out = summary.copy()
    rows = (out["variant"] == variant) & (out["level"] == level)
    out.loc[rows, metric] += out.loc[rows, "seed"].map(dict(enumerate(offsets)))
    return out


def test_the_cases_the_old_rules_let_through():
    """Each lenient case of the old rules on crafted trials, judged by the new rules."""
    five = summary_rows(seeds=range(5))
    # re-inits 0.066 pp *above* dense at 21.1% (level 7), with trial noise: inconclusive,
    # and with tight trials not reproduced; a wrong sign is never "partly"
    above = five.copy()
    above.loc[(above.variant == "reinit") & (above.level == 7), "early_stop_test_acc"] = \
        DENSE_ACC + 0.00066
    loose = noisy(above, "early_stop_test_acc", "reinit", 7, [0, .002, -.002, .001, -.001])
    assert check("fig4a-reinit-below-dense-at-21pct", {"imp/lenet": loose})[1] == "inconclusive"
    assert check("fig4a-reinit-below-dense-at-21pct", {"imp/lenet": above})[1] == \
        "not reproduced"
    # "2.51x faster": a tight 1.7x passed the old factor-1.5 band; now it is not reproduced
    slow = five.copy()
    rows = (slow.variant == "reinit") & (slow.level == 7)
    ticket_es = slow.loc[(slow.variant == "ticket") & (slow.level == 7)].set_index("seed")
    slow.loc[rows, "early_stop_iteration"] = \
        1.7 * slow.loc[rows, "seed"].map(ticket_es["early_stop_iteration"])
    a = judge("fig4a-ticket-2.51x-faster-than-reinit", {"imp/lenet": slow})
    assert a.ours == pytest.approx(1.7) and a.verdict == "not reproduced"
    # noisy dense early stops (2,500 to 4,800 across trials): the "38% earlier" interval is
    # wide and the verdict inconclusive, though the mean sits near 0.38
    wide = noisy(five, "early_stop_iteration", "ticket", 0, [-2500, -1000, 0, 800, 2700])
    a = judge("fig4a-early-stop-38pct-earlier", {"imp/lenet": wide})
    assert a.verdict == "inconclusive" and a.ci.high - a.ci.low > 0.2


def test_one_trial_gives_no_interval_and_no_verdict():
    one = summary_rows(seeds=(0,))
    a = judge("fig4a-test-acc-gain-13.5pct", {"imp/lenet": one})
    assert a.ours == pytest.approx(0.4) and a.verdict == "inconclusive"
    assert a.ci_low is None and a.ci_high is None and "too few" in a.detail


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
    assert analysis.nearest_level(levels, .2) == 7 and analysis.nearest_level(levels, .5) == 3
    assert analysis.nearest_level(levels, .135) is None
    assert analysis.nearest_level(pd.Series(dtype=float), .5) is None


def test_fig3_curves(imp):
    m = metrics_rows(imp[imp["variant"] == "ticket"])
    ev = {"imp/lenet": imp}, {"imp/lenet": lambda: m}
    a = judge("fig3-51pct-learns-faster", *ev)
    assert a.ours > 0 and a.ci.low > 0 and a.verdict == "reproduced"
    assert check("fig3-21pct-faster-still", *ev)[1] == "reproduced"
    assert check("fig3-below-21pct-slows", *ev)[1] == "reproduced"
    assert check("fig3-51pct-higher-accuracy", *ev)[1] == "reproduced"
    assert check("fig3-3.6pct-regresses-to-dense", *ev)[1] == "reproduced"
    # the summary alone is not enough for curve claims
    assert check("fig3-51pct-learns-faster", {"imp/lenet": imp})[1] == "not run"


def oneshot_rows(good: bool = True, seeds=(0, 1)) -> pd.DataFrame:
    """One-shot summary with random sparse networks (worse than tickets when ``good``)."""
    pms = (1.0, .8, .64, .51, .41, .33, .26, .21, .168, .134, .107, .086, .069, .055, .044)
    s = summary_rows(pms, ("ticket", "reinit"), seeds,
                     ticket_es={1.0: 1.0, .21: 0.7, .044: 1.3},
                     ticket_acc={1.0: 0.0, .95: .001, .21: .003, .055: .001, .044: -.003})
    rand = s[s["variant"] == "reinit"].assign(variant="random")
    factor = 1 if good else -1
    rand["early_stop_iteration"] = DENSE_ES * (1 + factor * (1 - rand["pm"]))
    rand["early_stop_test_acc"] = DENSE_ACC - factor * 0.05 * (1 - rand["pm"])
    return pd.concat([s, rand], ignore_index=True)


def test_fig1_and_fig4c(imp):
    good = {"oneshot/lenet": oneshot_rows(True, seeds=range(5))}
    bad = {"oneshot/lenet": oneshot_rows(False, seeds=range(5))}
    for cid in ("fig1-random-slower-when-sparser", "fig1-random-less-accurate-when-sparser",
                "fig1-ticket-faster-than-random", "fig1-ticket-more-accurate-than-random"):
        assert check(cid, good)[1] == "reproduced", cid
        assert check(cid, bad)[1] == "not reproduced", cid
    assert check("fig1-random-slower-when-sparser", good)[0] == pytest.approx(-1.0)
    a = judge("fig4c-oneshot-earlier-67.5-17.6", good)
    # the claimed range 67.5% >= Pm >= 17.6% holds six one-shot levels; 16.8% lies outside
    assert a.ours > 0 and a.verdict == "reproduced" and "holds at 6 of 6 levels" in a.detail
    assert "16.8%" not in a.detail.split("control")[0]
    assert check("fig4c-oneshot-more-accurate-95-5.17", good)[1] == "reproduced"
    both = {**good, "imp/lenet": summary_rows(seeds=range(5))}  # the same seeds: paired
    a = judge("fig4c-iterative-faster-at-small-pm", both)
    assert a.ours > 0 and a.verdict == "reproduced" and "paired" in a.rule
    assert check("fig4c-iterative-more-accurate-at-small-pm", both)[1] == "reproduced"


def test_every_level_lists_the_levels_that_contradict():
    """Tickets less accurate than random networks at three levels (as FashionMNIST's
    41%, 3.5% and 1.9% points were) while 80% of levels hold: not reproduced, and the
    ledger names the levels."""
    rows = oneshot_rows(True, seeds=range(5))
    bad_levels = rows[(rows.variant == "random")
                      & rows.pm.round(3).isin([.41, .055, .044])]["level"].unique()
    worse = (rows.variant == "random") & rows.level.isin(bad_levels)
    rows.loc[worse, "early_stop_test_acc"] = DENSE_ACC + 0.01
    a = judge("fig1-ticket-more-accurate-than-random", {"oneshot/lenet": rows})
    assert a.verdict == "not reproduced"
    assert "holds at 11 of 14 levels" in a.detail
    assert "contradicted at Pm 41%, 5.5%, 4.4%" in a.detail
    assert a.ci.high < 0  # ours is the weakest level, with its interval


def test_monotone_claims_need_a_clear_monotone_trend():
    rows = oneshot_rows(True, seeds=range(5))
    rand = rows.variant == "random"
    rng = np.random.default_rng(0)  # a weak trend buried in trial noise: rho near 0.5
    rows.loc[rand, "early_stop_iteration"] = DENSE_ES * (1 + 0.05 * (1 - rows.loc[rand, "pm"])) \
        + rng.normal(0, 400, rand.sum())
    a = judge("fig1-random-slower-when-sparser", {"oneshot/lenet": rows})
    assert a.verdict in ("inconclusive", "not reproduced") and a.ci.n == 5


def fig8_rows(ticket_gain: float, dense: float = 0.905, best: float = 0.895,
              seeds=(0,)) -> pd.DataFrame:
    """ResNet-18 levels (global pruning): ticket = reinit + ``ticket_gain``, the same for
    every seed in ``seeds``."""
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
            for seed in seeds:
                rows.append({"variant": variant, "level": level, "replicate": 0, "pm": pm,
                             "early_stop_iteration": 1000, "early_stop_test_acc": acc,
                             "final_test_acc": acc, "final_train_acc": 1.0, "seed": seed})
    return pd.DataFrame(rows)


def test_fig8_absolute_claims_only_on_cifar10():
    three = (0, 1, 2)
    s = {"global-imp/resnet18/lr0.1": fig8_rows(0.0, seeds=three),
         "global-imp/resnet18/lr0.01": fig8_rows(0.02, seeds=three),
         "global-imp/resnet18/lr0.03-warmup": fig8_rows(0.02, 0.905, 0.905, seeds=three)}
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
    s["global-imp/resnet18/lr0.1"] = fig8_rows(0.03, seeds=three)  # winning tickets at lr 0.1
    assert check("fig8-lr0.1-no-winning-tickets", s)[1] == "not reproduced"


def test_fig8_equality_is_two_sided_and_unpaired_across_seed_sets():
    """The warmup ticket 3.15 pp *above* the dense network at lr 0.1 used to pass a one-sided
    rule; as an equality it is not reproduced. Settings with other seeds are drawn apart."""
    three = (0, 1, 2)
    s = {"global-imp/resnet18/lr0.1": fig8_rows(0.0, seeds=three),
         "global-imp/resnet18/lr0.03-warmup": fig8_rows(0.02, 0.905, 0.905 + 0.0315,
                                                        seeds=three)}
    a = judge("fig8-warmup-matches-dense-lr0.1", s)
    assert a.ours == pytest.approx(3.15) and a.verdict == "not reproduced"
    s["global-imp/resnet18/lr0.03-warmup"] = fig8_rows(0.02, 0.905, 0.905 + 0.0315,
                                                       seeds=(0, 1))
    a = judge("fig8-warmup-matches-dense-lr0.1", s)
    assert "unpaired t-interval over 2 trials" in a.rule and a.verdict == "not reproduced"


def test_two_trials_that_agree_are_not_narrower_than_the_test_set_allows():
    """Two trials with the same 0.6 pp gap give a zero-width t-interval, which would call
    "no winning tickets at lr 0.1" (gap within 0 ± 0.5 pp) not reproduced. On 10,000
    test images each network's accuracy has about 0.3 pp of sampling error, so the interval
    is widened to 1.96 of those standard errors and the verdict is inconclusive; with a huge
    test set the floor vanishes and the t-interval decides."""
    key = "global-imp/resnet18/lr0.1"
    s = {key: fig8_rows(0.006, seeds=(0, 1))}
    c = claims.get_claim("fig8-lr0.1-no-winning-tickets")
    bare = assess(c, evidence.Evidence(s))
    assert bare.verdict == "not reproduced" and bare.ci_low == pytest.approx(bare.ci_high)
    floored = assess(c, evidence.Evidence(s, test_images={key: 10_000}))
    pms = s[key].groupby("level")["pm"].first()
    cells = 2 * int(((pms < 1.0) & (pms >= 0.118 * (1 - evidence.RANGE_SLACK))).sum())
    acc = float(s[key]["final_test_acc"].mean())
    half = 1.96 * 100 * math.sqrt(2 * acc * (1 - acc) / 10_000 / cells)
    assert floored.ours == pytest.approx(0.6)
    assert floored.ci_low == pytest.approx(0.6 - half, abs=1e-3)
    assert floored.ci_high == pytest.approx(0.6 + half, abs=1e-3)
    assert floored.verdict == "inconclusive" and "sampling error" in floored.rule
    huge = assess(c, evidence.Evidence(s, test_images={key: 10**9}))
    assert huge.verdict == "not reproduced"
    one = {key: fig8_rows(0.006, seeds=(0,))}  # a floor does not make one trial an interval
    a = assess(c, evidence.Evidence(one, test_images={key: 10_000}))
    assert a.ci_low is None and a.verdict == "inconclusive" and "each end" not in a.rule


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
    df = evaluate.evaluate_claims(fake_store, datasets=("mnist", "cifar10"))
    assert tuple(df.columns) == claims.CSV_COLUMNS
    assert len(df) == 2 * len(claims.CLAIMS)
    assert set(df["verdict"]) <= set(verdicts.VERDICTS)
    row = df[(df.claim == "fig4a-early-stop-38pct-earlier") & (df.dataset == "mnist")].iloc[0]
    # quick is the largest profile stored, with one trial: a number but no interval
    assert row.profile == "quick" and row.trials == 1 and row.verdict == "inconclusive"
    assert row.ours == pytest.approx(0.38, abs=0.01) and pd.isna(row.ci_low)
    assert row.evidence == "indicative" and "0.38 ± 0.1" in row.rule
    assert row.levels == imp["level"].nunique()  # the run's sparsity levels, dense included
    smoke = evaluate.evaluate_claims(fake_store, datasets=("mnist",), profile="smoke")
    row = smoke[smoke.claim == "fig4a-early-stop-38pct-earlier"].iloc[0]
    assert row.profile == "smoke" and row.trials == 2 and row.verdict == "reproduced"
    assert row.ci_low <= row.ours <= row.ci_high and row.evidence == "indicative"
    # nothing stored for cifar10, one-shot or ResNet: "not run" with no number
    missing = df[(df.dataset == "cifar10") | df.claim.str.startswith(("fig1-", "fig8-", "fig4c-"))]
    assert (missing.verdict == "not run").all() and missing.ours.isna().all()
    assert (missing.profile == "").all() and missing.levels.isna().all()
    assert missing.ci_low.isna().all() and (missing.evidence == "").all()
    assert (df.rule.str.len() > 0).all()
    counts = evaluate.ledger_summary(df)
    assert list(counts.columns) == [*verdicts.VERDICTS[:-1], "counted", "indicative", "not run"]
    assert counts.loc["cifar10", "not run"] == len(claims.CLAIMS)
    assert (counts["counted"] == 0).all()  # no paper-profile result: nothing counts
    ran = (df.dataset == "mnist") & (df.verdict != "not run")
    assert counts.loc["mnist", "indicative"] == ran.sum() > 0
    assert (counts[["counted", "indicative", "not run"]].sum(axis=1) == len(claims.CLAIMS)).all()


def test_totals_count_paper_and_named_testing_profiles(fake_store, monkeypatch):
    """Smoke results are indicative, until the figure names smoke as able to test its claims
    (what a converged CPU profile for Figure 8 will do): then they count."""
    smoke = evaluate.evaluate_claims(fake_store, datasets=("mnist",), profile="smoke")
    counts = evaluate.ledger_summary(smoke)
    assert counts.loc["mnist", "counted"] == 0 and counts.loc["mnist", "indicative"] > 0
    monkeypatch.setattr(claims, "TESTING_PROFILES", MappingProxyType({"4a": ("smoke",)}))
    smoke = evaluate.evaluate_claims(fake_store, datasets=("mnist",), profile="smoke")
    fig4a = smoke[smoke.claim.str.startswith("fig4a-")]
    assert (fig4a.evidence == "counted").all()
    assert (smoke[smoke.claim.str.startswith("fig3-") & (smoke.verdict != "not run")]
            .evidence == "indicative").all()
    assert evaluate.ledger_summary(smoke).loc["mnist", "counted"] == len(fig4a)


def test_write_claims_csv(fake_store, tmp_path):
    path = evaluate.write_claims_csv(fake_store, datasets=("mnist",))
    assert path == fake_store / "claims.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(claims.CSV_COLUMNS)
    back = pd.read_csv(path, keep_default_na=False)
    assert set(back["verdict"]) <= set(verdicts.VERDICTS) and len(back) == len(claims.CLAIMS)
    other = evaluate.write_claims_csv(fake_store, tmp_path / "x" / "ledger.csv",
                                      datasets=("mnist",))
    assert other.read_text() == path.read_text()  # seeded: the same store, the same ledger


def test_empty_store_is_all_not_run(tmp_path):
    df = evaluate.evaluate_claims(tmp_path / "nothing", datasets=("fashionmnist",))
    assert (df.verdict == "not run").all() and len(df) == len(claims.CLAIMS)
    with pytest.raises(ValueError, match="mnist"):
        evaluate.evaluate_claims(tmp_path, datasets=("svhn",))


def test_range_claims_need_the_depth_they_speak_about():
    """Two global-IMP rounds (Pm >= 64%) cannot confirm a claim about tickets down to 11.8%:
    a matching number is capped at "partly"; a run that goes deep enough is not capped."""
    three = (0, 1, 2)
    lr01 = {"global-imp/resnet18/lr0.1": fig8_rows(0.0, seeds=three)}  # the control
    deep = {"global-imp/resnet18/lr0.03-warmup": fig8_rows(0.02, 0.905, 0.905, seeds=three)}
    shallow = {**lr01, **{k: v[v.level <= 2] for k, v in deep.items()}}
    deep.update(lr01)
    assert check("fig8-warmup-winning-to-11.8pct", deep)[1] == "reproduced"
    ours, verdict = check("fig8-warmup-winning-to-11.8pct", shallow)
    assert ours == pytest.approx(2.0) and verdict == "partly"
    claim = claims.get_claim("fig8-warmup-winning-to-11.8pct")
    assert "stop short of Pm 11.8%" in claim.criterion()
    upto7 = {k: v[v.level <= 7] for k, v in deep.items()}  # Pm 21.2%: within one round of 27.1%
    assert check("fig8-warmup-matches-dense-lr0.1", {**upto7, **lr01})[1] == "reproduced"


def test_a_claim_measured_trial_by_trial():
    """``per_trial``: a number computed on each trial's rows, averaged with the interval's
    weights (how claims about other quantities plug into the ledger)."""
    five = summary_rows(seeds=range(5))
    deepest = evidence.per_trial(evidence.IMP, lambda rows: 100 * rows["pm"].min())
    c = claims.claim("test-deepest", "4a", "Deepest Pm (%).", "< 2%", (evidence.IMP,), deepest,
                Below(2.0, "%"), group="beyond the paper")
    a = assess(c, evidence.Evidence({"imp/lenet": five}))
    assert a.ours == pytest.approx(1.9) and a.verdict == "reproduced" and a.ci.n == 5
    with pytest.raises(ValueError, match="beyond the paper"):
        claims.claim("x", "4a", "x", "x", (evidence.IMP,), deepest, Below(2.0), group="elsewhere")


def test_claim_evidence_shows_the_trials_behind_a_verdict(fake_store, imp):
    ev, prof = evaluate.claim_evidence("fig4a-ticket-2.51x-faster-than-reinit", "mnist", fake_store,
                                profile="smoke")
    assert prof == "smoke"
    trials = evidence.trial_values(ev, evidence.IMP, evidence.ES, 0.211)
    assert list(trials.index) == [0, 1] and list(trials.columns) == ["ticket", "reinit"]
    a = assess(claims.get_claim("fig4a-ticket-2.51x-faster-than-reinit"), ev)
    assert a.ours == pytest.approx(trials.reinit.mean() / trials.ticket.mean())
    assert evaluate.claim_evidence("fig8-lr0.1-dense-90.5pct", "mnist", fake_store) == (None, "")


def test_a_rule_that_does_not_fit_the_measurement_is_named():
    five = summary_rows(seeds=range(5))
    per_level = measures.gaps_by_level(evidence.IMP, evidence.ES_ACC, 1.0, 0.0, "dense")
    wrong = claims.claim("test-wrong", "4a", "x", "x", (evidence.IMP,), per_level, Below(0.0))
    with pytest.raises(TypeError, match="test-wrong.*EveryLevel"):
        assess(wrong, evidence.Evidence({"imp/lenet": five}))


def test_a_claim_whose_control_passes_the_same_test_is_not_reproduced():
    """Tickets that beat re-inits at lr 0.01 by 2 pp while re-inits are beaten just as much
    at lr 0.1: the control passes, so the row says so and is at most partly; the contrast
    row (lr 0.01's advantage over lr 0.1's) then finds no difference."""
    three = (0, 1, 2)
    same = {"global-imp/resnet18/lr0.1": fig8_rows(0.02, seeds=three),
            "global-imp/resnet18/lr0.01": fig8_rows(0.02, seeds=three)}
    a = judge("fig8-lr0.01-ticket-beats-reinit", same)
    assert a.verdict == "partly" and a.note == "control passes the same test"
    assert a.control.verdict == "reproduced" and "control (lr 0.1" in a.detail
    a = judge("fig8-lr0.01-advantage-exceeds-lr0.1", same)
    assert a.ours == pytest.approx(0.0, abs=1e-9) and a.verdict == "inconclusive"
    contrast = {**same, "global-imp/resnet18/lr0.1": fig8_rows(0.0, seeds=three)}
    a = judge("fig8-lr0.01-ticket-beats-reinit", contrast)
    assert a.verdict == "reproduced" and a.control.verdict != "reproduced" and not a.note
    a = judge("fig8-lr0.01-advantage-exceeds-lr0.1", contrast)
    assert a.ours == pytest.approx(2.0) and a.verdict == "reproduced" and "paired" in a.rule


def test_every_claim_with_a_natural_control_reports_it():
    with_control = [c for c in claims.CLAIMS if c.control is not None]
    assert {c.id for c in with_control} >= {
        "fig1-random-slower-when-sparser", "fig1-random-less-accurate-when-sparser",
        "fig4a-test-acc-gain-13.5pct", "fig8-lr0.01-ticket-beats-reinit",
        "fig8-warmup-winning-to-11.8pct"}
    rows = summary_rows(seeds=range(5))
    a = judge("fig4a-test-acc-gain-13.5pct", {"imp/lenet": rows})
    assert a.control is not None and a.control.ours == pytest.approx(
        100 * (interp(0.135, REINIT_ACC) - interp(1.0, REINIT_ACC)), abs=1e-6)


def test_best_level_is_judged_on_the_simultaneous_band():
    """"Up to 0.35 pp": the best level's interval runs from the band's largest lower end to
    its largest upper end, so a level that is best by noise does not decide alone."""
    rows = summary_rows(seeds=range(5))
    a = judge("fig4b-final-acc-gain-up-to-0.35pp", {"imp/lenet": rows})
    assert a.ours_is.startswith("best level") and a.ci.low <= a.ours <= a.ci.high
    assert "largest lower end" in a.rule and "m = 18 levels" in a.rule


def test_weakest_level_and_wrong_sign_are_named():
    rows = oneshot_rows(True, seeds=range(5))
    rand = rows.variant == "random"
    rng = np.random.default_rng(3)  # random networks as accurate as tickets, give or take
    tick = rows[rows.variant == "ticket"].set_index(["level", "seed"])["early_stop_test_acc"]
    rows.loc[rand, "early_stop_test_acc"] = [
        tick[(lv, sd)] + rng.normal(0, 0.002) for lv, sd in
        zip(rows.loc[rand, "level"], rows.loc[rand, "seed"])]
    rows.loc[rand & (rows.level == 1), "early_stop_test_acc"] -= 0.05  # one level holds
    a = judge("fig1-ticket-more-accurate-than-random", {"oneshot/lenet": rows})
    assert a.verdict == "partly" and a.note == "a level has the wrong sign"
    assert "holds at 1 of 14 levels (Pm 80%)" in a.detail
    assert "of those, estimate on the wrong side at Pm 41%" in a.detail
    assert a.ours_is.startswith("weakest level, Pm ") and a.ours < 0
    assert "cannot tell at Pm" in a.detail and "simultaneous band" in a.rule

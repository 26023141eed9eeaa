"""The claims ledger's content: every numeric claim of the paper's Figures 1, 3, 4a, 4b/12, 4c
and 8 as data, with the function that measures it on our results and the rule that turns
the measurement into a verdict. No verdict is typed by hand: :mod:`.judge` judges a claim on
its evidence and :mod:`.claims_csv` every claim on the store.

Each claim's number is computed from per-trial values and given with a 95% t-interval
(:mod:`.intervals`): paired, so a ticket is always compared with the re-init, dense network
or one-shot run of its own seed. A claim resting on very few trials (Figure 8's) also states
``sampling``: the standard error the test set's sampling alone puts on its number, which the
interval must reach at least 1.96 times either side. A claim with a natural ``control``
(re-initialised or random networks, the high learning rate) has the control judged by the
same rule; if it passes too, the claim is at most "partly". An accuracy equality states
``tolerance_se``: one network's test-set sampling error on the dataset, the least tolerance
it gets. The verdict is the claim's rule applied to that interval: ``reproduced``,
``partly``, ``inconclusive`` (the trials cannot tell), ``not reproduced``, or ``not run``
(the experiment, the Pm level, or the dataset a claim needs is missing).

Only verdicts at the ``paper`` profile, or at a profile named in :data:`TESTING_PROFILES` for
the claim's figure, count as evidence; verdicts from shortened profiles are "indicative".

The measurements live in :mod:`.evidence` (Pm levels are matched within
:data:`~lthlib.report.analysis.PM_REL_TOL`). To add a claim, append a :func:`claim` to
:data:`CLAIMS` (or to a new tuple joined to it) with a ``group`` (:data:`GROUPS`) and a rule
object from :mod:`.verdict_rules`; its ``compute`` returns one value per row of the trial
weights (:func:`.evidence.per_trial` turns a number computed on each trial's rows into one).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pandas as pd

from lthlib.config.paper import check_choice
from lthlib.report.claims.evidence import (ES, ES_ACC, ES_TRAIN, FIG8, FINAL_ACC, FINAL_TRAIN, IMP,
                                           IT, ONESHOT, PP, Evidence, Measured, Need, Sampling,
                                           contrast, difference, need_key, network_se, quotient,
                                           sampling_floor, value_at)
from lthlib.report.claims.measures import (gaps_by_level, iterative_vs_oneshot, learning_advantage,
                                           levels_of, peak_gain, pct_at, rank_corr,
                                           rank_corr_random, ratio_to_dense, reduce_levels,
                                           ticket_vs_dense, variant_gap)
from lthlib.report.claims.verdict_rules import (Above, Below, EveryLevel, MaxNear, Monotone, Near,
                                                RatioNear, Rule)

__all__ = ["CLAIMS", "Claim", "claim", "get_claim", "claims_table", "TESTING_PROFILES",
           "CSV_COLUMNS"]

CSV_COLUMNS = ("claim", "statement", "paper", "ours", "ci_low", "ci_high", "verdict",
               "evidence", "rule", "profile", "trials", "dataset", "levels", "detail", "group",
               "ours_is", "verdict_note", "control", "control_ours", "control_ci_low",
               "control_ci_high", "control_verdict")
GROUPS = ("figures", "appendix", "beyond the paper")  # sections of the ledger
EVIDENCE = ("counted", "indicative")  # "counted": in the totals; "indicative": shown apart
COUNTED_PROFILE = "paper"
# Profiles besides "paper" that a chapter names as able to test a figure's claims: their
# verdicts count in the totals. One line per figure. Figure 8: ResNet-18 trained to within
# 1 pp of its plateau (runs/plateau), the smallest budget that can show its claims on a CPU.
TESTING_PROFILES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"8": ("converged-cpu",)})


@dataclass(frozen=True)
class Control:
    """What a claim's effect must not also show: judged by the claim's own rule."""

    label: str
    compute: Callable[[Evidence], Measured]
    sampling: Sampling | None = None


@dataclass(frozen=True)
class Claim:
    """One numeric claim: what the paper says and how we measure and judge it."""

    id: str
    figure: str
    statement: str
    paper: str  # the paper's value as printed in the ledger
    needs: tuple[Need, ...]
    compute: Callable[[Evidence], Measured]  # None when a level or variant is missing
    rule: Rule
    datasets: tuple[str, ...] | None = None  # None: any dataset; else only these
    reaches: float | None = None  # smallest Pm the statement covers (judged on needs[0])
    group: str = "figures"
    # the test set's sampling error of the number: the least half-width / 1.96 of its interval
    sampling: Sampling | None = None
    control: Control | None = None
    # one network's test-set sampling error on the dataset: the least tolerance of a Near
    tolerance_se: Callable[[Evidence], float | None] | None = None

    def criterion(self, rule: Rule | None = None) -> str:
        """The verdict rule in words (``rule``: as applied on a dataset), with this claim's
        numbers filled in."""
        text = (rule or self.rule).text()
        if self.reaches is not None:
            text += (f"; at most partly while the stored tickets stop short of Pm "
                     f"{100 * self.reaches:.3g}% by more than one 20% round")
        return text

    def counted(self, profile: str) -> bool:
        """Whether a verdict at ``profile`` counts as evidence (else it is indicative)."""
        return profile == COUNTED_PROFILE or profile in TESTING_PROFILES.get(self.figure, ())


def claim(id: str, figure: str, statement: str, paper: str, needs: tuple[Need, ...],
          compute: Callable[[Evidence], Measured], rule: Rule,
          datasets: tuple[str, ...] | None = None, reaches: float | None = None,
          group: str = "figures", sampling: Sampling | None = None,
          control: Control | None = None,
          tolerance_se: Callable[[Evidence], float | None] | None = None) -> Claim:
    """A :class:`Claim`, with its group checked against :data:`GROUPS`."""
    return Claim(id, figure, statement, paper, needs, compute, rule, datasets, reaches,
                 check_choice("group", group, GROUPS), sampling, control, tolerance_se)


# --- the ledger ------------------------------------------------------------------------------
# Tolerances and margins are our choice and are printed in every rule. LeNet accuracy
# equalities: +/- 0.25 pp, half the paper's 0.5 pp ticket-vs-re-init effect, so a band for
# "no difference" cannot hold an effect the paper counts as real; but never less than one
# network's test-set sampling error on the dataset (0.1 pp on MNIST, 0.3 pp on
# FashionMNIST at their accuracies), which the rule prints beside it. Fractions and ratios of
# early-stop iterations: a quarter of the value either way (+/- 0.1 on 0.38, a factor 1.25).
# ResNet-18: +/- 0.5 pp between settings and +/- 1 pp on CIFAR-10 accuracies, which the
# paper's Figure 8 gives to one decimal from curves of a few trials; "no winning tickets" is
# a gap below +0.5 pp, the same margin.

_WIDE, _MID = (0.999, 0.118), (0.417, 0.219)  # Figure 8's Pm ranges (hi, lo)


def _gap(need: Need, levels: tuple[float, float]) -> Callable[[Evidence], Measured]:
    """Mean ticket-minus-re-init gap (pp) over the pruned levels of ``need`` in ``levels``."""
    return reduce_levels(gaps_by_level(need, FINAL_ACC, *levels), "mean")


CLAIMS: tuple[Claim, ...] = (
    # Figure 1: one-shot tickets against randomly sampled sparse networks.
    claim("fig1-random-slower-when-sparser", "1",
          "Random sparse networks reach early stop later the sparser they are "
          "(each trial's rank correlation of Pm with early-stop iteration, averaged).", "-1 (monotone)", (ONESHOT,),
          rank_corr_random(ONESHOT, ES), Monotone(-1),
          control=Control("one-shot tickets", rank_corr(ONESHOT, ES, "ticket"))),
    claim("fig1-random-less-accurate-when-sparser", "1",
          "Random sparse networks lose test accuracy the sparser they are "
          "(each trial's rank correlation of Pm with test accuracy at early stop, averaged).", "+1 (monotone)",
          (ONESHOT,), rank_corr_random(ONESHOT, ES_ACC), Monotone(+1),
          control=Control("one-shot tickets", rank_corr(ONESHOT, ES_ACC, "ticket"))),
    claim("fig1-ticket-faster-than-random", "1",
          "Tickets reach early stop before random sparse networks of the same Pm, at every "
          "level (ES random - ES ticket per level, iterations; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,),
          gaps_by_level(ONESHOT, ES, 1.0, 0.0, "random", scale=1.0, flip=True),
          EveryLevel(0.0, "above", IT)),
    claim("fig1-ticket-more-accurate-than-random", "1",
          "Tickets are more accurate at early stop than random sparse networks of the same "
          "Pm, at every level (ticket - random per level, pp; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,), gaps_by_level(ONESHOT, ES_ACC, 1.0, 0.0, "random"),
          EveryLevel(0.0, "above", PP)),
    # Figure 3: iterative tickets' test accuracy over training.
    claim("fig3-51pct-learns-faster", "3",
          "At Pm 51.3% the ticket leads the dense network while the latter learns "
          "(mean test-accuracy lead, pp).", "> 0 pp", (IMP,),
          lambda ev: learning_advantage(ev, 0.513), Above(0.0, PP),
          control=Control("re-initialised network at Pm 51.3%",
                          lambda ev: learning_advantage(ev, 0.513, "reinit"))),
    claim("fig3-51pct-higher-accuracy", "3",
          "At Pm 51.3% the ticket's peak test accuracy beats the dense network's (each "
          "trial's peak gain, averaged; pp).",
          "> 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.513), Above(0.0, PP),
          control=Control("re-initialised network at Pm 51.3%",
                          lambda ev: peak_gain(ev, 0.513, "reinit"))),
    claim("fig3-21pct-faster-still", "3",
          "At Pm 21.1% the ticket learns faster still: its lead over the dense network "
          "exceeds the 51.3% ticket's (pp).", "> 0 pp", (IMP,),
          lambda ev: difference(learning_advantage(ev, 0.211), learning_advantage(ev, 0.513)),
          Above(0.0, PP)),
    claim("fig3-below-21pct-slows", "3",
          "Below 21.1% learning slows: the 7.0% ticket's lead is smaller than the 21.1% "
          "ticket's (pp).", "> 0 pp", (IMP,),
          lambda ev: difference(learning_advantage(ev, 0.211), learning_advantage(ev, 0.07)),
          Above(0.0, PP)),
    claim("fig3-3.6pct-regresses-to-dense", "3",
          "At Pm 3.6% the ticket's peak test accuracy is back at the dense network's (each "
          "trial's peak gain, averaged; pp).",
          "≈ 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.036), Near(0.0, 0.25, PP),
          tolerance_se=network_se((IMP,))),
    # Figure 4a: iterative pruning, early stop.
    claim("fig4a-early-stop-38pct-earlier", "4a",
          "At Pm 21.1% tickets reach early stop 38% earlier than the dense network "
          "(1 - ES(21.1%) / ES(100%)).", "0.38", (IMP,),
          lambda ev: difference(1.0, ratio_to_dense(IMP, ES, 0.211)(ev)), Near(0.38, 0.1),
          control=Control("re-initialised networks at Pm 21.1%", lambda ev: difference(
              1.0, ratio_to_dense(IMP, ES, 0.211, "reinit")(ev)))),
    claim("fig4a-early-stop-back-at-3.6pct", "4a",
          "At Pm 3.6% tickets' early stop is back at the dense network's "
          "(ES(3.6%) / ES(100%)).", "≈ 1.0", (IMP,), ratio_to_dense(IMP, ES, 0.036),
          RatioNear(1.0, 1.25)),
    claim("fig4a-test-acc-gain-13.5pct", "4a",
          "At Pm 13.5% tickets' test accuracy at early stop beats the dense network's by "
          "more than 0.3 pp.", "> 0.3 pp", (IMP,),
          ticket_vs_dense(IMP, ES_ACC, 0.135, scale=100), Above(0.3, PP),
          control=Control("re-initialised networks at Pm 13.5%",
                          ticket_vs_dense(IMP, ES_ACC, 0.135, "reinit", scale=100))),
    claim("fig4a-test-acc-back-at-3.6pct", "4a",
          "At Pm 3.6% tickets' test accuracy at early stop is back at the dense level (pp).",
          "≈ 0 pp", (IMP,), ticket_vs_dense(IMP, ES_ACC, 0.036, scale=100),
          Near(0.0, 0.25, PP), tolerance_se=network_se((IMP,), ES_ACC)),
    claim("fig4a-ticket-holds-to-3.6pct", "4a",
          "Tickets' test accuracy at early stop does not drop below the dense network's "
          "before Pm 2.9% (ticket - dense at every pruned level with Pm >= 3.3%, pp; ours: "
          "the weakest level).", ">= 0 pp", (IMP,),
          gaps_by_level(IMP, ES_ACC, 1.0, 0.033, "dense"), EveryLevel(0.0, "above", PP),
          control=Control("re-initialised networks",
                          gaps_by_level(IMP, ES_ACC, 1.0, 0.033, "dense", variant="reinit"))),
    claim("fig4a-train-acc-gain-13.5pct", "4a",
          "Training accuracy at early stop follows the test accuracy: the 13.5% ticket beats "
          "the dense network (pp).", "> 0 pp", (IMP,),
          ticket_vs_dense(IMP, ES_TRAIN, 0.135, scale=100), Above(0.0, PP),
          control=Control("re-initialised networks at Pm 13.5%",
                          ticket_vs_dense(IMP, ES_TRAIN, 0.135, "reinit", scale=100))),
    claim("fig4a-reinit-slower-than-dense", "4a",
          "Re-initialised networks learn slower than the dense network (ES reinit 21.1% / "
          "ES dense).", "> 1", (IMP,), ratio_to_dense(IMP, ES, 0.211, "reinit"),
          Above(1.0, "x")),
    claim("fig4a-reinit-below-dense-at-21pct", "4a",
          "At Pm 21.1% re-initialised networks are less accurate at early stop than the "
          "dense network (pp).", "< 0 pp", (IMP,),
          ticket_vs_dense(IMP, ES_ACC, 0.211, "reinit", scale=100), Below(0.0, PP)),
    claim("fig4a-ticket-2.51x-faster-than-reinit", "4a",
          "At Pm 21.1% tickets reach minimum validation loss 2.51x faster than when "
          "re-initialised (ES reinit / ES ticket).", "2.51x", (IMP,),
          lambda ev: quotient(value_at(ev, IMP, ES, 0.211, "reinit"),
                            value_at(ev, IMP, ES, 0.211)), RatioNear(2.51, 1.25)),
    claim("fig4a-ticket-0.5pp-more-accurate-than-reinit", "4a",
          "At Pm 21.1% tickets are 0.5 pp more accurate at early stop than re-initialised "
          "ones.", "+0.5 pp", (IMP,), variant_gap(IMP, ES_ACC, 0.211), Near(0.5, 0.25, PP),
          tolerance_se=network_se((IMP,), ES_ACC)),
    # Figure 4b / 12: end of training.
    claim("fig4b-final-acc-gain-up-to-0.35pp", "4b",
          "At the end of training iterative tickets still beat the dense network's test "
          "accuracy, by up to 0.35 pp (best pruned level, pp; ours: the best level).",
          "+0.35 pp", (IMP,), gaps_by_level(IMP, FINAL_ACC, 1.0, 0.0, "dense"),
          MaxNear(0.35, 0.25, PP), tolerance_se=network_se((IMP,))),
    claim("fig12-train-acc-100-pm-ge-2pct", "12",
          "Iterative tickets reach ≈100% training accuracy at the end of training for "
          "Pm >= 2% (each level's mean, %; ours: the weakest level).", "≈ 100%", (IMP,),
          levels_of(IMP, FINAL_TRAIN, 0.02), EveryLevel(99.5, "above", "%")),
    claim("fig12-all-train-acc-100-pm-ge-5pct", "12",
          "Tickets and re-initialised networks all reach ≈100% training accuracy for "
          "Pm >= 5% (each level's mean, %; ours: the weakest level).", "≈ 100%", (IMP,),
          levels_of(IMP, FINAL_TRAIN, 0.05, ("ticket", "reinit")),
          EveryLevel(99.5, "above", "%")),
    # Figure 4c: one-shot pruning.
    claim("fig4c-oneshot-earlier-67.5-17.6", "4c",
          "One-shot tickets reach early stop before the dense network for 67.5% >= Pm >= "
          "17.6% (ES dense - ES ticket per level, iterations; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,),
          gaps_by_level(ONESHOT, ES, 0.675, 0.176, "dense", scale=1.0, flip=True),
          EveryLevel(0.0, "above", IT),
          control=Control("random sparse networks",
                          gaps_by_level(ONESHOT, ES, 0.675, 0.176, "dense", scale=1.0,
                                        flip=True, variant="random"))),
    claim("fig4c-oneshot-more-accurate-95-5.17", "4c",
          "One-shot tickets are more accurate at early stop than the dense network for "
          "95% >= Pm >= 5.17% (ticket - dense per level, pp; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,),
          gaps_by_level(ONESHOT, ES_ACC, 0.95, 0.0517, "dense"), EveryLevel(0.0, "above", PP),
          control=Control("random sparse networks",
                          gaps_by_level(ONESHOT, ES_ACC, 0.95, 0.0517, "dense",
                                        variant="random"))),
    claim("fig4c-iterative-faster-at-small-pm", "4c",
          "At small sizes (Pm <= 10%) iterative tickets reach early stop before one-shot ones "
          "(ES one-shot - ES iterative per level, iterations; ours: the weakest level).",
          "> 0 at all levels", (IMP, ONESHOT), iterative_vs_oneshot(ES, "lower"),
          EveryLevel(0.0, "above", IT)),
    claim("fig4c-iterative-more-accurate-at-small-pm", "4c",
          "At small sizes (Pm <= 10%) iterative tickets are more accurate at early stop than "
          "one-shot ones (iterative - one-shot per level, pp; ours: the weakest level).",
          "> 0 at all levels", (IMP, ONESHOT), iterative_vs_oneshot(ES_ACC, "higher"),
          EveryLevel(0.0, "above", PP)),
    # Figure 8: ResNet-18, global iterative pruning, test accuracy at the end of training.
    # Judged on the three settings of the paper (lr 0.1, lr 0.01, lr 0.03 with warmup); the
    # stored late-rewinding trials follow an older definition and are no setting here.
    claim("fig8-lr0.1-dense-90.5pct", "8",
          "The unpruned ResNet-18 at lr 0.1 reaches 90.5% test accuracy (CIFAR-10 only).",
          "90.5%", (FIG8["lr0.1"],), pct_at(FIG8["lr0.1"], FINAL_ACC, 1.0),
          Near(90.5, 1.0, "%"), ("cifar10",), sampling=sampling_floor((FIG8["lr0.1"],), 1),
          tolerance_se=network_se((FIG8["lr0.1"],))),
    claim("fig8-lr0.1-no-winning-tickets", "8",
          "At lr 0.1 there are no winning tickets: tickets match re-initialised networks "
          "(mean gap for Pm >= 11.8%, pp).", "≈ 0 pp", (FIG8["lr0.1"],),
          _gap(FIG8["lr0.1"], _WIDE), Near(0.0, 0.5, PP), reaches=0.118,
          sampling=sampling_floor((FIG8["lr0.1"],), levels=_WIDE),
          tolerance_se=network_se((FIG8["lr0.1"],))),
    claim("fig8-lr0.01-best-ticket-89.5pct", "8",
          "At lr 0.01 the best ticket reaches 89.5% for 41.7% >= Pm >= 21.9% (CIFAR-10 only; "
          "ours: the best level).", "89.5%", (FIG8["lr0.01"],),
          levels_of(FIG8["lr0.01"], FINAL_ACC, 0.219, pm_max=0.417),
          MaxNear(89.5, 1.0, "%"), ("cifar10",), reaches=0.219,
          sampling=sampling_floor((FIG8["lr0.01"],), 1),
          tolerance_se=network_se((FIG8["lr0.01"],))),
    claim("fig8-lr0.01-ticket-beats-reinit", "8",
          "At lr 0.01 tickets beat re-initialised networks for 41.7% >= Pm >= 21.9% "
          "(mean gap, pp).", "> 0 pp", (FIG8["lr0.01"], FIG8["lr0.1"]),
          _gap(FIG8["lr0.01"], _MID), Above(0.0, PP), reaches=0.219,
          sampling=sampling_floor((FIG8["lr0.01"],), levels=_MID),
          control=Control("lr 0.1, same levels", _gap(FIG8["lr0.1"], _MID),
                          sampling_floor((FIG8["lr0.1"],), levels=_MID))),
    claim("fig8-lr0.01-advantage-exceeds-lr0.1", "8",
          "The ticket advantage is a matter of the learning rate: at lr 0.01 tickets beat "
          "re-initialised networks by more than at lr 0.1 (41.7% >= Pm >= 21.9%; mean gap at "
          "lr 0.01 minus mean gap at lr 0.1, paired by seed, pp).", "> 0 pp",
          (FIG8["lr0.01"], FIG8["lr0.1"]),
          contrast(_gap(FIG8["lr0.01"], _MID), _gap(FIG8["lr0.1"], _MID)), Above(0.0, PP),
          reaches=0.219,
          sampling=sampling_floor((FIG8["lr0.01"], FIG8["lr0.1"]), 4, levels=_MID)),
    claim("fig8-lr0.01-short-of-dense-lr0.1", "8",
          "At lr 0.01 the best ticket (41.7% >= Pm >= 21.9%) stays short of the unpruned "
          "network at lr 0.1 (each level's ticket minus that network, paired by seed, pp; "
          "ours: the weakest level).", "-1.0 pp (89.5 vs 90.5)",
          (FIG8["lr0.01"], FIG8["lr0.1"]),
          levels_of(FIG8["lr0.01"], FINAL_ACC, 0.219, pm_max=0.417, minus=FIG8["lr0.1"]),
          EveryLevel(0.0, "below", PP), reaches=0.219,
          sampling=sampling_floor((FIG8["lr0.01"], FIG8["lr0.1"]))),
    claim("fig8-warmup-90.5pct-at-27.1pct", "8",
          "With warmup (lr 0.03) the ticket at Pm 27.1% reaches 90.5% (CIFAR-10 only).",
          "90.5%", (FIG8["lr0.03-warmup"],), pct_at(FIG8["lr0.03-warmup"], FINAL_ACC, 0.271),
          Near(90.5, 1.0, "%"), ("cifar10",),
          sampling=sampling_floor((FIG8["lr0.03-warmup"],), 1),
          tolerance_se=network_se((FIG8["lr0.03-warmup"],))),
    claim("fig8-warmup-matches-dense-lr0.1", "8",
          "With warmup the ticket at Pm 27.1% matches the unpruned network at lr 0.1 (paired "
          "by seed, pp).", "0 pp (90.5 vs 90.5)", (FIG8["lr0.03-warmup"], FIG8["lr0.1"]),
          lambda ev: difference(value_at(ev, FIG8["lr0.03-warmup"], FINAL_ACC, 0.271),
                                value_at(ev, FIG8["lr0.1"], FINAL_ACC, 1.0), 100.0),
          Near(0.0, 0.5, PP), reaches=0.271,
          sampling=sampling_floor((FIG8["lr0.03-warmup"], FIG8["lr0.1"])),
          tolerance_se=network_se((FIG8["lr0.03-warmup"], FIG8["lr0.1"]))),
    claim("fig8-warmup-winning-to-11.8pct", "8",
          "With warmup tickets still beat re-initialised networks for Pm >= 11.8% "
          "(ticket - re-init per level, pp; ours: the weakest level).", "> 0 at all levels",
          (FIG8["lr0.03-warmup"], FIG8["lr0.1"]),
          gaps_by_level(FIG8["lr0.03-warmup"], FINAL_ACC, *_WIDE),
          EveryLevel(0.0, "above", PP), reaches=0.118,
          sampling=sampling_floor((FIG8["lr0.03-warmup"],)),
          control=Control("lr 0.1, same levels", gaps_by_level(FIG8["lr0.1"], FINAL_ACC, *_WIDE),
                          sampling_floor((FIG8["lr0.1"],)))),
    claim("fig8-warmup-advantage-exceeds-lr0.1", "8",
          "Warmup restores winning tickets: with warmup tickets beat re-initialised networks "
          "by more than at lr 0.1 (Pm >= 11.8%; mean gap with warmup minus mean gap at lr "
          "0.1, paired by seed, pp).", "> 0 pp", (FIG8["lr0.03-warmup"], FIG8["lr0.1"]),
          contrast(_gap(FIG8["lr0.03-warmup"], _WIDE), _gap(FIG8["lr0.1"], _WIDE)),
          Above(0.0, PP), reaches=0.118,
          sampling=sampling_floor((FIG8["lr0.03-warmup"], FIG8["lr0.1"]), 4, levels=_WIDE)),
)


def get_claim(claim_id: str) -> Claim:
    """The claim called ``claim_id`` (ValueError naming the known ids)."""
    ids = tuple(c.id for c in CLAIMS)
    return CLAIMS[ids.index(check_choice("claim", claim_id, ids))]


def claims_table(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """The ledger's definitions for the book: id, figure, statement, paper, needs, rule."""
    return pd.DataFrame([{"claim": c.id, "figure": c.figure, "group": c.group,
                          "statement": c.statement, "paper": c.paper,
                          "needs": ", ".join(map(need_key, c.needs)),
                          "verdict rule": c.criterion()} for c in claims])


def round_value(x: float | None) -> float | None:
    """A ledger number as stored in ``claims.csv``: 4 decimals, None when not finite."""
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def ledger_row(c: Claim, dataset: str) -> dict[str, Any]:
    """The ledger row of ``c`` on ``dataset`` before it is judged: "not run", no numbers."""
    return {"claim": c.id, "statement": c.statement, "paper": c.paper, "ours": None,
            "ci_low": None, "ci_high": None, "verdict": "not run", "evidence": "",
            "rule": c.criterion(), "profile": "", "trials": None, "dataset": dataset,
            "levels": None, "detail": "", "group": c.group, "ours_is": "",
            "verdict_note": "", "control": c.control.label if c.control else "",
            "control_ours": None, "control_ci_low": None, "control_ci_high": None,
            "control_verdict": ""}


def ledger_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Ledger rows as a DataFrame with :data:`CSV_COLUMNS` and nullable number columns."""
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    for col in ("ours", "ci_low", "ci_high", "control_ours", "control_ci_low",
                "control_ci_high"):
        df[col] = df[col].astype("Float64")
    for col in ("trials", "levels"):
        df[col] = df[col].astype("Int64")
    return df

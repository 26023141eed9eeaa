"""The claims ledger: every numeric claim of the paper's Figures 1, 3, 4a, 4b/12, 4c and 8 as
data, with the function that measures it on our results and the rule that turns the
measurement into a verdict. No verdict is typed by hand: :func:`evaluate_claims` computes
each one from the ``runs/`` store, and :func:`write_claims_csv` writes ``runs/claims.csv``.

Each claim's number is a mean over trials, given with a 95% bootstrap interval over those
trials (:mod:`lthlib.verdicts`): the bootstrap draws whole trials, so a ticket is always
compared with the re-init, dense network or one-shot run of its own seed (paired). The
verdict is the claim's rule applied to that interval: ``reproduced``, ``partly``,
``inconclusive`` (the trials cannot tell), ``not reproduced``, or ``not run`` (the
experiment, the Pm level, or the dataset a claim needs is missing).

Only verdicts at the ``paper`` profile, or at a profile named in :data:`TESTING_PROFILES` for
the claim's figure, count as evidence; verdicts from shortened profiles are "indicative".

The measurements live in :mod:`lthlib.evidence` (Pm levels are matched there, within
:data:`~lthlib.evidence.PM_REL_TOL`). To add a claim, append a :func:`claim` to
:data:`CLAIMS` (or to a new tuple joined to it) with a ``group`` (:data:`GROUPS`) and a rule
object from :mod:`lthlib.verdicts`; its ``compute`` returns one value per row of the trial
weights (:func:`~lthlib.evidence.per_trial` turns a number computed on each trial's rows into
one).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .config import (PROFILE_ORDER, PROFILES, ExperimentConfig, check_choice,
                     experiment_from_dict)
from .evidence import (ES, ES_ACC, ES_TRAIN, FIG8, FINAL_ACC, FINAL_TRAIN, IMP, IT, ONESHOT,
                       PM_REL_TOL, PP, Evidence, LevelValues, Measured, Need, best_ticket,
                       difference, gaps_by_level, iterative_vs_oneshot, learning_advantage,
                       nearest_level, need_key, peak_gain, pct_at, per_trial, quotient,
                       rank_corr_random, ratio_to_dense, reduce_levels, ticket_vs_dense,
                       trial_values, value_at, variant_gap, worst_level)
from .store import RunStore, atomic_write_text, df_to_csv_text, resolve_runs_dir
from .verdicts import (BOOTSTRAP_SEED, DRAWS, VERDICTS, Above, Below, EveryLevel, Interval,
                       Monotone, Near, RatioNear, Rule, bootstrap_draws, percentile_interval,
                       resample_counts)

__all__ = ["CLAIMS", "Claim", "Assessment", "Evidence", "claim", "get_claim", "claims_table",
           "assess", "evaluate_claims", "write_claims_csv", "ledger_summary", "claim_evidence",
           "trial_values", "per_trial", "nearest_level", "PM_REL_TOL", "VERDICTS",
           "TESTING_PROFILES"]

CSV_COLUMNS = ("claim", "statement", "paper", "ours", "ci_low", "ci_high", "verdict",
               "evidence", "rule", "profile", "trials", "dataset", "levels", "detail", "group")
GROUPS = ("figures", "appendix", "beyond the paper")  # sections of the ledger
EVIDENCE = ("counted", "indicative")  # "counted": in the totals; "indicative": shown apart
COUNTED_PROFILE = "paper"
# Profiles besides "paper" that a chapter names as able to test a figure's claims: their
# verdicts count in the totals. One line per figure, e.g. ``"8": ("converged-cpu",)``.
TESTING_PROFILES: Mapping[str, tuple[str, ...]] = MappingProxyType({})


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

    def criterion(self) -> str:
        """The verdict rule in words, with this claim's numbers filled in."""
        text = self.rule.text()
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
          group: str = "figures") -> Claim:
    """A :class:`Claim`, with its group checked against :data:`GROUPS`."""
    return Claim(id, figure, statement, paper, needs, compute, rule, datasets, reaches,
                 check_choice("group", group, GROUPS))


# --- the ledger ------------------------------------------------------------------------------
# Tolerances and margins are our choice and are printed in every rule. LeNet accuracy
# equalities: +/- 0.25 pp, half the paper's 0.5 pp ticket-vs-re-init effect, so a band for
# "no difference" cannot hold an effect the paper counts as real. Fractions and ratios of
# early-stop iterations: a quarter of the value either way (+/- 0.1 on 0.38, a factor 1.25).
# ResNet-18: +/- 0.5 pp between settings and +/- 1 pp on CIFAR-10 accuracies, which the
# paper's Figure 8 gives to one decimal from curves of a few trials; "no winning tickets" is
# a gap below +0.5 pp, the same margin.

CLAIMS: tuple[Claim, ...] = (
    # Figure 1: one-shot tickets against randomly sampled sparse networks.
    claim("fig1-random-slower-when-sparser", "1",
          "Random sparse networks reach early stop later the sparser they are "
          "(rank correlation of Pm with early-stop iteration).", "-1 (monotone)", (ONESHOT,),
          rank_corr_random(ONESHOT, ES), Monotone(-1)),
    claim("fig1-random-less-accurate-when-sparser", "1",
          "Random sparse networks lose test accuracy the sparser they are "
          "(rank correlation of Pm with test accuracy at early stop).", "+1 (monotone)",
          (ONESHOT,), rank_corr_random(ONESHOT, ES_ACC), Monotone(+1)),
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
          lambda ev: learning_advantage(ev, 0.513), Above(0.0, PP)),
    claim("fig3-51pct-higher-accuracy", "3",
          "At Pm 51.3% the ticket's peak test accuracy beats the dense network's (pp).",
          "> 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.513), Above(0.0, PP)),
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
          "At Pm 3.6% the ticket's peak test accuracy is back at the dense network's (pp).",
          "≈ 0 pp", (IMP,), lambda ev: peak_gain(ev, 0.036), Near(0.0, 0.25, PP)),
    # Figure 4a: iterative pruning, early stop.
    claim("fig4a-early-stop-38pct-earlier", "4a",
          "At Pm 21.1% tickets reach early stop 38% earlier than the dense network "
          "(1 - ES(21.1%) / ES(100%)).", "0.38", (IMP,),
          lambda ev: difference(1.0, ratio_to_dense(IMP, ES, 0.211)(ev)), Near(0.38, 0.1)),
    claim("fig4a-early-stop-back-at-3.6pct", "4a",
          "At Pm 3.6% tickets' early stop is back at the dense network's "
          "(ES(3.6%) / ES(100%)).", "≈ 1.0", (IMP,), ratio_to_dense(IMP, ES, 0.036),
          RatioNear(1.0, 1.25)),
    claim("fig4a-test-acc-gain-13.5pct", "4a",
          "At Pm 13.5% tickets' test accuracy at early stop beats the dense network's by "
          "more than 0.3 pp.", "> 0.3 pp", (IMP,),
          ticket_vs_dense(IMP, ES_ACC, 0.135, scale=100), Above(0.3, PP)),
    claim("fig4a-test-acc-back-at-3.6pct", "4a",
          "At Pm 3.6% tickets' test accuracy at early stop is back at the dense level (pp).",
          "≈ 0 pp", (IMP,), ticket_vs_dense(IMP, ES_ACC, 0.036, scale=100),
          Near(0.0, 0.25, PP)),
    claim("fig4a-ticket-holds-to-3.6pct", "4a",
          "Tickets' test accuracy at early stop does not drop below the dense network's "
          "before Pm 2.9% (ticket - dense at every pruned level with Pm >= 3.3%, pp; ours: "
          "the weakest level).", ">= 0 pp", (IMP,),
          gaps_by_level(IMP, ES_ACC, 1.0, 0.033, "dense"), EveryLevel(0.0, "above", PP)),
    claim("fig4a-train-acc-gain-13.5pct", "4a",
          "Training accuracy at early stop follows the test accuracy: the 13.5% ticket beats "
          "the dense network (pp).", "> 0 pp", (IMP,),
          ticket_vs_dense(IMP, ES_TRAIN, 0.135, scale=100), Above(0.0, PP)),
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
          "ones.", "+0.5 pp", (IMP,), variant_gap(IMP, ES_ACC, 0.211), Near(0.5, 0.25, PP)),
    # Figure 4b / 12: end of training.
    claim("fig4b-final-acc-gain-up-to-0.35pp", "4b",
          "At the end of training iterative tickets still beat the dense network's test "
          "accuracy, by up to 0.35 pp (best pruned level, pp).", "+0.35 pp", (IMP,),
          reduce_levels(gaps_by_level(IMP, FINAL_ACC, 1.0, 0.0, "dense"), "max"),
          Near(0.35, 0.25, PP)),
    claim("fig12-train-acc-100-pm-ge-2pct", "12",
          "Iterative tickets reach ≈100% training accuracy at the end of training for "
          "Pm >= 2% (lowest level mean, %).", "≈ 100%", (IMP,),
          worst_level(IMP, FINAL_TRAIN, 0.02), Above(99.5, "%")),
    claim("fig12-all-train-acc-100-pm-ge-5pct", "12",
          "Tickets and re-initialised networks all reach ≈100% training accuracy for "
          "Pm >= 5% (lowest level mean, %).", "≈ 100%", (IMP,),
          worst_level(IMP, FINAL_TRAIN, 0.05, ("ticket", "reinit")), Above(99.5, "%")),
    # Figure 4c: one-shot pruning.
    claim("fig4c-oneshot-earlier-67.5-17.6", "4c",
          "One-shot tickets reach early stop before the dense network for 67.5% >= Pm >= "
          "17.6% (ES dense - ES ticket per level, iterations; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,),
          gaps_by_level(ONESHOT, ES, 0.675, 0.176, "dense", scale=1.0, flip=True),
          EveryLevel(0.0, "above", IT)),
    claim("fig4c-oneshot-more-accurate-95-5.17", "4c",
          "One-shot tickets are more accurate at early stop than the dense network for "
          "95% >= Pm >= 5.17% (ticket - dense per level, pp; ours: the weakest level).",
          "> 0 at all levels", (ONESHOT,),
          gaps_by_level(ONESHOT, ES_ACC, 0.95, 0.0517, "dense"), EveryLevel(0.0, "above", PP)),
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
    claim("fig8-lr0.1-dense-90.5pct", "8",
          "The unpruned ResNet-18 at lr 0.1 reaches 90.5% test accuracy (CIFAR-10 only).",
          "90.5%", (FIG8["lr0.1"],), pct_at(FIG8["lr0.1"], FINAL_ACC, 1.0),
          Near(90.5, 1.0, "%"), ("cifar10",)),
    claim("fig8-lr0.1-no-winning-tickets", "8",
          "At lr 0.1 there are no winning tickets: tickets do no better than re-initialised "
          "networks (mean gap for Pm >= 11.8%, pp).", "≈ 0 pp", (FIG8["lr0.1"],),
          reduce_levels(gaps_by_level(FIG8["lr0.1"], FINAL_ACC, 0.999, 0.118), "mean"),
          Below(0.5, PP), reaches=0.118),
    claim("fig8-lr0.01-best-ticket-89.5pct", "8",
          "At lr 0.01 the best ticket reaches 89.5% for 41.7% >= Pm >= 21.9% (CIFAR-10 only).",
          "89.5%", (FIG8["lr0.01"],), best_ticket(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219),
          Near(89.5, 1.0, "%"), ("cifar10",), reaches=0.219),
    claim("fig8-lr0.01-ticket-beats-reinit", "8",
          "At lr 0.01 tickets beat re-initialised networks for 41.7% >= Pm >= 21.9% "
          "(mean gap, pp).", "> 0 pp", (FIG8["lr0.01"],),
          reduce_levels(gaps_by_level(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219), "mean"),
          Above(0.0, PP), reaches=0.219),
    claim("fig8-lr0.01-short-of-dense-lr0.1", "8",
          "At lr 0.01 the best ticket (41.7% >= Pm >= 21.9%) stays short of the unpruned "
          "network at lr 0.1 (pp).", "-1.0 pp (89.5 vs 90.5)", (FIG8["lr0.01"], FIG8["lr0.1"]),
          lambda ev: difference(best_ticket(FIG8["lr0.01"], FINAL_ACC, 0.417, 0.219)(ev),
                          pct_at(FIG8["lr0.1"], FINAL_ACC, 1.0)(ev)),
          Below(0.0, PP), reaches=0.219),
    claim("fig8-warmup-90.5pct-at-27.1pct", "8",
          "With warmup (lr 0.03) the ticket at Pm 27.1% reaches 90.5% (CIFAR-10 only).",
          "90.5%", (FIG8["lr0.03-warmup"],), pct_at(FIG8["lr0.03-warmup"], FINAL_ACC, 0.271),
          Near(90.5, 1.0, "%"), ("cifar10",)),
    claim("fig8-warmup-matches-dense-lr0.1", "8",
          "With warmup the ticket at Pm 27.1% matches the unpruned network at lr 0.1 (pp).",
          "0 pp (90.5 vs 90.5)", (FIG8["lr0.03-warmup"], FIG8["lr0.1"]),
          lambda ev: difference(value_at(ev, FIG8["lr0.03-warmup"], FINAL_ACC, 0.271),
                          value_at(ev, FIG8["lr0.1"], FINAL_ACC, 1.0), 100.0),
          Near(0.0, 0.5, PP), reaches=0.271),
    claim("fig8-warmup-winning-to-11.8pct", "8",
          "With warmup tickets still beat re-initialised networks for Pm >= 11.8% "
          "(ticket - re-init per level, pp; ours: the weakest level).", "> 0 at all levels",
          (FIG8["lr0.03-warmup"],), gaps_by_level(FIG8["lr0.03-warmup"], FINAL_ACC, 0.999, 0.118),
          EveryLevel(0.0, "above", PP), reaches=0.118),
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


# --- judging a claim -------------------------------------------------------------------------

@dataclass(frozen=True)
class Assessment:
    """A claim judged on its evidence: our number with its interval, the verdict, the rule
    as applied (with the pairing and trial count), and per-level notes for level claims."""

    ours: float | None
    ci: Interval | None
    verdict: str
    rule: str = ""
    detail: str = ""

    @property
    def ci_low(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.low

    @property
    def ci_high(self) -> float | None:
        return None if self.ci is None or not self.ci.known else self.ci.high


NOT_RUN = Assessment(None, None, "not run")


def trial_draws(evidence: Evidence, keys: Sequence[str], draws: int = DRAWS,
                seed: int = BOOTSTRAP_SEED
                ) -> tuple[dict[str, np.ndarray], np.ndarray, int, bool]:
    """Bootstrap weights per need key, the probability of each draw, the trial count n, and
    whether the draws are paired.

    When every need holds the same seeds, one draw of seeds serves them all (paired: the
    ticket, its controls and the other experiment of a seed move together), exact up to
    :data:`~lthlib.verdicts.MAX_EXACT` trials, and n is that count. Otherwise each need is
    drawn on its own (seeded random draws) and n is the smallest count."""
    seeds = {k: evidence.seeds(k) for k in keys}
    if len(set(seeds.values())) == 1:
        n = len(next(iter(seeds.values())))
        d = bootstrap_draws(max(n, 1), draws, seed)
        return {k: d.counts for k in keys}, d.probs, n, True
    weights = {k: resample_counts(max(len(s), 1), draws, seed + i)
               for i, (k, s) in enumerate(seeds.items())}
    return weights, np.full(draws, 1.0 / draws), min(len(s) for s in seeds.values()), False


def _pm_text(pms: Sequence[float]) -> str:
    return ", ".join(f"{100 * p:.3g}%" for p in pms)


def _level_detail(pms: Sequence[float], verdicts: Sequence[str]) -> str:
    held = [p for p, v in zip(pms, verdicts) if v == "reproduced"]
    against = [p for p, v in zip(pms, verdicts) if v == "not reproduced"]
    unsure = [p for p, v in zip(pms, verdicts) if v == "inconclusive"]
    parts = [f"holds at {len(held)} of {len(pms)} levels"]
    if against:
        parts.append(f"contradicted at Pm {_pm_text(against)}")
    if unsure:
        parts.append(f"inconclusive at Pm {_pm_text(unsure)}")
    return "; ".join(parts)


def assess(claim: Claim, evidence: Evidence, draws: int = DRAWS,
           seed: int = BOOTSTRAP_SEED) -> Assessment:
    """``claim`` judged on ``evidence``: "not run" if anything is missing or the claim is
    restricted to other datasets; else the estimate over all trials, its bootstrap interval
    and the rule's verdict."""
    if claim.datasets is not None and evidence.dataset not in claim.datasets:
        return NOT_RUN
    keys = [need_key(n) for n in claim.needs]
    if any(evidence.summary(k) is None for k in keys):
        return NOT_RUN
    point = claim.compute(evidence)
    if point is None:
        return NOT_RUN
    weights, probs, n, paired = trial_draws(evidence, keys, draws, seed)
    boot = claim.compute(evidence.reweighted(weights))
    how = (f"{'paired' if paired else 'unpaired'} bootstrap over {n} trial"
           f"{'s' if n != 1 else ''}")
    rule = f"{claim.criterion()}; {how}"
    if isinstance(point, LevelValues) != isinstance(claim.rule, EveryLevel):
        raise TypeError(f"claim {claim.id!r}: per-level values go with an EveryLevel rule and "
                        f"single values with the others; got {type(claim.rule).__name__} for "
                        f"{'per-level values' if isinstance(point, LevelValues) else 'a value'}")
    if isinstance(point, LevelValues):
        ours, ci, verdict, detail = _judge_levels(claim, point, boot, n, probs)
    else:
        ci = percentile_interval(float(point[0]), boot, n, probs=probs)
        ours, verdict, detail = ci.estimate, claim.rule.verdict(ci), ""
        if not math.isfinite(ours):
            return NOT_RUN
    if verdict == "reproduced" and not reaches_depth(claim, evidence):
        verdict = "partly"  # the run stops above the sizes the statement is about
    if not ci.known:
        detail = "; ".join(filter(None, [detail, f"{n} trial(s): too few for an interval"]))
    return Assessment(ours, ci, verdict, rule, detail)


def _judge_levels(claim: Claim, point: LevelValues, boot: Measured, n: int,
                  probs: np.ndarray) -> tuple[float, Interval, str, str]:
    """Per-level intervals and verdicts; ours and the interval are those of the weakest
    level: a contradicting level first, else an inconclusive one, else any; among those, the
    one whose estimate lies least on the claimed side."""
    rule = claim.rule
    if not isinstance(rule, EveryLevel) or not isinstance(boot, LevelValues):
        raise TypeError(f"claim {claim.id!r}: per-level values need an EveryLevel rule")
    cis = [percentile_interval(float(point.values[i, 0]), boot.values[i], n, probs=probs)
           for i in range(len(point.pms))]
    verdicts = [rule.level_verdict(ci) for ci in cis]
    sign = 1 if rule.side == "above" else -1
    severity = {"not reproduced": 0, "inconclusive": 1, "reproduced": 2}
    weakest = min(range(len(cis)), key=lambda i: (severity[verdicts[i]], sign * cis[i].estimate))
    detail = _level_detail(point.pms, verdicts) + \
        f"; weakest level Pm {_pm_text([point.pms[weakest]])}"
    return cis[weakest].estimate, cis[weakest], rule.verdict(verdicts), detail


def reaches_depth(claim: Claim, evidence: Evidence) -> bool:
    """Whether the stored tickets of the claim's first need get down to ``claim.reaches``
    (within one 20% pruning round, i.e. the deepest Pm is at most 1.25 times it)."""
    if claim.reaches is None:
        return True
    s = evidence.summary(need_key(claim.needs[0]))
    return s is not None and len(s) > 0 and float(s["pm"].min()) <= 1.25 * claim.reaches


# --- reading the store -----------------------------------------------------------------------

GroupKey = tuple[str, str, str, str, str]  # experiment, arch, dataset, lr setting, profile


def store_inventory(runs_dir: str | Path | None = None) -> dict[GroupKey, ExperimentConfig]:
    """For each (experiment, arch, dataset, lr setting, profile) with finished trials, the
    multi-trial config covering them (the config variant with the most finished trials)."""
    store = RunStore(runs_dir)
    listing = store.list()
    if listing.empty or "status" not in listing:
        return {}
    groups: dict[GroupKey, dict[str, list[ExperimentConfig]]] = {}
    for rel in listing.loc[listing["status"] == "finished", "path"]:
        cfg = experiment_from_dict(json.loads((store.root / rel / "config.json").read_text()))
        key = (cfg.experiment, cfg.model.arch, cfg.data.dataset, cfg.lr_setting, cfg.profile)
        groups.setdefault(key, {}).setdefault(cfg.variant_id(), []).append(cfg)
    out = {}
    for key, variants in groups.items():
        # most trials, then most rounds; at a tie, fewer re-inits: the chapters' default
        # configs, so the ledger judges what the chapters plot (extensions are shown beside)
        cfgs = max(variants.values(),
                   key=lambda cs: (len(cs), cs[0].prune.rounds, -cs[0].reinits))
        seeds = sorted(c.seed for c in cfgs)
        out[key] = replace(cfgs[0], seed=seeds[0], trials=seeds[-1] - seeds[0] + 1)
    return out


def _group_key(need: Need, dataset: str, profile: str) -> GroupKey:
    return (need[0], need[1], dataset, need[2] if len(need) > 2 else "", profile)


def _profile_for(c: Claim, dataset: str, profiles: Sequence[str],
                 inventory: Mapping[GroupKey, ExperimentConfig]) -> str | None:
    """The first of ``profiles`` at which every experiment ``c`` needs is stored."""
    if c.datasets is not None and dataset not in c.datasets:
        return None
    return next((p for p in profiles
                 if all(_group_key(n, dataset, p) in inventory for n in c.needs)), None)


def _evidence(c: Claim, dataset: str, profile: str, load: Callable[[GroupKey], Any]
              ) -> tuple[Evidence, dict[str, Any]]:
    results = {need_key(n): load(_group_key(n, dataset, profile)) for n in c.needs}
    results = {k: r for k, r in results.items() if r.trials}
    ev = Evidence({k: r.summary for k, r in results.items()},
                  {k: r.metrics for k, r in results.items()}, dataset)
    return ev, results


def _loader(runs_dir: str | Path | None, inventory: Mapping[GroupKey, ExperimentConfig]
            ) -> Callable[[GroupKey], Any]:
    """Reads each stored experiment once (nothing is trained)."""
    from .experiments import run_experiment  # lazy: keeps this module light to import

    loaded: dict[GroupKey, Any] = {}

    def load(key: GroupKey) -> Any:
        if key not in loaded:
            loaded[key] = run_experiment(inventory[key], runs_dir, progress=False, allow=True,
                                         compute=False)
        return loaded[key]
    return load


def claim_evidence(claim: Claim | str, dataset: str, runs_dir: str | Path | None = None,
                   profile: str | None = None) -> tuple[Evidence | None, str]:
    """The evidence one claim is judged on in the ledger, and its profile ((None, "") when
    the store lacks it): for showing the trials behind a verdict."""
    c = get_claim(claim) if isinstance(claim, str) else claim
    profiles = (check_choice("profile", profile, PROFILES),) if profile else PROFILE_ORDER
    inventory = store_inventory(runs_dir)
    prof = _profile_for(c, check_choice("dataset", dataset, DATASETS), profiles, inventory)
    if prof is None:
        return None, ""
    return _evidence(c, dataset, prof, _loader(runs_dir, inventory))[0], prof


DATASETS = ("mnist", "fashionmnist", "cifar10")


def evaluate_claims(runs_dir: str | Path | None = None, datasets: Sequence[str] = DATASETS,
                    profile: str | None = None, claims: Sequence[Claim] = CLAIMS
                    ) -> pd.DataFrame:
    """The ledger: one row per claim and dataset with columns :data:`CSV_COLUMNS`.

    Each claim uses the largest profile (paper > quick > mini > smoke) at which every
    experiment it needs has finished trials in the store (or ``profile`` when given);
    ``trials`` is the number of trials the bootstrap draws (the smallest count among those
    experiments) and ``levels`` the smallest number of sparsity levels (dense included) among
    them, so a verdict from a deeper run (e.g. 7 global-IMP rounds beside 2) says so.
    ``evidence`` is "counted" at the paper profile or one in :data:`TESTING_PROFILES`, else
    "indicative". Nothing is trained.
    """
    profiles = (check_choice("profile", profile, PROFILES),) if profile else PROFILE_ORDER
    inventory = store_inventory(runs_dir)
    load = _loader(runs_dir, inventory)
    rows = []
    for ds in datasets:
        ds = check_choice("dataset", ds, DATASETS)
        for c in claims:
            row = {"claim": c.id, "statement": c.statement, "paper": c.paper, "ours": None,
                   "ci_low": None, "ci_high": None, "verdict": "not run", "evidence": "",
                   "rule": c.criterion(), "profile": "", "trials": None, "dataset": ds,
                   "levels": None, "detail": "", "group": c.group}
            prof = _profile_for(c, ds, profiles, inventory)
            if prof is not None:
                ev, results = _evidence(c, ds, prof, load)
                a = assess(c, ev)
                row.update(ours=_round(a.ours), ci_low=_round(a.ci_low),
                           ci_high=_round(a.ci_high), verdict=a.verdict,
                           rule=a.rule or row["rule"], detail=a.detail)
                if results:
                    row.update(profile=prof,
                               trials=a.ci.n if a.ci is not None else
                               min(len(r.trials) for r in results.values()),
                               levels=min(r.summary["level"].nunique()
                                          for r in results.values()))
                if a.verdict != "not run":
                    row["evidence"] = EVIDENCE[0] if c.counted(prof) else EVIDENCE[1]
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    for col in ("ours", "ci_low", "ci_high"):
        df[col] = df[col].astype("Float64")
    df["trials"] = df["trials"].astype("Int64")
    df["levels"] = df["levels"].astype("Int64")
    return df


def write_claims_csv(runs_dir: str | Path | None = None, path: str | Path | None = None,
                     **kwargs: Any) -> Path:
    """Evaluate the ledger and write it atomically (default ``<runs>/claims.csv``)."""
    df = evaluate_claims(runs_dir, **kwargs)
    out = Path(path) if path is not None else resolve_runs_dir(runs_dir) / "claims.csv"
    atomic_write_text(out, df_to_csv_text(df))
    return out


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def ledger_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per dataset. The verdict columns and ``counted`` hold only evidence
    (the ``paper`` profile and the profiles in :data:`TESTING_PROFILES`); ``indicative``
    counts verdicts from other profiles, which are in no verdict column; ``not run`` the
    rest. ``counted + indicative + not run`` is the number of claims."""
    datasets = list(dict.fromkeys(df["dataset"]))
    evidence = df.get("evidence", pd.Series("counted", index=df.index)).fillna("")
    ran = df["verdict"] != "not run"
    counted = df[ran & (evidence == "counted")]
    counts = pd.crosstab(counted["dataset"], counted["verdict"])
    counts = counts.reindex(index=datasets, columns=list(VERDICTS[:-1]), fill_value=0)
    counts["counted"] = counts.sum(axis=1)
    counts["indicative"] = (ran & (evidence == "indicative")).groupby(df["dataset"]).sum() \
        .reindex(datasets).astype(int)
    counts["not run"] = (~ran).groupby(df["dataset"]).sum().reindex(datasets).astype(int)
    counts.index.name, counts.columns.name = "dataset", None
    return counts

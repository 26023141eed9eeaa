"""The chapters' discussions: sentences that state what the stored results show, every
number computed from them (level means from :mod:`lthlib.report.analysis`, verdicts from
the ledger), so a chapter's prose changes when its results do and never disagrees with
its figures.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from lthlib.report.analysis import TICKET_PM, closest_level, level_means
from lthlib.report.context import Context
from lthlib.report.claims.views import claim_detail, claim_value
from lthlib.report.text import DATASET_NAMES, pct


def convergence_text(history: pd.DataFrame, stop: Mapping[str, Any]) -> str:
    """7.3 (f): does the dense network converge, and does it overfit after early stop?"""
    last = history.iloc[-1]
    overfit = last.val_loss > stop["early_stop_val_loss"]
    return (f"**(f) Does it converge?** Yes. Test accuracy reaches "
            f"{pct(stop['early_stop_test_acc'], 2)} at the early-stopping point (iteration "
            f"{stop['early_stop_iteration']:,}) and {pct(last.test_acc, 2)} after "
            f"{int(last.iteration):,} iterations; training accuracy ends at "
            f"{pct(last.train_acc, 2)}. Validation loss bottoms out at "
            f"{stop['early_stop_val_loss']:.4f} and ends at {last.val_loss:.4f}"
            + (", so the network keeps fitting the training set after the point where it "
               "generalises best: the reason early stopping matters." if overfit else
               ", still at its minimum: the budget ends before overfitting starts."))


def figure1_text(ctx: Context, verdicts: pd.DataFrame) -> str:
    """7.5 (b): the sparsest one-shot ticket against the random sparse network of its size,
    then the ledger's level-by-level verdict and the random networks' rank correlation."""
    name = DATASET_NAMES[ctx.dataset]
    s = ctx["oneshot"].summary
    t, r = level_means(s, "ticket"), level_means(s, "random")
    low = t.index.max()  # the sparsest one-shot level (level 0 is the dense network)
    if low == 0:
        return f"**{name}:** no pruned level stored yet."
    more = "fig1-ticket-more-accurate-than-random"
    _, v1 = claim_value(verdicts, more, ctx.dataset)
    levels = claim_detail(verdicts, more, ctx.dataset)
    corr, v2 = claim_value(verdicts, "fig1-random-slower-when-sparser", ctx.dataset)
    corr_text = "-" if corr is None else f"{corr:.2f}"
    levels = f" ({levels})" if levels else ""
    return (f"**{name}** ({ctx.profile}): at the sparsest level (Pm = {pct(t.pm[low])}) the "
            f"one-shot ticket reaches {pct(t.test_acc[low], 2)} test accuracy at early stop, "
            f"the random sparse network {pct(r.test_acc[low], 2)}; they early-stop at "
            f"iterations {t.es[low]:,.0f} and {r.es[low]:,.0f} (dense network: "
            f"{t.es[0]:,.0f}). Level by level, with each level's interval paired within "
            f"trials, tickets are more accurate than random sparse networks{levels}: {v1}. "
            f"The rank correlation of Pm with the random networks' early-stop iteration is "
            f"{corr_text} ({v2}).")


def imp_text(ctx: Context) -> str:
    """7.6 (d): the ticket nearest the paper's 21.1% against the dense network and its
    re-initialised copy, and the most accurate ticket."""
    name = DATASET_NAMES[ctx.dataset]
    t, r = (level_means(ctx["imp"].summary, v) for v in ("ticket", "reinit"))
    if len(t) < 2:
        return f"**{name}:** no pruned level stored yet."
    k = closest_level(t.pm, TICKET_PM)
    change, nan = 1 - t.es[k] / t.es[0], float("nan")
    return (f"**{name}** ({ctx.profile}): at Pm = {pct(t.pm[k])} the ticket early-stops at "
            f"iteration {t.es[k]:,.0f}, {abs(change):.0%} "
            f"{'earlier' if change >= 0 else 'later'} than the dense network "
            f"({t.es[0]:,.0f}), and at {r.es.get(k, nan):,.0f} when re-initialised; its test "
            f"accuracy there is {pct(t.test_acc[k], 2)}, against "
            f"{pct(r.test_acc.get(k, nan), 2)} re-initialised and "
            f"{pct(t.test_acc[0], 2)} dense. The most accurate ticket has Pm = "
            f"{pct(t.pm[t.test_acc.idxmax()])} ({pct(t.test_acc.max(), 2)}).")


def _rewinding_gaps(ctx: Context) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Ticket level means, and per pruned level ticket - re-init test accuracy at early stop
    and re-init - ticket early-stop iteration."""
    t, r = level_means(ctx["imp"].summary), level_means(ctx["imp"].summary, "reinit")
    return t, (t.test_acc - r.test_acc).dropna(), (r.es - t.es).dropna()


def rewinding_text(ctx: Context) -> str:
    """7.6 (e): at how many pruned levels the rewound ticket beats its re-initialised copy
    in test accuracy at early stop (and by how much on average), and stops earlier."""
    name = DATASET_NAMES[ctx.dataset]
    _, acc, es = _rewinding_gaps(ctx)
    if acc.empty:
        return f"**{name}:** no pruned level stored yet."
    return (f"**{name}** ({ctx.profile}): over {len(acc)} pruned levels the rewound ticket is "
            f"more accurate at early stop than its re-initialised copy at "
            f"{int((acc > 0).sum())} (mean {100 * acc.mean():+.2f} pp) and stops earlier at "
            f"{int((es > 0).sum())}.")


def sparsest_ticket_text(ctx: Context, network: str) -> str:
    """The rewound ticket against its re-initialised copy over the pruned levels, and the
    sparsest ticket against the dense ``network``."""
    t, acc, _ = _rewinding_gaps(ctx)
    if acc.empty:
        return "No pruned level is stored yet."
    return (f"Over the {len(acc)} pruned levels, the rewound ticket is more accurate at early "
            f"stop than its re-initialised copy at {int((acc > 0).sum())} (mean difference "
            f"{100 * acc.mean():+.2f} pp); the sparsest ticket (Pm = {pct(t.pm.iloc[-1])}) "
            f"reaches {pct(t.test_acc.iloc[-1], 2)} against {pct(t.test_acc.iloc[0], 2)} "
            f"for the dense {network}.")


def pruning_without_retraining_text(accuracy: pd.DataFrame, iterations: int) -> str:
    """The appendix's magnitude against random pruning of a trained network, no retraining
    (``accuracy``: index = fraction pruned, columns ``l1`` and ``random``)."""
    l1, rand = accuracy["l1"], accuracy["random"]
    keep = l1[l1 >= l1.iloc[0] - 0.01].index.max()
    lead = (l1 - rand)[accuracy.index > 0]
    return (f"Trained for {iterations:,} iterations the MLP reaches {pct(l1.iloc[0], 2)} test "
            f"accuracy. Magnitude pruning of up to {pct(keep, 0)} of the weights costs at "
            f"most one point without any retraining; random pruning of the same amounts is "
            f"worse by {100 * lead.mean():.1f} points on average over the pruned amounts. At "
            f"{pct(accuracy.index[-1], 0)} both are at {pct(l1.iloc[-1], 1)} and "
            f"{pct(rand.iloc[-1], 1)}: without retraining, very sparse networks lose what "
            f"they learned.")


def late_stop_text(summary: pd.DataFrame, name: str, share: float = 0.9) -> str:
    """What early stops near the end of the budget mean: a sentence counting the networks
    whose validation loss was still falling when training stopped."""
    if summary.empty:
        return ""
    budget = float(summary["final_iteration"].max())
    late = summary["early_stop_iteration"] >= share * budget
    first, last = summary["early_stop_iteration"].min(), summary["early_stop_iteration"].max()
    if not late.any():
        return (f"Every {name} network reached its lowest validation loss before "
                f"{100 * share:.0f}% of its {budget:,.0f}-iteration budget.")
    return (f"**Early stops at the end of the budget.** {int(late.sum())} of the "
            f"{len(summary)} {name} networks reached their lowest validation loss in the last "
            f"{100 * (1 - share):.0f}% of the {budget:,.0f}-iteration budget (early stops "
            f"from {first:,.0f} to {last:,.0f}). Their validation loss was still falling when "
            f"training stopped, so the early-stop iteration here measures the budget more than "
            f"the speed of learning: a faster ticket cannot show as an earlier stop, and "
            f"differences in accuracy say more than differences in early-stop iteration.")

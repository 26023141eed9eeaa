"""The claims ledger for reading: verdicts with their intervals as a table or a list, one
claim's number, the note on which profiles count, and the 2.51x claim worked through from
the stored trials.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.report.analysis import TICKET_PM, nearest_level
from lthlib.report.claims.paper_claims import (CLAIMS, COUNTED_PROFILE, CSV_COLUMNS,
                                               TESTING_PROFILES, get_claim)
from lthlib.report.context import Context
from lthlib.report.claims.evidence import ES, IMP, need_key, trial_values
from lthlib.report.claims.judge import assess
from lthlib.report.claims.claims_csv import claim_evidence, ledger
from lthlib.report.claims.intervals import CONFIDENCE, t_quantile, two_sided
from lthlib.report.text import DATASET_NAMES

CHAPTER_FIGURES = {"05_figure1": ("1",), "06_iterative_pruning": ("3", "4a", "4b", "12", "4c"),
                   "07_global_pruning": ("8",)}
LEDGER_COLUMNS = ["claim", "dataset", "statement", "paper", "ours", "95% CI", "verdict",
                  "profile", "trials", "levels"]



def chapter_ledger(contexts: list[Context | None], figures: tuple[str, ...] | None = None
                   ) -> pd.DataFrame:
    """Verdict rows of a chapter: its figures' claims, for each shown dataset at the profile
    shown for it."""
    parts = [ledger(c.runs_dir, [c.dataset], c.profile,
                    figures or CHAPTER_FIGURES.get(c.chapter.name))
             for c in contexts if c is not None]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CSV_COLUMNS)


def ledger_number(v: Any) -> str:
    """A ledger number for reading: thousands as whole numbers with commas (iterations),
    the rest to 3 significant digits; "-" when missing."""
    if v is None or pd.isna(v):
        return "-"
    v = float(v)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def ledger_interval(low: Any, high: Any) -> str:
    """``[low, high]`` for reading; "-" when the claim has no interval."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "-"
    return f"[{ledger_number(low)}, {ledger_number(high)}]"


def ours_cell(value: Any, ours_is: Any = "") -> str:
    """Our number for reading, labelled when it is one level's of many ("-20 (weakest level,
    Pm 80%)"), so a weakest or best level is never shown as the claim's whole number."""
    label = "" if ours_is is None or pd.isna(ours_is) else str(ours_is)
    number = ledger_number(value)
    return f"{number} ({label})" if label and number != "-" else number


def verdict_table(df: pd.DataFrame, statement: bool = True) -> pd.DataFrame:
    """The ledger formatted for reading: dataset names, rounded numbers with their 95%
    interval, verdicts from shortened profiles marked "indicative", no empty cells."""
    out = df.copy()
    out["dataset"] = out["dataset"].map(lambda d: DATASET_NAMES.get(d, d))
    out["95% CI"] = [ledger_interval(lo, hi) for lo, hi in zip(out["ci_low"], out["ci_high"])]
    labels = out["ours_is"].fillna("") if "ours_is" in out else pd.Series("", out.index)
    out["ours"] = [ours_cell(v, lab) for v, lab in zip(out["ours"], labels)]
    notes = out["verdict_note"].fillna("") if "verdict_note" in out else pd.Series("", out.index)
    evidence = out["evidence"].fillna("") if "evidence" in out else pd.Series("", out.index)
    out["verdict"] = [(f"**{v}**" if v != "not run" else v) + (f": {n}" if n else "")
                      + (" (indicative)" if e == "indicative" else "")
                      for v, e, n in zip(out["verdict"], evidence, notes)]
    for col in ("trials", "levels"):
        out[col] = [("-" if pd.isna(v) else str(int(v))) for v in out[col]]
    out["profile"] = out["profile"].replace("", "-")
    cols = [c for c in LEDGER_COLUMNS if statement or c != "statement"]
    return out[cols]


def verdict_list(df: pd.DataFrame) -> str:
    """The ledger rows as a Markdown list (reads better than a wide table in a chapter):
    verdict first, then the claim, the paper's value, ours with its 95% interval, the rule
    and, for claims about every level, the levels that hold, contradict or cannot tell."""
    if df.empty:
        return "*No claim of the ledger concerns this chapter.*"
    lines = []
    for r, raw in zip(verdict_table(df).to_dict("records"), df.to_dict("records")):
        where = (f"{r['dataset']}, {r['profile']}, {r['trials']} trial(s), {r['levels']} "
                 f"levels" if r["profile"] != "-" else r["dataset"])
        ci = f", 95% CI {r['95% CI']}" if r["95% CI"] != "-" else ""
        line = (f"- {r['verdict']} — {r['statement']} Paper: {r['paper']}; ours: "
                f"{r['ours']}{ci} ({where}). `{r['claim']}`")
        if raw["verdict"] != "not run":
            line += f"\n  - Rule: {raw['rule']}."
            if raw.get("detail"):
                line += f" {raw['detail'][0].upper()}{raw['detail'][1:]}."
            if raw.get("evidence") == "indicative":
                line += (f" Indicative only: the {raw['profile']} profile is not one that can "
                         f"test this claim, so the verdict is not counted in the totals.")
        lines.append(line)
    return "\n".join(lines)


def claim_value(df: pd.DataFrame, claim: str, dataset: str) -> tuple[float | None, str]:
    """(our number, verdict) of one ledger row; (None, "not run") when absent."""
    row = df[(df["claim"] == claim) & (df["dataset"] == dataset)]
    if row.empty:
        return None, "not run"
    ours = row["ours"].iloc[0]
    return (None if pd.isna(ours) else float(ours)), str(row["verdict"].iloc[0])


def claim_detail(df: pd.DataFrame, claim: str, dataset: str) -> str:
    """The per-level note of one ledger row (levels that hold, contradict, cannot tell)."""
    row = df[(df["claim"] == claim) & (df["dataset"] == dataset)]
    return "" if row.empty or "detail" not in row else str(row["detail"].iloc[0] or "")


def verdict_counts(df: pd.DataFrame) -> str:
    """One sentence counting a chapter's verdicts per dataset, saying where they are only
    indicative (a shortened profile)."""
    ran = df[df.verdict != "not run"]
    parts = []
    for d, g in ran.groupby("dataset"):
        counts = g.verdict.value_counts()
        shortened = (" (indicative: a shortened profile)" if (g.evidence == "indicative").any()
                     else "")
        parts.append(f"{DATASET_NAMES[d]}{shortened}: "
                     + ", ".join(f"{n} {v}" for v, n in counts.items()))
    text = "; ".join(parts) or "no claim could be evaluated"
    return (f"**Ledger for this chapter:** {text}. The rows above give each claim's measured "
            f"value and its 95% interval next to the paper's.")


def evidence_note(df: pd.DataFrame) -> str:
    """Which profiles count in the totals and how many verdicts are only indicative,
    computed from the ledger and :data:`lthlib.report.claims.paper_claims.TESTING_PROFILES`."""
    named = "; ".join(f"Figure {fig}: " + ", ".join(f"`{p}`" for p in profs)
                      for fig, profs in TESTING_PROFILES.items() if profs)
    text = (f"Counted: verdicts at the `{COUNTED_PROFILE}` profile"
            + (f", and at the profiles a chapter names as able to test its claims ({named})"
               if named else "; no chapter names another profile as able to test its claims "
                             "yet") + ".")
    ind = df[df.get("evidence", pd.Series("", index=df.index)) == "indicative"]
    if len(ind):
        figure = {c.id: c.figure for c in CLAIMS}
        order = list(dict.fromkeys(figure.values()))  # the ledger's order of figures

        def where(ids: pd.Series) -> str:
            figs = sorted({figure[x] for x in ids if x in figure}, key=order.index)
            named = ([("Figures " if len(figs) > 1 else "Figure ") + ", ".join(figs)]
                     if figs else [])
            return ", ".join(named + (["beyond the paper"] if any(
                x not in figure for x in ids) else []))

        parts = [f"{len(ids)} from the `{p}` profile ({where(ids)})"
                 for p, ids in ind.groupby("profile")["claim"]]
        text += (" Indicative, in their own column and in no verdict column: "
                 + "; ".join(parts) + ".")
    return text


def ratio_example(df: pd.DataFrame, runs_dir: str | Path | None = None,
                  claim_id: str = "fig4a-ticket-2.51x-faster-than-reinit") -> str:
    """The 2.51x claim worked from the stored trials, for each dataset the ledger judged it
    on: the per-trial early-stop iterations, the ratio of means, its jackknife t-interval, the
    paper's band and the verdict. Every number comes from the store and the claim's rule."""
    c = get_claim(claim_id)
    rule = c.rule
    lo, hi = rule.value / rule.factor, rule.value * rule.factor
    rows = df[(df["claim"] == claim_id) & (df["verdict"] != "not run")]
    if rows.empty:
        return "*The stored results do not reach this claim yet.*"
    out = []
    for r in rows.to_dict("records"):
        ev, prof = claim_evidence(c, r["dataset"], runs_dir, r["profile"])
        trials = trial_values(ev, IMP, ES, TICKET_PM)
        pms = ev.table(need_key(IMP), ES, "ticket")[0]
        pm = float(pms[nearest_level(pms, TICKET_PM)])
        a = assess(c, ev)
        its = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
        n = len(trials)
        text = (f"**{DATASET_NAMES.get(r['dataset'], r['dataset'])}** (`{prof}` profile, "
                f"{n} trial(s), seeds {its(trials.index)}). At Pm {100 * pm:.1f}% the tickets "
                f"reached early stop at iterations {its(trials.ticket)}; the same masks "
                f"re-initialised, at {its(trials.reinit)}. The claim's number is the mean "
                f"re-init iteration over the mean ticket iteration: "
                f"{trials.reinit.mean():,.0f} / {trials.ticket.mean():,.0f} = "
                f"**{a.ours:.2f}x**. ")
        if a.ci is None or not a.ci.known:
            text += (f"With {n} trial(s) there is no spread between trials to measure, so "
                     f"there is no interval and the verdict is **{a.verdict}**.")
        else:
            where = ("lies wholly inside that band" if a.verdict == "reproduced" else
                     "lies wholly outside that band" if a.verdict == "not reproduced" else
                     f"reaches past the band's {'upper' if a.ci.high > hi else 'lower'} edge, "
                     f"so these trials cannot tell")
            loo = [trials.reinit.drop(s).mean() / trials.ticket.drop(s).mean()
                   for s in trials.index]
            se = (a.ci.high - a.ci.low) / 2 / t_quantile(two_sided(CONFIDENCE), n - 1)
            text += (f"Leaving out one seed at a time (its ticket and its re-init together) "
                     f"gives the ratios {', '.join(f'{x:.2f}x' for x in loo)}; their spread, "
                     f"√((n−1)/n · Σ(rᵢ − r̄)²), is the ratio's standard error, "
                     f"{se:.2f}x (the jackknife). Student's t with {n - 1} degrees of freedom "
                     f"({t_quantile(two_sided(CONFIDENCE), n - 1):.2f}) times it either side "
                     f"of {a.ours:.2f}x gives the 95% interval **{a.ci.low:.2f}x to "
                     f"{a.ci.high:.2f}x**. The paper's {rule.value:g}x, within our factor "
                     f"{rule.factor:g}, allows {lo:.2f}x to {hi:.2f}x. The interval {where}: "
                     f"**{a.verdict}**.")
        out.append(text)
    return "\n\n".join(out)


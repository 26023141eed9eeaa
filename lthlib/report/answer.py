"""The answer first: the report's opening paragraph, its per-figure table and each figure
chapter's short claim table, all computed from the claims ledger (``runs/claims.csv`` as
:func:`lthlib.report.ledger` returns it), so the words follow the verdicts and never the
other way round.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lthlib.report.claims.paper_claims import CLAIMS, get_claim
from lthlib.report.claims.claims_csv import ledger_summary
from lthlib.report.claims.views import ledger_number
from lthlib.report.text import DATASET_NAMES

# the paper's figures in reading order, each with its claim in a few words (prose, no numbers)
FIGURES = ("1", "3", "4a", "4b", "12", "4c", "8")
FIGURE_CLAIMS = {
    "1": "random sparse networks slow down and lose accuracy as they get sparser; one-shot "
         "tickets do not",
    "3": "iterative tickets learn faster than the dense network down to about a fifth of its "
         "weights, then slow down",
    "4a": "tickets stop earlier and are more accurate than the dense network and than the "
          "same mask re-initialised",
    "4b": "at the end of training, tickets still beat the dense network",
    "12": "tickets reach 100% training accuracy",
    "4c": "one-shot tickets win too; iterative pruning finds smaller ones",
    "8": "ResNet-18: no winning tickets at learning rate 0.1 unless warmed up; at 0.01 they win",
}
FIGURE_CHAPTERS = {"1": "05_figure1", "3": "06_iterative_pruning", "4a": "06_iterative_pruning",
                   "4b": "06_iterative_pruning", "12": "06_iterative_pruning",
                   "4c": "06_iterative_pruning", "8": "07_global_pruning"}
DECIDED = ("reproduced", "partly", "not reproduced")
NOT_RUN_REASONS = {
    "cifar10": "CIFAR-10 is not available on the machines that built this report",
    "cifar-only": "the claim is a CIFAR-10 accuracy, which another dataset cannot test",
    "figure 8 on mnist": "ResNet-18 was trained on FashionMNIST only, the harder substitute",
}


CLAIM_FIGURES = {c.id: c.figure for c in CLAIMS}


def _figure(claim_id: str) -> str:
    """The paper's figure of a claim; "" for rows beyond the paper (chapter 08's)."""
    return CLAIM_FIGURES.get(claim_id, "")


def _with_figure(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["figure"] = [_figure(c) for c in out["claim"]]
    return out


def _counted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose verdict counts in the totals: judged, and evidence (not indicative)."""
    evidence = df["evidence"].fillna("") if "evidence" in df else pd.Series("counted", df.index)
    return df[(df["verdict"] != "not run") & (evidence == "counted")]


def count_phrase(verdicts: pd.Series) -> str:
    """"3 reproduced, 1 partly, 2 inconclusive" in the ledger's verdict order."""
    counts = verdicts.value_counts()
    order = ("reproduced", "partly", "inconclusive", "not reproduced")
    return ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v, 0))


def overall_word(verdicts: pd.Series) -> str:
    """One word for a set of verdicts: all reproduced; mostly inconclusive (the trials
    decide fewer than half); mostly reproduced (reproduced or partly at least twice as
    often as not reproduced); mixed; inconclusive; or not reproduced."""
    v = verdicts.tolist()
    if not v:
        return "not run"
    good = sum(x in ("reproduced", "partly") for x in v)
    bad = sum(x == "not reproduced" for x in v)
    if all(x == "reproduced" for x in v):
        return "reproduced"
    if good == 0:
        return "not reproduced" if bad else "inconclusive"
    if 2 * (good + bad) < len(v):
        return "mostly inconclusive"
    return "mostly reproduced" if good >= 2 * bad else "mixed"


def _where(rows: pd.DataFrame, names: bool = True) -> str:
    """"MNIST and FashionMNIST, paper profile, 5 trials" for the rows' evidence."""
    datasets = [DATASET_NAMES.get(d, d) for d in dict.fromkeys(rows["dataset"])]
    profiles = list(dict.fromkeys(rows["profile"].dropna()))
    trials = sorted({int(t) for t in rows["trials"].dropna()})
    prof = " / ".join(f"{p} profile" for p in profiles)
    tri = "-".join(str(t) for t in (trials[0], trials[-1]) if t) if trials else "?"
    tri = f"{trials[0]}" if len(trials) == 1 else tri
    head = f"{' and '.join(datasets)}, " if names else ""
    return f"{head}{prof}, {tri} trials"


def not_run_reasons(ledger: pd.DataFrame) -> list[str]:
    """Why each group of ledger rows was not judged, one line per reason."""
    df = _with_figure(ledger[ledger["verdict"] == "not run"])
    lines: list[str] = []
    cifar = df[df["dataset"] == "cifar10"]
    if len(cifar):
        lines.append(f"{len(cifar)} claims on CIFAR-10: {NOT_RUN_REASONS['cifar10']}.")
    rest = df[df["dataset"] != "cifar10"]
    only_cifar = pd.Series([c in CLAIM_FIGURES and get_claim(c).datasets == ("cifar10",)
                            for c in rest["claim"]], index=rest.index, dtype=bool)
    if only_cifar.any():
        names = " and ".join(DATASET_NAMES[d] for d in dict.fromkeys(rest[only_cifar].dataset))
        lines.append(f"{int(only_cifar.sum())} claims on {names}: "
                     f"{NOT_RUN_REASONS['cifar-only']}.")
    rest = rest[~only_cifar]
    fig8_mnist = rest[(rest["figure"] == "8") & (rest["dataset"] == "mnist")]
    if len(fig8_mnist):
        lines.append(f"{len(fig8_mnist)} Figure 8 claims on MNIST: "
                     f"{NOT_RUN_REASONS['figure 8 on mnist']}.")
    other = rest.drop(fig8_mnist.index)
    for (fig, ds), g in other.groupby(["figure", "dataset"], sort=False):
        lines.append(f"{len(g)} Figure {fig} claims on {DATASET_NAMES.get(ds, ds)}: no finished "
                     f"results in the store yet.")
    return lines


def figure_answers(ledger: pd.DataFrame, link: bool = True) -> pd.DataFrame:
    """One row per figure that was run: the paper's claim in a few words, our answer in one
    word with where it was judged, and the verdict counts per dataset."""
    df = _with_figure(_counted(ledger))
    lenet = df[df["figure"] != "8"]
    common = _where(lenet) if len(lenet) else ""  # said once, in the opening paragraph
    rows = []
    for fig in FIGURES:
        g = df[df["figure"] == fig]
        if g.empty:
            continue
        where = _where(g)
        name = f"Figure {fig}"
        if link:
            name = f"[{name}]({FIGURE_CHAPTERS[fig]}.ipynb)"
        counts = "; ".join(f"{DATASET_NAMES.get(d, d)}: {count_phrase(s.verdict)}"
                           for d, s in g.groupby("dataset", sort=False))
        rows.append({"figure": name, "the paper's claim": FIGURE_CLAIMS[fig],
                     "our answer": f"**{overall_word(g.verdict)}**"
                                   + (f" ({where})" if where != common else ""),
                     "verdicts": counts})
    return pd.DataFrame(rows, columns=["figure", "the paper's claim", "our answer", "verdicts"])


def _claim_verdict(df: pd.DataFrame, claim_id: str) -> str:
    rows = _counted(df[df["claim"] == claim_id])
    return overall_word(rows.verdict) if len(rows) else "not run"


def opening_answer(ledger: pd.DataFrame) -> str:
    """The report's first paragraph: does the lottery ticket hypothesis reproduce here?"""
    df = _with_figure(_counted(ledger))
    lenet, resnet = df[df["figure"] != "8"], df[df["figure"] == "8"]
    if df.empty:
        return ("**Not yet known.** The store holds no results that the claims ledger can "
                "judge; run the chapters to compute them.")
    parts = []
    head = overall_word(lenet.verdict) if len(lenet) else overall_word(resnet.verdict)
    word = {"reproduced": "Yes", "mostly reproduced": "Mostly yes", "mixed": "In part",
            "mostly inconclusive": "Not clearly", "inconclusive": "We cannot tell yet",
            "not reproduced": "No"}[head]
    if len(lenet):
        decided = lenet[lenet.verdict.isin(DECIDED)]
        parts.append(
            f"**{word}, for the network the hypothesis was first shown on.** Of the "
            f"{len(lenet)} claims of Figures 1, 3, 4 and 12 judged on LeNet-300-100 "
            f"({_where(lenet)}), {count_phrase(lenet.verdict)}; of the {len(decided)} the "
            f"trials could decide, {int((decided.verdict != 'not reproduced').sum())} hold "
            f"at least in part.")
        beats = _claim_verdict(ledger, "fig4a-ticket-0.5pp-more-accurate-than-reinit")
        random_ = _claim_verdict(ledger, "fig1-ticket-more-accurate-than-random")
        parts.append(
            f"The heart of the hypothesis, that a pruned network rewound to its original "
            f"initial values beats the same connections with fresh random values, is "
            f"**{beats}** (Figure 4a); tickets against randomly sampled sparse networks of "
            f"the same size are **{random_}** (Figure 1).")
    if len(resnet):
        parts.append(
            f"For the deeper network of Figure 8, ResNet-18, judged on "
            f"{' and '.join(DATASET_NAMES.get(d, d) for d in dict.fromkeys(resnet.dataset))} "
            f"instead of CIFAR-10 and at a shortened budget ({_where(resnet, names=False)}): "
            f"{count_phrase(resnet.verdict)} of {len(resnet)} claims, "
            f"**{overall_word(resnet.verdict)}**.")
    inconclusive = int((df.verdict == "inconclusive").sum())
    if inconclusive:
        parts.append(f"*Inconclusive* means the 95% interval over trials cannot tell; "
                     f"{inconclusive} claims are that, not failures.")
    return " ".join(parts)


def short_claim(claim_id: str) -> str:
    """A claim's statement without its parenthesised definition of the measured quantity."""
    text = get_claim(claim_id).statement.rstrip(".")
    cut = text.rfind(" (")
    return text[:cut] if cut > 0 and text.endswith(")") else text


def chapter_claims(verdicts: pd.DataFrame, max_rows: int = 6) -> pd.DataFrame:
    """A figure chapter's opening table, claim | paper | ours | verdict, at most
    ``max_rows`` rows: one per claim when they fit, else one per figure. Claims that were
    not run are folded into one last row with the reason."""
    df = _with_figure(verdicts)
    judged = df[df["verdict"] != "not run"]
    per_claim = judged["claim"].nunique() <= max_rows - (len(judged) < len(df))
    rows = []
    if per_claim:
        one = judged["dataset"].nunique() == 1  # then the dataset goes without saying
        for cid, g in judged.groupby("claim", sort=False):
            unit = " pp" if "pp" in get_claim(cid).paper else ""
            ours = [("" if one else f"{DATASET_NAMES.get(r.dataset, r.dataset)} ")
                    + f"{ledger_number(r.ours)}{unit}" for r in g.itertuples()]
            rows.append({"claim": short_claim(cid), "paper": get_claim(cid).paper,
                         "ours": "; ".join(ours),
                         "verdict": "; ".join(_verdict_cell(r, one) for r in g.itertuples())})
    else:
        for fig, g in judged.groupby("figure", sort=False):
            rows.append({"claim": f"Figure {fig}: {FIGURE_CLAIMS[fig]}",
                         "paper": f"{g['claim'].nunique()} claims",
                         "ours": "; ".join(f"{DATASET_NAMES.get(d, d)}: {count_phrase(s.verdict)}"
                                           for d, s in g.groupby("dataset", sort=False)),
                         "verdict": f"**{overall_word(g.verdict)}**"})
    missing = df[df["verdict"] == "not run"]
    if len(missing):
        rows.append({"claim": f"{missing['claim'].nunique()} more claims", "paper": "-",
                     "ours": "not run", "verdict": " ".join(not_run_reasons(missing))})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "verdict"])


def _verdict_cell(r: object, bare: bool = False) -> str:
    name = DATASET_NAMES.get(getattr(r, "dataset"), getattr(r, "dataset"))
    tag = " (indicative)" if getattr(r, "evidence", "") == "indicative" else ""
    return ("" if bare else f"{name}: ") + f"**{getattr(r, 'verdict')}**{tag}"


def datasets_run(ledger: pd.DataFrame, figures: Sequence[str] | None = None) -> list[str]:
    """The datasets with at least one judged claim (of ``figures``, if given)."""
    df = _with_figure(ledger)
    if figures is not None:
        df = df[df["figure"].isin(figures)]
    return list(dict.fromkeys(df[df["verdict"] != "not run"]["dataset"]))


def totals(ledger: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts for the datasets with at least one judged claim (the rest are named,
    with their reason, by :func:`not_run_reasons`); "not judged" counts a run dataset's
    claims that its experiments cannot test."""
    run = datasets_run(ledger)
    table = ledger_summary(ledger[ledger["dataset"].isin(run)])
    table = table.rename(columns={"not run": "not judged"})
    return table.rename(index=DATASET_NAMES).reset_index()

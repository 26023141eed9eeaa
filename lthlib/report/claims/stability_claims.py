"""Claims "beyond the paper": Frankle et al. 2020's statements about LeNet's stability to
SGD noise (linear mode connectivity), judged like the paper's claims on the measurements
:mod:`lthlib.studies.lmc` stored, and added to the ledger as their own group.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lthlib.studies.lmc import lmc_profile, lmc_results
from lthlib.report.claims.paper_claims import EVIDENCE, Claim, claim, ledger_frame, ledger_row
from lthlib.report.claims.judge import assess, row_fields
from lthlib.report.claims.evidence import Evidence, need_key, per_trial
from lthlib.report.claims.verdict_rules import Below

# Our threshold for "no rise in test error": 0.5 pp, twice the ledger's +/- 0.25 pp band for
# LeNet accuracy equalities (a rise smaller than that is within what the ledger already
# calls "the same accuracy").
STABLE_PP = 0.5
MATCH_PP = 0.25  # "matching the dense network": final test error within 0.25 pp of it
LMC_NEED = ("lmc", "lenet")


def _dense_instability(rows: pd.DataFrame) -> float:
    dense = rows[(rows["variant"] == "ticket") & (rows["level"] == 0)]
    return float(100 * dense["instability"].mean()) if len(dense) else float("nan")


def _matching_ticket_instability(rows: pd.DataFrame) -> float:
    """Largest instability of the trial's tickets whose mean endpoint error is within
    :data:`MATCH_PP` of the dense network's (or lower), in pp."""
    tk = rows[rows["variant"] == "ticket"]
    dense = tk[tk["level"] == 0]
    if dense.empty:
        return float("nan")
    ref = float((dense["error_a"] + dense["error_b"]).iloc[0] / 2)
    err = (tk["error_a"] + tk["error_b"]) / 2
    matching = tk[(tk["level"] > 0) & (err <= ref + MATCH_PP / 100)]
    return float(100 * matching["instability"].max()) if len(matching) else float("nan")


def lmc_claims() -> tuple[Claim, ...]:
    """Frankle et al. 2020's statements about LeNet, as claims of the ledger's "beyond the
    paper" group, judged on the stored measurements."""
    return (
        claim("lmc-lenet-stable-at-init", "LMC",
              "Beyond the paper (Frankle et al. 2020): LeNet on MNIST is stable to SGD noise "
              "at initialisation; two dense copies trained from θ0 with different data orders "
              "show no rise in test error on the line between them (instability, pp).",
              "no rise", (LMC_NEED,), per_trial(LMC_NEED, _dense_instability),
              Below(STABLE_PP, "pp"), datasets=("mnist",), group="beyond the paper"),
        claim("lmc-lenet-matching-tickets-stable", "LMC",
              "Beyond the paper (Frankle et al. 2020): IMP subnetworks match the dense "
              "network only when they are stable; for LeNet, the tickets that match it are "
              "stable (largest instability among tickets whose final test error is within "
              f"{MATCH_PP:g} pp of the dense network's, pp).", "no rise", (LMC_NEED,),
              per_trial(LMC_NEED, _matching_ticket_instability), Below(STABLE_PP, "pp"),
              datasets=("mnist",), group="beyond the paper"),
    )


def evaluate_lmc_claims(runs_dir: str | Path | None = None,
                        datasets: Sequence[str] = ("mnist", "fashionmnist")) -> pd.DataFrame:
    """Ledger rows (the claims ledger's columns) for :func:`lmc_claims`: each claim at the
    largest profile with measurements, with t-intervals over trials like the paper's claims;
    shortened profiles give "indicative" evidence."""
    rows = []
    for ds in datasets:
        prof = lmc_profile(ds, runs_dir=runs_dir)
        summary = lmc_results("lenet", ds, prof, runs_dir)[1] if prof else pd.DataFrame()
        for c in lmc_claims():
            row = ledger_row(c, ds)
            if not summary.empty:
                a = assess(c, Evidence({need_key(LMC_NEED): summary}, dataset=ds))
                if a.verdict != "not run":
                    row.update(row_fields(a), rule=a.rule or row["rule"], profile=prof,
                               trials=int(summary["seed"].nunique()),
                               levels=int(summary["level"].nunique()),
                               evidence=EVIDENCE[0] if c.counted(prof) else EVIDENCE[1])
            rows.append(row)
    return ledger_frame(rows)

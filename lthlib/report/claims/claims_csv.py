"""The claims ledger read from the store: each claim of :mod:`lthlib.report.claims.paper_claims` judged on
the finished trials of ``runs/``, one row per claim and dataset, written to
``runs/claims.csv``. Nothing is trained: results are read with
:meth:`lthlib.store.run_store.RunStore.results`.

Each claim uses the largest profile at which every experiment it needs has finished
trials; verdicts at the ``paper`` profile (or one in
:data:`~lthlib.report.claims.paper_claims.TESTING_PROFILES`) count, the others are indicative.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from lthlib.util.atomic import atomic_write_text
from lthlib.config.paper import PROFILE_ORDER, PROFILES, check_choice
from lthlib.config.experiment import ExperimentConfig, experiment_from_dict
from lthlib.store.run_store import ExperimentResult, RunStore, resolve_runs_dir
from lthlib.store.file_checks import df_to_csv_text
from lthlib.report.claims.paper_claims import (CLAIMS, EVIDENCE, Claim, get_claim, ledger_frame,
                                               ledger_row)
from lthlib.report.claims.judge import assess, row_fields
from lthlib.report.claims.evidence import TEST_IMAGES, Evidence, Need, need_key
from lthlib.report.claims.stability_claims import evaluate_lmc_claims
from lthlib.report.text import DATASET_NAMES
from lthlib.report.claims.verdict_rules import VERDICTS

DATASETS = ("mnist", "fashionmnist", "cifar10")
# Frankle et al. 2020's stability statements are about LeNet on MNIST (chapter 8)
LMC_DATASETS = ("mnist",)


GroupKey = tuple[str, str, str, str, str]  # experiment, arch, dataset, setting, profile


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
        # late rewinding forms its own group: no claim of the paper is judged on it
        key = (cfg.experiment, cfg.model.arch, cfg.data.dataset, cfg.setting, cfg.profile)
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
                  {k: r.metrics for k, r in results.items()}, dataset,
                  test_images={k: r.trials[0].config.data.eval_subset or TEST_IMAGES
                               for k, r in results.items()})
    return ev, results


def _loader(runs_dir: str | Path | None, inventory: Mapping[GroupKey, ExperimentConfig]
            ) -> Callable[[GroupKey], ExperimentResult]:
    """Reads each stored experiment once (nothing is trained)."""
    store = RunStore(runs_dir)
    loaded: dict[GroupKey, ExperimentResult] = {}

    def load(key: GroupKey) -> ExperimentResult:
        if key not in loaded:
            loaded[key] = store.results(inventory[key])
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


def evaluate_claims(runs_dir: str | Path | None = None, datasets: Sequence[str] = DATASETS,
                    profile: str | None = None, claims: Sequence[Claim] = CLAIMS
                    ) -> pd.DataFrame:
    """The ledger: one row per claim and dataset with columns :data:`CSV_COLUMNS`.

    Each claim uses the largest profile (paper > quick > mini > smoke) at which every
    experiment it needs has finished trials in the store (or ``profile`` when given);
    ``trials`` is the number of trials the interval rests on (the smallest count among those
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
            row = ledger_row(c, ds)
            prof = _profile_for(c, ds, profiles, inventory)
            if prof is not None:
                ev, results = _evidence(c, ds, prof, load)
                a = assess(c, ev)
                row.update(row_fields(a), rule=a.rule or row["rule"])
                if results:
                    row.update(profile=prof,
                               trials=a.ci.n if a.ci is not None else
                               min(len(r.trials) for r in results.values()),
                               levels=min(r.summary["level"].nunique()
                                          for r in results.values()))
                if a.verdict != "not run":
                    row["evidence"] = EVIDENCE[0] if c.counted(prof) else EVIDENCE[1]
            rows.append(row)
    return ledger_frame(rows)


def write_claims_csv(runs_dir: str | Path | None = None, path: str | Path | None = None,
                     **kwargs: Any) -> Path:
    """Evaluate the ledger and write it atomically (default ``<runs>/claims.csv``). Without
    ``kwargs`` (for :func:`evaluate_claims`), the whole ledger as the book writes it, the
    "beyond the paper" rows included (:func:`ledger`)."""
    df = evaluate_claims(runs_dir, **kwargs) if kwargs else ledger(runs_dir)
    out = Path(path) if path is not None else resolve_runs_dir(runs_dir) / "claims.csv"
    atomic_write_text(out, df_to_csv_text(df))
    return out


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


def ledger(runs_dir: str | Path | None = None, datasets: Sequence[str] | None = None,
           profile: str | None = None, figures: tuple[str, ...] | None = None,
           write: bool = False) -> pd.DataFrame:
    """The claims ledger as the book shows it: :func:`evaluate_claims` and, for the whole
    ledger, the "beyond the paper" rows of :mod:`lthlib.report.claims.stability_claims`.

    ``profile`` None or "auto": each claim at the largest profile with results. ``figures``
    restricts the claims (e.g. ``("1",)``). ``write`` stores it as ``<runs>/claims.csv``.
    """
    chosen = [c for c in CLAIMS if figures is None or c.figure in figures]
    prof = None if profile in (None, "auto") else profile
    names = tuple(datasets or DATASET_NAMES)
    df = evaluate_claims(runs_dir, names, prof, chosen)
    lenet_sets = [d for d in names if d in LMC_DATASETS]
    if figures is None and lenet_sets:
        # the "beyond the paper" group, each claim at the largest profile holding
        # linear-mode-connectivity measurements
        df = pd.concat([df, evaluate_lmc_claims(runs_dir, lenet_sets)], ignore_index=True)
    if write:
        atomic_write_text(resolve_runs_dir(runs_dir) / "claims.csv", df_to_csv_text(df))
    return df

"""The claims ledger: the paper's claims as data (:mod:`.paper_claims`) and the stability
claims beyond it (:mod:`.stability_claims`), the evidence and measurements they are judged on
(:mod:`.evidence`, :mod:`.measures`), intervals and their measured coverage
(:mod:`.intervals`, :mod:`.coverage`), the rules that turn an interval into a verdict
(:mod:`.verdict_rules`), one claim judged (:mod:`.judge`), every claim judged on the store and
written to ``runs/claims.csv`` (:mod:`.claims_csv`), and the ledger for reading (:mod:`.views`).
"""

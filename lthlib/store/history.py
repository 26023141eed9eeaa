"""What a trained network's history holds, and the row that retroactive early stopping reads
from it: defined beside the store because every stored trial is summarised this way, and the
training loops write it.
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["HISTORY_COLUMNS", "early_stop_summary"]

HISTORY_COLUMNS = ["iteration", "train_loss", "train_acc", "val_loss", "val_acc",
                   "test_loss", "test_acc"]


def early_stop_summary(history: pd.DataFrame) -> dict[str, float]:
    """Retroactive early stopping: the eval point of minimum validation loss (first on ties).

    Returns the iteration and every metric at that point, plus the final-iteration test and
    train accuracy (Figure 4b / Figure 12 use those).
    """
    if history.empty:
        raise ValueError("early_stop_summary() got an empty history")
    vals = history["val_loss"].to_numpy()
    if all(math.isnan(v) for v in vals):
        raise ValueError("early_stop_summary(): every validation loss is NaN")
    row = history.iloc[int(pd.Series(vals).fillna(math.inf).to_numpy().argmin())]
    last = history.iloc[-1]
    out = {"early_stop_iteration": int(row["iteration"])}
    for col in HISTORY_COLUMNS[1:]:
        out[f"early_stop_{col}"] = float(row[col])
    out["final_iteration"] = int(last["iteration"])
    out["final_test_acc"] = float(last["test_acc"])
    out["final_train_acc"] = float(last["train_acc"])
    return out

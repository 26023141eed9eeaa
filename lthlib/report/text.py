"""How the report writes numbers and shows them: dataset names, percentages, durations,
hardware, the deviations from the paper, and Markdown output in a notebook.

Every chapter and every table of the report formats alike because they all come here.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from lthlib.config.paper import paper_train
from lthlib.config.profiles import profile_deviations

DATASET_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR-10"}
PAPER_TRIALS = 5  # trials per point in the paper's main body
PAPER_REINITS = 3  # random re-initialisations per trial in the paper
PAPER_RANDOM_TRIALS = 10  # randomly sampled sparse networks per point in the paper

# Choices the paper leaves open (or that we made on purpose), printed in every chapter.
OUR_CHOICES = (
    "ReLU activations (the paper names none; ReLU is the usual reading).",
    "Inputs scaled to [0, 1] (ToTensor), no mean/std normalisation.",
    "Only Linear/Conv weights are pruned; biases and BatchNorm parameters never are.",
    "Pm counts every Linear/Conv weight, including layers that are never pruned.",
    "Training accuracy is measured on a fixed 5,000-example subset of the training split.",
    "Paired design: within a trial, a ticket and its controls see the same minibatch order.",
    "One-shot pruning uses per-layer rates that keep IMP's layer ratios at equal Pm.",
    "Adam uses PyTorch's betas (0.9, 0.999) and eps 1e-8 (the paper gives none).",
)


def pct(x: float, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage string (``0.2114 -> '21.1%'``)."""
    return f"{100 * float(x):.{digits}f}%"


def describe_record_hardware(record: dict[str, Any]) -> str:
    """"GPU name (cuda)" or "CPU model, N cores" from a trial record."""
    hw = record.get("hardware", {}) or {}
    if hw.get("gpu"):
        return f"{hw['gpu']} GPU"
    cpu = hw.get("cpu") or "CPU"
    cores = hw.get("cores")
    return f"{cpu} ({cores} cores)" if cores else str(cpu)


def format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def wall_time_partial(record: dict[str, Any]) -> bool:
    """True when a record's wall time misses part of its training (e.g. a process that was
    stopped before the trial was resumed, in records written before stages were timed)."""
    return record.get("wall_time_complete") is False


def format_wall_time(seconds: float, records: list[dict[str, Any]]) -> str:
    text = format_duration(seconds)
    if any(wall_time_partial(r) for r in records):
        text = f"at least {text} (a lower bound; the appendix on how this book was made says why)"
    return text


def our_choices(arch: str = "lenet") -> list[str]:
    """:data:`OUR_CHOICES` that concern ``arch`` (Adam's constants only for Adam-trained
    networks, one-shot rates only where the chapter runs one-shot pruning)."""
    adam = paper_train(arch).optimizer == "adam"
    oneshot = arch in ("lenet", "conv2", "conv4", "conv6")
    return [c for c in OUR_CHOICES
            if (adam or not c.startswith("Adam")) and (oneshot or not c.startswith("One-shot"))]


def deviations(profile: str, arch: str = "lenet") -> list[str]:
    """Everything the shown results do differently from the paper: the profile's reductions
    first, then our fixed choices where the paper is silent."""
    return list(profile_deviations(profile, arch)) + our_choices(arch)


def deviations_markdown(profile: str, arch: str = "lenet") -> str:
    reduced = profile_deviations(profile, arch)
    lines = [f"**Profile `{profile}` for {arch}:** "
             + ("the paper's settings." if not reduced else "; ".join(reduced) + "."), "",
             "**Our choices where the paper is silent:**", ""]
    lines += [f"- {c}" for c in our_choices(arch)]
    return "\n".join(lines)


def show_markdown(text: str) -> Any:
    """Display computed Markdown in a notebook (rendered as text by the book)."""
    return display(Markdown(text))


def show_table(df: pd.DataFrame, floatfmt: str = "g") -> Any:
    """Display a DataFrame as a Markdown table (no index column, stable text for nbval)."""
    return show_markdown(df.to_markdown(index=False, floatfmt=floatfmt))



# Column names of the analysis tables (lthlib.experiments.tickets, ticket_prose) as a reader reads them,
# and how each is written: "pct" a share as a percentage, "pp" a fraction of the test set in
# percentage points, "x" a ratio, "n" a count, "pm" the percentage of weights remaining.
READABLE_COLUMNS = {
    "level": ("level", "n"), "pm": ("Pm", "pm"), "layer": ("layer", "n"),
    "variant": ("network", "n"), "trials": ("trials", "n"), "pairs": ("pairs", "n"),
    "ticket_border": ("ticket: border kept", "pct"),
    "ticket_centre": ("ticket: centre kept", "pct"),
    "random_border": ("random mask: border kept", "pct"),
    "random_centre": ("random mask: centre kept", "pct"),
    "map_correlation": ("correlation of the trials' pictures", "x"),
    "small_share": ("survivors from the smallest quarter of |θ0|", "pct"),
    "magnitude_ratio": ("survivors' mean |θ0| / layer mean", "x"),
    "density": ("density", "pct"), "jaccard": ("overlap (Jaccard)", "x3"),
    "chance": ("overlap by chance", "x3"), "random": ("overlap of random masks", "x3"),
    "ratio": ("overlap / chance", "x"),
    "instability_mean": ("instability, mean over trials (pp)", "pp"),
    "instability_max": ("instability, largest trial (pp)", "pp"),
    "endpoint_error": ("test error of the trained copies (%)", "pp"),
}


def _readable_value(value: Any, kind: str) -> str:
    if isinstance(value, str) or value is None or pd.isna(value):
        return "-" if value is None or (not isinstance(value, str) and pd.isna(value)) \
            else str(value)
    if kind == "pm":
        return f"{100 * float(value):.1f}%"
    if kind == "pct":
        return f"{100 * float(value):.1f}%"
    if kind == "pp":
        return f"{100 * float(value):.2f}"
    if kind == "x3":
        return f"{float(value):.3f}"
    if kind == "x":
        return f"{float(value):.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """An analysis table for reading: named columns and sensible decimals (shares as
    percentages with one decimal, instabilities in pp with two, ratios with two)."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        label, kind = READABLE_COLUMNS.get(col, (col.replace("_", " "), "x"))
        out[label] = [_readable_value(v, kind) for v in df[col]]
    return out

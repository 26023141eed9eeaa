"""How the report writes numbers and shows them: dataset names, percentages, durations,
hardware, the deviations from the paper, and Markdown output in a notebook.

Every chapter and every table of the report formats alike because they all come here.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from ..config import paper_train, profile_deviations

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
        text = (f"at least {text} (some trials were resumed, and the process they were resumed "
                f"from was not timed)")
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


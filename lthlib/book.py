"""The report's machinery: what each chapter needs from ``runs/``, which profile it shows,
executing the chapters with papermill, building the Jupyter Book and checking the site.

The chapters in ``book/`` stay short because the decisions live here: a chapter asks
:func:`prepare` for its experiments and gets the largest profile whose results are complete
in the store (``paper`` > ``quick`` > ``mini`` > ``smoke``). Only what is missing at the
resolved profile is computed: nothing when results are there, the chapter's fallback profile
(``quick``; ``mini`` for ResNet-18) when the store holds nothing for it yet.

Command line::

    python -m lthlib.book build     # papermill-execute every chapter in place, then the HTML
    python -m lthlib.book html      # build _build/html from the executed notebooks only
    python -m lthlib.book check     # check the built site (pages, links, images)
    python -m lthlib.book screenshot _build/html/book/intro.html intro.png

Used in: every chapter of ``book/``, ``make book`` and ``tests/test_notebooks.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from .config import (PROFILE_ORDER, PROFILES, RESNET_LR_SETTINGS, check_choice,
                     experiment_from_dict, get_profile, make_experiment, paper_prune,
                     profile_deviations)
from .lmc import evaluate_lmc_claims
from .store import RunStore, resolve_runs_dir

REPO = Path(__file__).resolve().parents[1]
BOOK_DIR = REPO / "book"
KERNEL = "python3"
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


# --- what each chapter needs --------------------------------------------------------------

@dataclass(frozen=True)
class Need:
    """One experiment a chapter reads: experiment name, network and (Figure 8) lr setting."""

    experiment: str
    arch: str = "lenet"
    lr_setting: str = ""

    @property
    def key(self) -> str:
        """Short name used to look results up in a :class:`Context` (``imp``,
        ``global-imp/lr0.1``)."""
        return self.experiment + (f"/{self.lr_setting}" if self.lr_setting else "")

    def config(self, dataset: str, profile: str, trials: int = 1, rounds: int | None = None):
        """The experiment config of this need (the paper's settings with ``profile``)."""
        return make_experiment(self.experiment, self.arch, dataset, profile, trials,
                               lr_setting=self.lr_setting or None, rounds=rounds)


@dataclass(frozen=True)
class Chapter:
    """A notebook of the book: its file stem, title, the questions it answers, its needs."""

    name: str
    title: str
    questions: str
    needs: tuple[Need, ...] = ()
    arch: str = "lenet"
    datasets: tuple[str, ...] = ("mnist",)  # datasets it shows; the first is the default
    fallback: str = "quick"  # profile computed by "auto" when the store has none complete
    rounds: int | None = None  # IMP rounds of the committed build (its notebook's parameter)

    @property
    def label(self) -> str:
        """Short name for tables: ``"7.6 Iterative pruning ..."`` without the figure list."""
        return f"{self.questions} {self.title.split(' (')[0]}".replace("appendix Appendix: ",
                                                                       "Appendix: ")


_FIG8 = tuple(Need("global-imp", "resnet18", s) for s in RESNET_LR_SETTINGS)
CHAPTERS: tuple[Chapter, ...] = (
    Chapter("intro", "The lottery ticket hypothesis, reproduced", "7.1"),
    Chapter("02_models_data", "Models and datasets", "7.2"),
    Chapter("03_training", "Training and early stopping", "7.3", (Need("imp"),)),
    Chapter("04_pruning", "Pruning", "7.4"),
    Chapter("05_figure1", "One-shot tickets against random sparse networks (Figure 1)", "7.5",
            (Need("oneshot"), Need("imp")), datasets=("mnist", "fashionmnist")),
    Chapter("06_iterative_pruning", "Iterative pruning and re-initialisation (Figures 3, 4a)",
            "7.6", (Need("imp"), Need("oneshot")), datasets=("mnist", "fashionmnist")),
    Chapter("07_global_pruning", "Global pruning and learning rates (Figure 8)", "7.7", _FIG8,
            arch="resnet18", datasets=("fashionmnist", "cifar10"), fallback="mini",
            rounds=10),
    # beyond the assignment: reads IMP trials that stored their masks (lthlib.tickets)
    Chapter("08_examining_tickets", "Beyond the assignment: examining the tickets", "beyond",
            datasets=("mnist", "fashionmnist")),
    Chapter("appendix_fashion_mlp", "Appendix: a FashionMNIST MLP", "appendix",
            (Need("imp", "mlp"),), arch="mlp", datasets=("fashionmnist",)),
)


def get_chapter(name: str) -> Chapter:
    """The chapter called ``name`` (file stem, e.g. ``06_iterative_pruning``)."""
    names = tuple(c.name for c in CHAPTERS)
    return CHAPTERS[names.index(check_choice("chapter", name, names))]


def chapter_path(chapter: Chapter | str) -> Path:
    name = chapter.name if isinstance(chapter, Chapter) else get_chapter(chapter).name
    return BOOK_DIR / f"{name}.ipynb"


# --- reading the store --------------------------------------------------------------------

def finished_trials(need: Need, dataset: str, profile: str, runs_dir: str | Path | None = None,
                    rounds: int | None = None, limit: int = 100) -> int:
    """How many trials (seeds 0, 1, 2, ... without a gap) of ``need`` are finished."""
    store = RunStore(runs_dir)
    try:
        cfg = need.config(dataset, profile, 1, rounds)
    except ValueError:
        return 0
    group = store.trial_dir(cfg).parent
    if not group.is_dir():  # cheap exit: nothing of this experiment at this profile
        return 0
    count = 0
    while count < limit and store.load(replace(cfg, seed=count)) is not None:
        count += 1
    return count


def complete_profiles(needs: tuple[Need, ...] | list[Need], dataset: str,
                      runs_dir: str | Path | None = None, rounds: int | None = None
                      ) -> list[str]:
    """Profiles (largest first) at which every need has at least one finished trial."""
    return [p for p in PROFILE_ORDER
            if all(finished_trials(n, dataset, p, runs_dir, rounds) > 0 for n in needs)]


def resolve_profile(needs: tuple[Need, ...] | list[Need], runs_dir: str | Path | None = None,
                    profile: str = "auto", dataset: str = "mnist", rounds: int | None = None,
                    fallback: str = "quick") -> str:
    """``profile`` itself, or for "auto" the largest profile with complete results in the
    store, else ``fallback`` (which will then be computed)."""
    if str(profile).lower() != "auto":
        return check_choice("profile", profile, PROFILES)
    done = complete_profiles(needs, dataset, runs_dir, rounds)
    return done[0] if done else check_choice("profile", fallback, PROFILES)


def resolve_trials(needs: tuple[Need, ...] | list[Need], dataset: str, profile: str,
                   trials: int = 0, runs_dir: str | Path | None = None,
                   rounds: int | None = None) -> int:
    """``trials`` if positive, else as many as every need has finished (at least 1)."""
    if trials and trials > 0:
        return int(trials)
    counts = [finished_trials(n, dataset, profile, runs_dir, rounds) for n in needs]
    return max(1, min(counts)) if counts else 1


def _compute_allowed(compute: bool | None) -> bool:
    """``compute`` if given, else env LTH_BOOK_COMPUTE (default on; "0" = read only)."""
    if compute is not None:
        return compute
    return os.environ.get("LTH_BOOK_COMPUTE", "1").lower() not in ("0", "false", "no")


# --- a chapter's results ------------------------------------------------------------------

@dataclass
class Context:
    """Everything a chapter shows: resolved profile, trials and the experiments' results."""

    chapter: Chapter
    dataset: str
    profile: str
    trials: int
    runs_dir: Path
    results: dict[str, Any] = field(default_factory=dict)  # need key -> ExperimentResult
    computed: list[str] = field(default_factory=list)
    rounds: int | None = None  # IMP rounds when overridden (else the profile's)

    def __getitem__(self, key: str) -> Any:
        return self.results[key]

    def records(self) -> list[dict[str, Any]]:
        return [tr.record for res in self.results.values() for tr in res.trials]

    def hardware(self) -> str:
        """The devices the shown results were computed on (from the records)."""
        names = sorted({describe_record_hardware(r) for r in self.records()})
        return "; ".join(names) if names else "nothing trained"

    def wall_time_s(self) -> float:
        return float(sum(r.get("wall_time_s", 0.0) for r in self.records()))

    def wall_time_text(self) -> str:
        """The summed training time, as a lower bound where a record says it is partial."""
        return format_wall_time(self.wall_time_s(), self.records())

    def describe(self) -> str:
        """One Markdown paragraph: dataset, profile, trials, hardware and training time."""
        p = get_profile(self.profile)
        text = (f"**Results shown:** dataset **{DATASET_NAMES[self.dataset]}**, profile "
                f"**{self.profile}** ({p.description}), **{self.trials}** trial(s) per point "
                f"(the paper: {PAPER_TRIALS}). Trained on {self.hardware()}, "
                f"{self.wall_time_text()} of training in total.")
        reinits = sorted({res.config.reinits for res in self.results.values()})
        if reinits:
            text += (f" Controls: **{'/'.join(map(str, reinits))}** re-initialised network(s) "
                     f"per trial and pruning level, and in one-shot runs as many randomly "
                     f"sampled sparse networks (the paper: {PAPER_REINITS} re-initialisations "
                     f"per trial, {PAPER_RANDOM_TRIALS} random sparse networks).")
        return text + self.reuse_text() + self.sparse_text()

    def sparse_text(self) -> str:
        """A sentence on trials whose sparsest networks ran on the engine's sparse path."""
        below = sorted({tr.record["sparse_path_below_density"] for res in self.results.values()
                        for tr in res.trials if tr.record.get("sparse_path_below_density")})
        if not below:
            return ""
        n = sum(1 for res in self.results.values() for tr in res.trials
                if tr.record.get("sparse_path_below_density"))
        return (f" In {n} of the shown trials, networks with a layer at most "
                f"{'/'.join(pct(b, 0) for b in below)} dense trained on the engine's sparse CPU "
                f"path. It computes what dense training computes, but in another order of float "
                f"operations, so trajectories drift apart slightly{self._sparse_drift()}.")

    def _sparse_drift(self) -> str:
        """How far a paired dense/sparse IMP trial drifted apart (``bench --imp-trial``)."""
        path = self.runs_dir / "bench" / "cpu-imp-trial-quick.json"
        if not path.is_file():
            return ""
        pair = json.loads(path.read_text())
        return (f" (in a paired {pair['profile']} IMP trial, final test accuracies differed "
                f"by at most {pair['max_abs_diff_final_test_acc_pp']} pp, mean "
                f"{pair['mean_abs_diff_final_test_acc_pp']} pp)")

    def reuse_text(self) -> str:
        """A sentence on trials that extend an earlier, shallower trial (lthlib.reuse)."""
        notes = [tr.record["reused_from"] for res in self.results.values()
                 for tr in res.trials if tr.record.get("reused_from")]
        if not notes:
            return ""
        rounds = sorted({n["rounds"] for n in notes})
        verb = "extends" if len(notes) == 1 else "extend"
        return (f" {len(notes)} of the shown trials {verb} an earlier finished trial (with "
                f"{'/'.join(map(str, rounds))} rounds): {'its' if len(notes) == 1 else 'their'} "
                f"{sum(n['networks'] for n in notes)} "
                f"networks were reused, not retrained, which gives the same numbers as "
                f"retraining (the library's tests check this byte for byte); the training "
                f"time above includes them.")

    def control_deviations(self) -> list[str]:
        """How the shown trials and controls fall short of the paper's, from the configs."""
        out = []
        if self.results and self.trials < PAPER_TRIALS:
            out.append(f"{self.trials} trial(s) per point instead of the paper's {PAPER_TRIALS}.")
        reinits = sorted({res.config.reinits for res in self.results.values()
                          if res.config.experiment in ("imp", "global-imp", "oneshot")})
        if reinits and reinits != [PAPER_REINITS]:
            line = (f"{'/'.join(map(str, reinits))} re-initialisation(s) per trial and "
                    f"level instead of the paper's {PAPER_REINITS}.")
            if "imp" in self.results and self.profile in PROFILES:
                extended = replicated_controls(self.dataset, self.profile, "imp",
                                               self.chapter.arch, self.runs_dir)
                if not extended.empty:
                    line += (f" {extended.seed.nunique()} IMP trial(s) also have "
                             f"{int(extended.reinits.min())}, shown in a separate table.")
            out.append(line)
        randoms = sorted({max(1, res.config.reinits) for res in self.results.values()
                          if res.config.experiment in ("oneshot", "random-sparse")})
        if randoms and randoms != [PAPER_RANDOM_TRIALS]:
            out.append(f"{'/'.join(map(str, randoms))} randomly sampled sparse network(s) per "
                       f"trial and one-shot target instead of the paper's "
                       f"{PAPER_RANDOM_TRIALS}.")
        return out

    def deviations(self, extra: Sequence[str] = ()) -> str:
        """The profile's reductions, our fixed choices, ``extra`` (the chapter's own), then
        trials and controls."""
        text = deviations_markdown(self.profile, self.chapter.arch)
        text += "".join(f"\n- {e}" for e in extra)
        lines = self.control_deviations()
        if self.rounds is not None:
            line = (f"{self.rounds} pruning rounds for this execution instead of the paper's "
                    f"{paper_prune(self.chapter.arch).rounds}")
            pms = [float(res.summary.pm.min()) for res in self.results.values()]
            lines.append(line + (f": the sparsest level shown is Pm = {pct(min(pms))}."
                                 if pms else "."))
        if lines:
            text += "\n\n**Trials and controls:**\n\n" + "\n".join(f"- {x}" for x in lines)
        return text


DATASET_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR-10"}
# Frankle et al. 2020's stability statements are about LeNet on MNIST (chapter 8)
LMC_DATASETS = ("mnist",)


def prepare(chapter: str | Chapter, profile: str = "auto", dataset: str | None = None,
            trials: int = 0, runs_dir: str | Path | None = None, device: str | None = None,
            executor: str = "local", rounds: int | None = None, compute: bool | None = None,
            progress: bool = True) -> Context:
    """Resolve profile and trials for ``chapter`` and return its results, computing (and
    storing) whatever is missing unless computing is switched off.

    ``executor="ray"`` hands the missing experiments to :mod:`lthlib.sweep` first.
    """
    from .experiments import run

    chap = chapter if isinstance(chapter, Chapter) else get_chapter(chapter)
    dataset = check_choice("dataset", dataset or chap.datasets[0], tuple(DATASET_NAMES))
    executor = check_choice("executor", executor, ("local", "ray"))
    root = resolve_runs_dir(runs_dir)
    prof = resolve_profile(chap.needs, root, profile, dataset, rounds, chap.fallback)
    n = resolve_trials(chap.needs, dataset, prof, trials, root, rounds)
    allowed = _compute_allowed(compute)
    missing = [need for need in chap.needs
               if finished_trials(need, dataset, prof, root, rounds) < n]
    if missing and not allowed:
        raise FileNotFoundError(
            f"{chap.name}: no finished results for {[m.key for m in missing]} "
            f"({dataset}, profile {prof}, {n} trial(s)) in {root}, and computing is off "
            f"(LTH_BOOK_COMPUTE=0); run `make book` or pass compute=True")
    if missing:
        print(f"{chap.name}: computing {', '.join(m.key for m in missing)} ({dataset}, "
              f"profile {prof}, {n} trial(s)) into {root}", file=sys.stderr, flush=True)
    if missing and executor == "ray":
        from .sweep import run_sweep  # optional dependency: only needed for executor="ray"
        run_sweep([m.config(dataset, prof, n, rounds) for m in missing], runs_dir=str(root),
                  executor="ray", device=device, progress=progress)
    ctx = Context(chap, dataset, prof, n, root, rounds=rounds)
    for need in chap.needs:
        ctx.results[need.key] = run(
            need.experiment, need.arch, dataset, prof, n, root, device=device,
            progress=progress, lr_setting=need.lr_setting or None, rounds=rounds,
            compute=allowed)
    ctx.computed = [f"{m.key} ({n} trial(s))" for m in missing]
    return ctx


def prepare_existing(chapter: str | Chapter, dataset: str, profile: str = "auto",
                     runs_dir: str | Path | None = None, rounds: int | None = None
                     ) -> Context | None:
    """The chapter's results for another dataset when they are already stored, else None.

    Nothing is computed: a second dataset column appears only where results exist.
    """
    chap = chapter if isinstance(chapter, Chapter) else get_chapter(chapter)
    done = complete_profiles(chap.needs, dataset, runs_dir, rounds)
    if str(profile).lower() != "auto":
        done = [p for p in done if p == profile]
    if not done:
        return None
    return prepare(chap, done[0], dataset, 0, runs_dir, rounds=rounds, compute=False,
                   progress=False)


def with_stored_datasets(ctx: Context, profile: str = "auto") -> list[Context]:
    """``ctx`` followed by the chapter's other datasets whose results are already stored
    (the second dataset column of the figure chapters; nothing is computed for them)."""
    others = [prepare_existing(ctx.chapter, d, profile, ctx.runs_dir)
              for d in ctx.chapter.datasets if d != ctx.dataset]
    return [ctx] + [c for c in others if c is not None]


# --- tables for the introduction ----------------------------------------------------------

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


def runs_overview(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per stored experiment (all seeds together): trials, hardware, wall time.

    Runs that differ in their number of sparsity levels (e.g. 2 against 7 IMP rounds) or of
    re-inits per level are different experiments, so ``levels`` and ``re-inits`` are part of
    the key and trials count distinct seeds."""
    store = RunStore(runs_dir)
    rows = []
    for rec_file in sorted(store.root.glob("*/*/*/record.json")):
        try:
            rec = json.loads(rec_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("status") != "finished":
            continue
        cfg_file = rec_file.with_name("config.json")
        reinits = (json.loads(cfg_file.read_text()).get("reinits", 1) if cfg_file.exists()
                   else 1)
        rows.append({"experiment": rec.get("experiment", ""), "network": rec.get("arch", ""),
                     "dataset": DATASET_NAMES.get(rec.get("dataset", ""), rec.get("dataset")),
                     "profile": rec.get("profile", ""), "lr": rec.get("lr_setting") or "",
                     "levels": int(rec.get("levels", 0)), "re-inits": int(reinits),
                     "seed": rec.get("seed"),
                     "hardware": describe_record_hardware(rec),
                     "wall_time_s": float(rec.get("wall_time_s", 0.0)),
                     "reused_s": float((rec.get("reused_from") or {}).get("wall_time_s") or 0),
                     "partial": wall_time_partial(rec)})
    cols = ["experiment", "network", "dataset", "profile", "lr", "levels", "re-inits", "trials",
            "hardware", "training time"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    keys = ["experiment", "network", "dataset", "profile", "lr", "levels", "re-inits"]
    out = df.groupby(keys, sort=True).agg(
        trials=("seed", "nunique"), hardware=("hardware", lambda s: "; ".join(sorted(set(s)))),
        wall=("wall_time_s", "sum"), reused=("reused_s", "sum"),
        partial=("partial", "any")).reset_index()
    # an extended trial's time includes the networks it reused (lthlib.reuse): say how much,
    # so that adding up the rows does not count that training twice
    out["training time"] = [
        ("at least " if part else "") + format_duration(wall)
        + (f" (of which {format_duration(reused)} reused from a smaller run)" if reused else "")
        for wall, reused, part in zip(out.pop("wall"), out.pop("reused"), out.pop("partial"))]
    order = {p: i for i, p in enumerate(PROFILE_ORDER)}
    out = out.sort_values(["experiment", "network", "dataset", "lr", "profile", "levels",
                           "re-inits"],
                          key=lambda s: s.map(order) if s.name == "profile" else s)
    return out[cols].reset_index(drop=True)


def coverage_table(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """For every chapter and dataset it can show: the best stored profile and its trials,
    and whether that is the paper's setting (its iterations and its 5 trials)."""
    rows = []
    for chap in CHAPTERS:
        if not chap.needs:
            continue
        for dataset in chap.datasets:
            done = complete_profiles(chap.needs, dataset, runs_dir, chap.rounds)
            best = done[0] if done else ""
            n = resolve_trials(chap.needs, dataset, best, 0, runs_dir, chap.rounds) if best else 0
            if not best:
                status = "not run"
            elif best == "paper" and n >= PAPER_TRIALS:
                status = "paper settings"
            elif best == "paper":
                status = f"paper settings, {n} of {PAPER_TRIALS} trials"
            else:
                status = f"reduced ({best} profile)"
            if best and chap.rounds is not None:
                status += f", {chap.rounds} pruning rounds"
            rows.append({"chapter": chap.label, "dataset": DATASET_NAMES[dataset],
                         "experiments": _experiments_text(chap.needs),
                         "profile shown": best or "-", "trials": n, "status": status})
    return pd.DataFrame(rows)


def _experiments_text(needs: tuple[Need, ...]) -> str:
    counts: dict[str, int] = {}
    for n in needs:
        counts[n.experiment] = counts.get(n.experiment, 0) + 1
    return ", ".join(e if k == 1 else f"{e} ({k} lr settings)" for e, k in counts.items())


def our_choices(arch: str = "lenet") -> list[str]:
    """:data:`OUR_CHOICES` that concern ``arch`` (Adam's constants only for Adam-trained
    networks, one-shot rates only where the chapter runs one-shot pruning)."""
    from .config import paper_train

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
    from IPython.display import Markdown, display
    return display(Markdown(text))


def show_table(df: pd.DataFrame, floatfmt: str = "g") -> Any:
    """Display a DataFrame as a Markdown table (no index column, stable text for nbval)."""
    return show_markdown(df.to_markdown(index=False, floatfmt=floatfmt))


def pct(x: float, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage string (``0.2114 -> '21.1%'``)."""
    return f"{100 * float(x):.{digits}f}%"


# --- per-level numbers for the discussions -------------------------------------------------

def level_means(summary: pd.DataFrame, variant: str = "ticket") -> pd.DataFrame:
    """Per level of ``variant`` (index = level): mean Pm, early-stop iteration (``es``), test
    and training accuracy at early stop, final test accuracy and the number of networks."""
    rows = summary[summary["variant"] == variant]
    out = rows.groupby("level").agg(
        pm=("pm", "mean"), es=("early_stop_iteration", "mean"),
        test_acc=("early_stop_test_acc", "mean"), train_acc=("early_stop_train_acc", "mean"),
        final_test_acc=("final_test_acc", "mean"), n=("pm", "size"))
    return out.sort_values("pm", ascending=False)


def compare_levels(summary: pd.DataFrame, variants: tuple[str, ...] = ("ticket", "reinit"),
                   metrics: tuple[str, ...] = ("es", "test_acc")) -> pd.DataFrame:
    """A readable table: one row per level, ``metrics`` of each variant side by side (the
    dense network, level 0, fills the controls' first row as in the paper's plots)."""
    labels = {"es": "early stop", "test_acc": "test acc.", "train_acc": "train acc.",
              "final_test_acc": "final test acc."}
    means = {v: level_means(summary, v) for v in variants}
    base = means[variants[0]]
    out = pd.DataFrame({"Pm": [pct(p) for p in base["pm"]]}, index=base.index)
    for metric in metrics:
        for v in variants:
            col = means[v][metric].reindex(base.index)
            if 0 in base.index and pd.isna(col.get(0)):
                col.loc[0] = base.loc[0, metric]
            fmt = (lambda x: f"{x:,.0f}") if metric == "es" else (lambda x: pct(x, 2))
            out[f"{labels[metric]} ({v})"] = [("-" if pd.isna(x) else fmt(x)) for x in col]
    return out.reset_index(drop=True)


def ticket_gaps(summary: pd.DataFrame, metric: str = "final_test_acc",
                control: str = "reinit") -> pd.DataFrame:
    """Ticket minus ``control`` ``metric`` at each pruned level, one column per trial (seed;
    a trial's controls of a level are averaged first) plus ``mean``: the mean over all tickets
    minus the mean over all controls of the level, pooled as in :func:`level_means` and the
    ledger. Levels without a control are dropped."""
    if "seed" not in summary.columns:
        summary = summary.assign(seed=0)
    rows = summary[summary["variant"].isin(("ticket", control))]
    table = rows.pivot_table(index="level", columns=["variant", "seed"], values=metric,
                             aggfunc="mean")
    if control not in table.columns.get_level_values(0):
        return pd.DataFrame(columns=["mean"], dtype=float)
    per_seed = (table["ticket"] - table[control]).dropna(how="all")
    per_seed.columns = [int(s) for s in per_seed.columns]
    means = summary.groupby(["variant", "level"])[metric].mean()
    per_seed["mean"] = [means[("ticket", lv)] - means[(control, lv)] for lv in per_seed.index]
    return per_seed


def gaps_by_trial(results: Mapping[str, Any], metric: str = "final_test_acc") -> pd.DataFrame:
    """One row per setting (key of ``results``, each an ExperimentResult or a summary): each
    trial's mean ticket-minus-re-init gap over the pruned levels (pp) and in how many of those
    levels that trial's ticket won; with several trials, also the gap of the trial means."""
    out = []
    for name, res in results.items():
        gaps = ticket_gaps(getattr(res, "summary", res), metric)
        row: dict[str, Any] = {"setting": name}
        seeds = [c for c in gaps.columns if c != "mean"]
        for s in seeds:
            g = gaps[s].dropna()
            row[f"trial {s} gap"] = f"{100 * g.mean():+.2f} pp"
            row[f"trial {s} wins"] = f"{int((g > 0).sum())} of {len(g)}"
        if len(seeds) > 1:
            row["all trials gap"] = f"{100 * gaps['mean'].mean():+.2f} pp"
        out.append(row)
    return pd.DataFrame(out)


def smallest_gap_by_trial(results: Mapping[str, Any], metric: str = "final_test_acc"
                          ) -> dict[int, str]:
    """For each trial (seed) present in every setting: the setting whose ticket advantage
    (mean gap over pruned levels) is smallest. Figure 8 expects lr0.1 everywhere."""
    gaps = {name: ticket_gaps(getattr(res, "summary", res), metric)
            for name, res in results.items()}
    seeds = sorted(set.intersection(*({c for c in g.columns if c != "mean"}
                                      for g in gaps.values()))) if gaps else []
    return {s: min(gaps, key=lambda name: float(gaps[name][s].mean())) for s in seeds}


def replicated_controls(dataset: str, profile: str = "paper", experiment: str = "imp",
                        arch: str = "lenet", runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Summary rows (plus ``seed``) of the finished trials that hold more than one
    re-initialisation per level, as the paper's three; per seed, the trial with the most.

    The main figures use the default configs (one re-init per level); this reads the
    extensions (``lth run imp --reinits 3``) beside them, so a chapter can say how much the
    single re-init's estimate moves. Nothing is trained; empty when none is stored."""
    store = RunStore(runs_dir)
    base = make_experiment(experiment, arch, dataset, profile, 1)
    best: dict[int, Any] = {}
    for cfg_file in sorted(store.trial_dir(base).parent.glob("seed*-*/config.json")):
        cfg = experiment_from_dict(json.loads(cfg_file.read_text()))
        if cfg.reinits <= 1 or replace(cfg, seed=base.seed, reinits=base.reinits) != base:
            continue  # a default run, or one differing in more than seed and re-inits
        rec = store.load(cfg)
        if rec is not None and (cfg.seed not in best or cfg.reinits > best[cfg.seed].config.reinits):
            best[cfg.seed] = rec
    parts = [rec.summary.assign(seed=seed, reinits=rec.config.reinits)
             for seed, rec in sorted(best.items())]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _replicate_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per pruned level of :func:`replicated_controls` (sorted by Pm, largest first), means
    over trials of: the first re-init (``*_first``), the mean of all re-inits (``*_all``), the
    spread among one trial's re-inits, and the ticket; ``acc`` is the test accuracy and
    ``es`` the iteration at early stop."""
    re = rows[(rows.variant == "reinit") & (rows.level > 0)]
    tk = rows[(rows.variant == "ticket") & (rows.level > 0)]
    g = re.groupby(["level", "seed"])
    first = re[re.replicate == 0].set_index(["level", "seed"])
    per_trial = pd.DataFrame({
        "pm": g.pm.mean(), "acc_first": first.early_stop_test_acc,
        "acc_all": g.early_stop_test_acc.mean(),
        "acc_spread": g.early_stop_test_acc.max() - g.early_stop_test_acc.min(),
        "es_first": first.early_stop_iteration, "es_all": g.early_stop_iteration.mean(),
        "reinits": g.size()})
    by_level = per_trial.groupby("level")
    out = by_level.mean().assign(trials=by_level.size(), reinits=by_level.reinits.min())
    ticket = tk.groupby("level").agg(acc_ticket=("early_stop_test_acc", "mean"),
                                     es_ticket=("early_stop_iteration", "mean"))
    return out.join(ticket).sort_values("pm", ascending=False)


def replicate_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per pruned level of :func:`replicated_controls`: the ticket, the first re-init alone
    (what a one-re-init run measures) and the mean of all re-inits, for the test accuracy
    and the iteration at early stop, plus the spread among one trial's re-inits (max - min,
    averaged over trials)."""
    if rows.empty:
        return pd.DataFrame()
    lv = _replicate_levels(rows)

    def its(xs: pd.Series) -> list[str]:
        return [f"{x:,.0f}" for x in xs]

    return pd.DataFrame({
        "Pm": [pct(p) for p in lv.pm], "trials": lv.trials.astype(int),
        "re-inits": lv.reinits.astype(int),
        "test acc. (ticket)": [pct(x, 2) for x in lv.acc_ticket],
        "test acc. (re-init 1)": [pct(x, 2) for x in lv.acc_first],
        "test acc. (re-init mean)": [pct(x, 2) for x in lv.acc_all],
        "re-init spread (pp)": [f"{100 * x:.2f}" for x in lv.acc_spread],
        "early stop (ticket)": its(lv.es_ticket), "early stop (re-init 1)": its(lv.es_first),
        "early stop (re-init mean)": its(lv.es_all),
    }).reset_index(drop=True)


def replicate_shift(rows: pd.DataFrame) -> dict[str, float]:
    """How far the one-re-init estimate lies from the all-re-inits mean over pruned levels:
    the largest and the mean absolute shift of the test accuracy at early stop (pp) and of
    the early-stop iteration, beside the mean ticket - re-init gap (pp) that the controls are
    there to measure."""
    lv = _replicate_levels(rows)
    d_acc = 100 * (lv.acc_first - lv.acc_all).abs()
    d_es = (lv.es_first - lv.es_all).abs()
    return {"levels": float(len(lv)), "max_acc_pp": float(d_acc.max()),
            "mean_acc_pp": float(d_acc.mean()), "max_es": float(d_es.max()),
            "mean_es": float(d_es.mean()),
            "mean_gap_pp": float(100 * (lv.acc_ticket - lv.acc_all).mean())}


def replicate_text(rows: pd.DataFrame, name: str) -> str:
    """One paragraph on :func:`replicated_controls`: which trials have several re-inits and
    how far one re-init's estimate lies from their mean, against the gap it is meant for."""
    seeds = sorted(int(x) for x in rows.seed.unique())
    k = int(rows.reinits.min())
    sh = replicate_shift(rows)
    ratio = sh["mean_acc_pp"] / abs(sh["mean_gap_pp"]) if sh["mean_gap_pp"] else float("nan")
    return (f"**{name}:** {len(seeds)} trial(s) (seed(s) {', '.join(map(str, seeds))}) re-run "
            f"with {k} re-initialisations per level. Over the {sh['levels']:.0f} pruned levels, "
            f"the first re-init's test accuracy at early stop lies on average "
            f"{sh['mean_acc_pp']:.2f} pp (at most {sh['max_acc_pp']:.2f} pp) from the mean of "
            f"all {k}, and its early-stop iteration on average {sh['mean_es']:,.0f} (at most "
            f"{sh['max_es']:,.0f}) iterations from theirs. The ticket's lead over the re-inits "
            f"averages {sh['mean_gap_pp']:+.2f} pp, so the single re-init's error is "
            f"{ratio:.0%} of the difference the control is there to measure.")

# --- the claims ledger --------------------------------------------------------------------

CHAPTER_FIGURES = {"05_figure1": ("1",), "06_iterative_pruning": ("3", "4a", "4b", "12", "4c"),
                   "07_global_pruning": ("8",)}
LEDGER_COLUMNS = ["claim", "dataset", "statement", "paper", "ours", "95% CI", "verdict",
                  "profile", "trials", "levels"]


def ledger(runs_dir: str | Path | None = None, datasets: tuple[str, ...] | list[str] | None
           = None, profile: str | None = None, figures: tuple[str, ...] | None = None,
           write: bool = False) -> pd.DataFrame:
    """The claims ledger computed from the store by :mod:`lthlib.claims` (nothing trained).

    ``profile`` None or "auto": each claim at the largest profile with results. ``figures``
    restricts the claims (e.g. ``("1",)``). ``write`` stores it as ``<runs>/claims.csv``.
    """
    from . import claims
    from .store import atomic_write_text, df_to_csv_text

    chosen = [c for c in claims.CLAIMS if figures is None or c.figure in figures]
    prof = None if profile in (None, "auto") else profile
    names = tuple(datasets or DATASET_NAMES)
    df = claims.evaluate_claims(runs_dir, names, prof, chosen)
    lenet_sets = [d for d in names if d in LMC_DATASETS]
    if figures is None and lenet_sets:
        # the "beyond the paper" group, each claim at the largest profile holding
        # linear-mode-connectivity measurements
        df = pd.concat([df, evaluate_lmc_claims(runs_dir, lenet_sets)], ignore_index=True)
    if write:
        atomic_write_text(resolve_runs_dir(runs_dir) / "claims.csv", df_to_csv_text(df))
    return df


def chapter_ledger(contexts: list[Context | None], figures: tuple[str, ...] | None = None
                   ) -> pd.DataFrame:
    """Verdict rows of a chapter: its figures' claims, for each shown dataset at the profile
    shown for it."""
    from .claims import CSV_COLUMNS

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


def verdict_table(df: pd.DataFrame, statement: bool = True) -> pd.DataFrame:
    """The ledger formatted for reading: dataset names, rounded numbers with their 95%
    interval, verdicts from shortened profiles marked "indicative", no empty cells."""
    out = df.copy()
    out["dataset"] = out["dataset"].map(lambda d: DATASET_NAMES.get(d, d))
    out["95% CI"] = [ledger_interval(lo, hi) for lo, hi in zip(out["ci_low"], out["ci_high"])]
    out["ours"] = [ledger_number(v) for v in out["ours"]]
    evidence = out["evidence"].fillna("") if "evidence" in out else pd.Series("", out.index)
    out["verdict"] = [(f"**{v}**" if v != "not run" else v)
                      + (" (indicative)" if e == "indicative" else "")
                      for v, e in zip(out["verdict"], evidence)]
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


def evidence_note(df: pd.DataFrame) -> str:
    """Which profiles count in the totals and how many verdicts are only indicative,
    computed from the ledger and :data:`lthlib.claims.TESTING_PROFILES`."""
    from .claims import CLAIMS, COUNTED_PROFILE, TESTING_PROFILES

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
    on: the per-trial early-stop iterations, the ratio of means, its bootstrap interval, the
    paper's band and the verdict. Every number comes from the store and the claim's rule."""
    from . import claims
    from .verdicts import bootstrap_draws

    c = claims.get_claim(claim_id)
    rule = c.rule
    lo, hi = rule.value / rule.factor, rule.value * rule.factor
    rows = df[(df["claim"] == claim_id) & (df["verdict"] != "not run")]
    if rows.empty:
        return "*The stored results do not reach this claim yet.*"
    out = []
    for r in rows.to_dict("records"):
        ev, prof = claims.claim_evidence(c, r["dataset"], runs_dir, r["profile"])
        trials = claims.trial_values(ev, claims.IMP, claims.ES, 0.211)
        pms = ev.table(claims.need_key(claims.IMP), claims.ES, "ticket")[0]
        pm = float(pms[claims.nearest_level(pms, 0.211)])
        a = claims.assess(c, ev)
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
            text += (f"With {n} trial(s) there is nothing to redraw, so there is no interval "
                     f"and the verdict is **{a.verdict}**.")
        else:
            where = ("lies wholly inside that band" if a.verdict == "reproduced" else
                     "lies wholly outside that band" if a.verdict == "not reproduced" else
                     f"reaches past the band's {'upper' if a.ci.high > hi else 'lower'} edge, "
                     f"so these trials cannot tell")
            d = bootstrap_draws(n)
            how = (f"Every way of drawing {n} trials from these {n} with replacement "
                   f"({len(d.probs):,} distinct draws, each weighted by its probability)"
                   if d.exact else f"{len(d.probs):,} random draws of {n} of these {n} trials "
                   f"with replacement")
            text += (f"{how}, each draw keeping a seed's ticket and re-init together, and the "
                     f"ratio recomputed for each, gives values whose middle 95% runs from "
                     f"**{a.ci.low:.2f}x to "
                     f"{a.ci.high:.2f}x**. The paper's {rule.value:g}x, within our factor "
                     f"{rule.factor:g}, allows {lo:.2f}x to {hi:.2f}x. The interval {where}: "
                     f"**{a.verdict}**.")
        out.append(text)
    return "\n\n".join(out)


# --- executing and building ---------------------------------------------------------------

def toc_chapters(root: Path = REPO) -> list[str]:
    """Document paths of the table of contents (``book/intro``, ...), in reading order."""
    import yaml  # jupyter-book's dependency

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def execution_order(root: Path = REPO) -> list[Path]:
    """Chapters in reading order, except the introduction last: its claims ledger and
    hardware table summarise what the other chapters just stored."""
    paths = [root / f"{f}.ipynb" for f in toc_chapters(root)]
    intro = paths[0]
    return paths[1:] + [intro]


def execute_chapter(path: str | Path, output: str | Path | None = None,
                    parameters: dict[str, Any] | None = None, log_output: bool = True,
                    cwd: str | Path | None = None) -> Path:
    """Run one chapter with papermill (in place unless ``output``), streaming its output."""
    import papermill as pm

    path = Path(path)
    out = Path(output) if output is not None else path
    with _inline_figures():
        # log_output streams the kernel's stderr (training progress bars) to the terminal
        pm.execute_notebook(str(path), str(out), parameters=parameters or {},
                            kernel_name=KERNEL, cwd=str(cwd or path.parent),
                            progress_bar=log_output,
                            stderr_file=sys.stderr if log_output else None,
                            request_save_on_cell_execute=True)
    clean_notebook(out)
    return out


@contextmanager
def _inline_figures() -> Iterator[None]:
    """Kernels inherit MPLBACKEND; a non-interactive one (Agg, as CI sets) would leave every
    figure as a ``<Figure ...>`` string instead of a PNG in the notebook, so papermill's
    kernels always get the inline backend."""
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _is_stderr(output: dict[str, Any]) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"


def clean_notebook(path: str | Path) -> Path:
    """Drop what only the terminal needs from an executed notebook: stderr (progress bars,
    warnings) of cells whose output nbval does not check, and per-cell timing metadata.
    The book never shows stderr (``nb_output_stderr: remove``); this keeps the stored
    notebooks small and their diffs meaningful."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and CHECK_MARKER not in cell.source:
            cell.outputs = [o for o in cell.outputs if not _is_stderr(o)]
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
        meta.pop(key, None)
    nbformat.write(nb, path)
    return path


def build(parameters: dict[str, Any] | None = None, chapters: list[str] | None = None,
          html: bool = True, root: Path = REPO) -> Path | None:
    """Execute the chapters in place (introduction last), then build the HTML."""
    order = execution_order(root)
    if chapters:
        wanted = {get_chapter(c).name for c in chapters}
        order = [p for p in order if p.stem in wanted]
    for i, path in enumerate(order, 1):
        print(f"[{i}/{len(order)}] executing {path.relative_to(root)}", flush=True)
        execute_chapter(path, parameters=parameters)
    return build_html(root=root) if html else None


def build_html(root: Path = REPO, output: str | Path | None = None, check: bool = True) -> Path:
    """``jupyter-book build`` of the executed notebooks; returns the html folder."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
           str(root), "--all"]
    if output is not None:
        cmd += ["--path-output", str(output)]
    subprocess.run(cmd, check=True, cwd=root)
    html = Path(output or root) / "_build" / "html"
    if check:
        problems = check_site(html, root)
        if problems:
            raise RuntimeError("site check failed:\n" + "\n".join(problems))
    return html


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        elif tag == "img" and a.get("src"):
            self.imgs.append(a["src"] or "")


def _internal_target(page: Path, ref: str) -> tuple[Path | None, str]:
    parsed = urlparse(ref)
    if parsed.scheme or parsed.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None, ""
    target = page if not parsed.path else (page.parent / unquote(parsed.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, parsed.fragment


def check_site(path: str | Path, root: Path = REPO) -> list[str]:
    """Problems of a built site (empty list = fine): ``index.html`` and every chapter page
    exist, every internal link points at an existing file (and anchor, within chapter pages),
    every ``<img>`` file is present."""
    html = Path(path)
    problems: list[str] = []
    expected = [html / "index.html"] + [html / f"{f}.html" for f in toc_chapters(root)]
    problems += [f"missing page {p.relative_to(html)}" for p in expected if not p.exists()]
    pages = {p.resolve(): p for p in html.rglob("*.html")
             if not p.relative_to(html).parts[0].startswith("_")}
    parsed: dict[Path, _Links] = {}
    for page in pages:
        links = _Links()
        links.feed(page.read_text(errors="replace"))
        parsed[page] = links
    for page, links in parsed.items():
        rel = page.relative_to(html.resolve())
        for src in links.imgs:
            target, _ = _internal_target(page, src)
            if target is not None and not target.exists():
                problems.append(f"{rel}: image {src} not found")
        for href in links.hrefs:
            target, frag = _internal_target(page, href)
            if target is None:
                continue
            if not target.exists():
                problems.append(f"{rel}: broken link {href}")
            elif frag and target.suffix == ".html" and target in parsed \
                    and frag not in parsed[target].ids:
                problems.append(f"{rel}: link {href} names a missing anchor")
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(url_or_file: str | Path, png: str | Path, width: int = 1280,
               height: int = 2000, timeout: float = 120.0) -> Path:
    """A PNG of a page through headless Chromium (install: ``apt-get install chromium``)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (looked for chromium, chromium-browser, "
                                "google-chrome); install it with `apt-get install -y chromium`")
    target = str(url_or_file)
    if "://" not in target:
        target = Path(target).resolve().as_uri()
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lth-chromium-") as profile_dir:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile_dir}", f"--screenshot={png}",
               f"--window-size={width},{height}", target]
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    if not png.exists():
        raise RuntimeError(f"Chromium produced no screenshot at {png}")
    return png


# --- command line -------------------------------------------------------------------------

def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("profile", "dataset", "trials", "runs_dir", "device", "executor"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lthlib.book", description=(
        "Execute the book's chapters with papermill and build the Jupyter Book."))
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute every chapter in place, then build the HTML")
    b.add_argument("--profile", choices=("auto",) + PROFILES, default=None,
                   help="default: each notebook's own parameter (auto)")
    b.add_argument("--dataset", default=None)
    b.add_argument("--trials", type=int, default=None)
    b.add_argument("--runs-dir", dest="runs_dir", default=None)
    b.add_argument("--device", default=None)
    b.add_argument("--executor", choices=("local", "ray"), default=None)
    b.add_argument("--chapters", nargs="+", default=None,
                   help="only these chapters (file stems), e.g. 05_figure1 intro")
    b.add_argument("--no-html", action="store_true", help="execute only")
    h = sub.add_parser("html", help="build _build/html from the executed notebooks")
    h.add_argument("--output", default=None, help="folder for _build (default: the repo)")
    c = sub.add_parser("check", help="check a built site: pages, links, images")
    c.add_argument("path", nargs="?", default=str(REPO / "_build" / "html"))
    s = sub.add_parser("screenshot", help="PNG of a page via headless Chromium")
    s.add_argument("target")
    s.add_argument("png")
    s.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            html = build(_parameters(args), args.chapters, html=not args.no_html)
            if html is not None:
                print(f"built {html / 'index.html'}")
        elif args.command == "html":
            html = build_html(output=args.output)
            print(f"built {html / 'index.html'}")
        elif args.command == "check":
            problems = check_site(args.path)
            print("\n".join(problems) if problems else f"site OK: {args.path}")
            return 1 if problems else 0
        elif args.command == "screenshot":
            print(screenshot(args.target, args.png, height=args.height))
    except (ValueError, FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The book's chapters as data: what each one reads from ``runs/`` and which profile and how
many trials it shows.

A chapter shows the largest profile whose results are complete in the store (``paper`` >
``quick`` > ``mini`` > ``smoke``), with as many trials as every experiment it needs has
finished; when the store holds nothing for it yet, its fallback profile (``quick``; ``mini``
for ResNet-18) is what the chapter then trains.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from lthlib.config.paper import PROFILE_ORDER, PROFILES, RESNET_LR_SETTINGS, check_choice
from lthlib.config.experiment import ExperimentConfig, make_experiment
from lthlib.util.paths import book_dir
from lthlib.store.run_store import RunStore


@dataclass(frozen=True)
class Need:
    """One experiment a chapter reads: experiment name, network and (Figure 8) lr setting."""

    experiment: str
    arch: str = "lenet"
    lr_setting: str = ""
    rewind_iteration: int = 0  # late rewinding (beyond the paper): survivors reset to θk

    @property
    def key(self) -> str:
        """Short name used to look results up in a :class:`Context` (``imp``,
        ``global-imp/lr0.1``, ``global-imp/lr0.1/rewind429``)."""
        return (self.experiment + (f"/{self.lr_setting}" if self.lr_setting else "")
                + (f"/rewind{self.rewind_iteration}" if self.rewind_iteration else ""))

    def config(self, dataset: str, profile: str, trials: int = 1,
               rounds: int | None = None) -> ExperimentConfig:
        """The experiment config of this need (the paper's settings with ``profile``)."""
        return make_experiment(self.experiment, self.arch, dataset, profile, trials,
                               lr_setting=self.lr_setting or None, rounds=rounds,
                               rewind_iteration=self.rewind_iteration)


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


# One epoch of FashionMNIST's 55,000 training images at batch 128: the late-rewinding point
# of Figure 8's fourth panel (Frankle et al. 2019 rewind to a small fraction of training).
FIG8_REWIND_ITERATION = 429
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
    Chapter("07_global_pruning", "Global pruning and learning rates (Figure 8)", "7.7",
            _FIG8, arch="resnet18", datasets=("fashionmnist", "cifar10"),
            fallback="converged-cpu"),
    # beyond the assignment: reads IMP trials that stored their masks (lthlib.experiments.tickets)
    Chapter("08_examining_tickets", "Beyond the assignment: examining the tickets", "beyond",
            datasets=("mnist", "fashionmnist")),
    Chapter("beyond_own_network", "A ticket in your own network", "beyond"),
    Chapter("appendix_statistics", "Appendix: how verdicts are computed", "appendix"),
    Chapter("appendix_fashion_mlp", "Appendix: a FashionMNIST MLP", "appendix",
            (Need("imp", "mlp"),), arch="mlp", datasets=("fashionmnist",)),
)


def get_chapter(name: str) -> Chapter:
    """The chapter called ``name`` (file stem, e.g. ``06_iterative_pruning``)."""
    names = tuple(c.name for c in CHAPTERS)
    return CHAPTERS[names.index(check_choice("chapter", name, names))]


def chapter_path(chapter: Chapter | str, book: str | os.PathLike | None = None) -> Path:
    """The chapter's notebook in ``book`` (default: the repository's ``book/``)."""
    name = chapter.name if isinstance(chapter, Chapter) else get_chapter(chapter).name
    return book_dir(book) / f"{name}.ipynb"


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


def compute_allowed(compute: bool | None = None) -> bool:
    """``compute`` if given, else env LTH_BOOK_COMPUTE (default on; "0" = read only): whether
    a chapter may train what the store lacks."""
    if compute is not None:
        return compute
    return os.environ.get("LTH_BOOK_COMPUTE", "1").lower() not in ("0", "false", "no")

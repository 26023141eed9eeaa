"""A chapter's view of the store: :func:`prepare` resolves the profile and trials it shows
and lists what the store lacks; the :class:`Context` then reads the results and writes the
paragraphs every chapter prints about them (what ran, where, and how it differs from the
paper).

Training is not done here: a chapter's cell trains ``ctx.missing`` itself with
``lth.run_experiment``, so a reader goes from the cell straight to the experiment.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lthlib.config.paper import PROFILES, check_choice, paper_prune
from lthlib.config.experiment import ExperimentConfig
from lthlib.config.profiles import get_profile
from lthlib.store.run_store import RunStore, resolve_runs_dir
from lthlib.report.chapters import (Chapter, complete_profiles, compute_allowed, finished_trials,
                                    get_chapter, resolve_profile, resolve_trials)
from lthlib.report.replicates import replicated_controls
from lthlib.report.text import (DATASET_NAMES, PAPER_RANDOM_TRIALS, PAPER_REINITS, PAPER_TRIALS,
                                describe_record_hardware, deviations_markdown, format_wall_time,
                                pct)

PAPER_ARCHS = ("lenet", "conv2", "conv4", "conv6", "resnet18", "vgg19")  # the paper's networks


@dataclass
class Context:
    """Everything a chapter shows: resolved profile, trials and the experiments' results.

    ``ctx[key]`` (a :attr:`Need.key`, e.g. ``"imp"``) reads that experiment's finished
    trials from the store the first time it is asked for, so what a cell trained after
    :func:`prepare` is what the chapter shows."""

    chapter: Chapter
    dataset: str
    profile: str
    trials: int
    runs_dir: Path
    results: dict[str, Any] = field(default_factory=dict)  # need key -> ExperimentResult
    rounds: int | None = None  # IMP rounds when overridden (else the profile's)
    missing: list[ExperimentConfig] = field(default_factory=list)  # what the store lacked

    def config(self, key: str) -> ExperimentConfig:
        """The experiment config behind ``ctx[key]``."""
        needs = {n.key: n for n in self.chapter.needs}
        need = needs[check_choice("result", key, tuple(needs))]
        return need.config(self.dataset, self.profile, self.trials, self.rounds)

    def __getitem__(self, key: str) -> Any:
        if key not in self.results:
            self.results[key] = RunStore(self.runs_dir).results(self.config(key))
        return self.results[key]

    def shown(self) -> dict[str, Any]:
        """The results of every experiment the chapter needs (read now if not yet)."""
        for need in self.chapter.needs:
            self[need.key]
        return self.results

    def records(self) -> list[dict[str, Any]]:
        return [tr.record for res in self.shown().values() for tr in res.trials]

    def hardware(self) -> str:
        """The devices the shown results were computed on (from the records)."""
        names = sorted({describe_record_hardware(r) for r in self.records()})
        return "; ".join(names) if names else "nothing trained"

    def wall_time_s(self) -> float:
        return float(sum(r.get("wall_time_s", 0.0) for r in self.records()))

    def wall_time_text(self) -> str:
        """The summed training time, as a lower bound where a record says it is partial."""
        return format_wall_time(self.wall_time_s(), self.records())

    def trials_text(self) -> str:
        """Trials per point as shown: ``2``, or ``1-2`` where a partly run chapter's
        experiments have different numbers of finished trials."""
        counts = sorted({len(res.trials) for res in self.shown().values() if res.trials})
        if len(counts) > 1:
            return f"{counts[0]}-{counts[-1]}"
        return str(counts[0] if counts else self.trials)

    def describe(self) -> str:
        """One Markdown paragraph: dataset, profile, trials, hardware and training time."""
        p = get_profile(self.profile)
        about = p.description
        if self.chapter.arch not in PAPER_ARCHS and self.profile == "paper":
            about = "the full budget of its reference settings; the paper has no such network"
        text = (f"**Results shown:** dataset **{DATASET_NAMES[self.dataset]}**, profile "
                f"**{self.profile}** ({about}), **{self.trials_text()}** trial(s) "
                f"per point "
                f"(the paper: {PAPER_TRIALS}). Trained on {self.hardware()}, "
                f"{self.wall_time_text()} of training in total.")
        reinits = sorted({res.config.reinits for res in self.shown().values()})
        if reinits:
            text += (f" Controls: **{'/'.join(map(str, reinits))}** re-initialised network(s) "
                     f"per trial and pruning level, and in one-shot runs as many randomly "
                     f"sampled sparse networks (the paper: {PAPER_REINITS} re-initialisations "
                     f"per trial, {PAPER_RANDOM_TRIALS} random sparse networks).")
        return text + self.reuse_text() + self.sparse_text()

    def sparse_text(self) -> str:
        """A sentence on trials whose sparsest networks ran on the engine's sparse path."""
        below = sorted({tr.record["sparse_path_below_density"] for res in self.shown().values()
                        for tr in res.trials if tr.record.get("sparse_path_below_density")})
        if not below:
            return ""
        n = sum(1 for res in self.shown().values() for tr in res.trials
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
        """A sentence on trials that extend an earlier, shallower trial (lthlib.store.extension)."""
        notes = [tr.record["reused_from"] for res in self.shown().values()
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
        if self.shown() and self.trials < PAPER_TRIALS:
            out.append(f"{self.trials_text()} trial(s) per point instead of the paper's "
                       f"{PAPER_TRIALS}.")
        reinits = sorted({res.config.reinits for res in self.shown().values()
                          if res.config.experiment in ("imp", "global-imp", "oneshot")})
        if reinits and reinits != [PAPER_REINITS]:
            line = (f"{'/'.join(map(str, reinits))} re-initialisation(s) per trial and "
                    f"level instead of the paper's {PAPER_REINITS}.")
            if "imp" in self.shown() and self.profile in PROFILES:
                extended = replicated_controls(self.dataset, self.profile, "imp",
                                               self.chapter.arch, self.runs_dir)
                if not extended.empty:
                    line += (f" {extended.seed.nunique()} IMP trial(s) also have "
                             f"{int(extended.reinits.min())}, shown in a separate table.")
            out.append(line)
        randoms = sorted({max(1, res.config.reinits) for res in self.shown().values()
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
            pms = [float(res.summary.pm.min()) for res in self.shown().values()]
            lines.append(line + (f": the sparsest level shown is Pm = {pct(min(pms))}."
                                 if pms else "."))
        if lines:
            text += "\n\n**Trials and controls:**\n\n" + "\n".join(f"- {x}" for x in lines)
        return text



def prepare(chapter: str | Chapter, profile: str = "auto", dataset: str | None = None,
            trials: int = 0, runs_dir: str | Path | None = None, rounds: int | None = None,
            compute: bool | None = None, partial: bool = False) -> Context:
    """Resolve the profile and trials ``chapter`` shows and list in ``ctx.missing`` the
    experiment configs whose trials the store lacks; nothing is trained here.

    With computing switched off (``compute=False`` or LTH_BOOK_COMPUTE=0) a missing result
    is an error naming what to run, unless ``partial``: then the chapter shows what is
    finished and names the rest (a chapter whose runs take longer than one sitting), each
    experiment with all its finished trials (``trials=0``), so settings may differ."""
    chap = chapter if isinstance(chapter, Chapter) else get_chapter(chapter)
    dataset = check_choice("dataset", dataset or chap.datasets[0], tuple(DATASET_NAMES))
    root = resolve_runs_dir(runs_dir)
    prof = resolve_profile(chap.needs, root, profile, dataset, rounds, chap.fallback)
    n = resolve_trials(chap.needs, dataset, prof, trials, root, rounds)
    if partial and not trials:  # a partly run chapter shows every trial any setting has
        n = max([n] + [finished_trials(need, dataset, prof, root, rounds)
                       for need in chap.needs])
    missing = [need for need in chap.needs
               if finished_trials(need, dataset, prof, root, rounds) < n]
    if missing and not partial and not compute_allowed(compute):
        raise FileNotFoundError(
            f"{chap.name}: no finished results for {[m.key for m in missing]} "
            f"({dataset}, profile {prof}, {n} trial(s)) in {root}, and computing is off "
            f"(LTH_BOOK_COMPUTE=0); run `make book` or pass compute=True")
    if missing and compute_allowed(compute):
        print(f"{chap.name}: to compute {', '.join(m.key for m in missing)} ({dataset}, "
              f"profile {prof}, {n} trial(s)) into {root}", file=sys.stderr, flush=True)
    return Context(chap, dataset, prof, n, root, rounds=rounds,
                   missing=[m.config(dataset, prof, n, rounds) for m in missing])


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
    return prepare(chap, done[0], dataset, 0, runs_dir, rounds=rounds, compute=False)


def with_stored_datasets(ctx: Context, profile: str = "auto") -> list[Context]:
    """``ctx`` followed by the chapter's other datasets whose results are already stored
    (the second dataset column of the figure chapters; nothing is computed for them)."""
    others = [prepare_existing(ctx.chapter, d, profile, ctx.runs_dir)
              for d in ctx.chapter.datasets if d != ctx.dataset]
    return [ctx] + [c for c in others if c is not None]

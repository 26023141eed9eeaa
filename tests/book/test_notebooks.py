"""The book's chapters run: every notebook executes through papermill at the smoke profile into
a temporary store, and the committed notebooks re-execute to their stored outputs (nbval).

Also checks the report's profile resolution (lthlib.report.chapters), which decides what
every chapter shows, and the paragraphs a chapter's Context writes.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
import sys
from pathlib import Path

import nbformat
import pytest

from lthlib.util.paths import repo_root
from lthlib.report import build, chapters, context, overview
from lthlib.report.chapter_params import declared_parameters
from lthlib.report import text as report_text

REPO = repo_root(Path(__file__).parent)
# Execution order: the introduction last, so its ledger sees the other chapters' results.
# ResNet-18 training would dominate (over 20 minutes on 2 CPU cores even at the smoke
# profile), so chapter 7.7 executes read-only against the committed runs/ instead
# (test_figure8_chapter_executes_read_only); the other chapters train at the smoke profile.
READ_ONLY = ("07_global_pruning",)
ORDER = [p.stem for p in build.execution_order(REPO) if p.stem not in READ_ONLY]
# Chapter parameters for the smoke run (besides profile, trials, runs_dir).
SMOKE_EXTRA = {"03_training": {"rerun_iterations": 30},
               "appendix_fashion_mlp": {"demo_iterations": 100},
               "08_examining_tickets": {"trials": 2, "lmc_points": 5},
               "appendix_statistics": {"reps": 200},
               "beyond_own_network": {"budget": "smoke"}}
# Chapters that do not (yet) read their parameters through check_params.
UNCHECKED_PARAMETERS: tuple[str, ...] = ()


def _images(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke-runs")


def _errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [f"{o.ename}: {o.evalue}" for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def test_every_toc_chapter_is_known() -> None:
    assert [f"book/{c.name}" for c in chapters.CHAPTERS] == build.toc_chapters(REPO)
    for chapter in chapters.CHAPTERS:
        nb = nbformat.read(chapters.chapter_path(chapter, REPO / "book"), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), chapter.name
        assert "import" in code[1].source, chapter.name  # the imports cell follows


def test_resolve_profile_empty_store(tmp_path: Path) -> None:
    needs = chapters.get_chapter("06_iterative_pruning").needs
    assert chapters.resolve_profile(needs, tmp_path) == "quick"
    assert chapters.resolve_profile(needs, tmp_path, "paper") == "paper"
    assert chapters.resolve_trials(needs, "mnist", "quick", 0, tmp_path) == 1
    with pytest.raises(ValueError, match="allowed"):
        chapters.resolve_profile(needs, tmp_path, "huge")
    with pytest.raises(FileNotFoundError, match="computing is off"):
        context.prepare("06_iterative_pruning", runs_dir=tmp_path, compute=False)


@pytest.mark.parametrize("name", ORDER)
def test_chapter_executes_at_smoke(name: str, smoke_runs: Path, tmp_path: Path) -> None:
    params = {"profile": "smoke", "trials": 1, "runs_dir": str(smoke_runs), "device": "cpu",
              **SMOKE_EXTRA.get(name, {})}
    declared = declared_parameters(name, REPO / "book")  # a chapter refuses unknown names
    path = chapters.chapter_path(name, REPO / "book")
    out = build.execute_chapter(path, tmp_path / f"{name}.ipynb",
                                {k: v for k, v in params.items() if k in declared},
                                log_output=False)
    assert not _errors(out)
    if _images(path):  # a chapter that draws stores PNGs, not reprs
        assert _images(out) > 0, f"{name}: no figure was stored as an image"
    chapter = chapters.get_chapter(name)
    if chapter.needs:  # what the chapter computed is now in the store, found by "auto"
        rounds = SMOKE_EXTRA.get(name, {}).get("rounds")
        assert "smoke" in chapters.complete_profiles(chapter.needs, chapter.datasets[0],
                                                 smoke_runs, rounds)
    if name == "intro":
        assert (smoke_runs / "claims.csv").exists()


def test_figure8_chapter_executes_read_only(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Chapter 7.7 through papermill with computing off, on the ResNet-18 results committed
    in runs/ (however many settings have finished): every cell runs (reading, figure, tables,
    ledger, discussion), its figure is a PNG, and nothing is trained."""
    name = READ_ONLY[0]
    monkeypatch.setenv("LTH_BOOK_COMPUTE", "0")
    out = build.execute_chapter(chapters.chapter_path(name, REPO / "book"),
                                tmp_path / f"{name}.ipynb",
                                {"runs_dir": str(REPO / "runs"), "device": "cpu"},
                                log_output=False)
    assert not _errors(out)
    assert _images(out) > 0, f"{name}: no figure was stored as an image"


def _committed_results_present(name: str) -> bool:
    chapter = chapters.get_chapter(name)
    if name in READ_ONLY:  # chapter 7.7 shows whichever of its settings have finished
        return True
    return not chapter.needs or bool(chapters.complete_profiles(chapter.needs, chapter.datasets[0],
                                                               rounds=chapter.rounds))


@pytest.mark.parametrize("name", [c.name for c in chapters.CHAPTERS])
def test_committed_notebook_reproduces(name: str) -> None:
    """nbval --nbval-lax: cells tagged nbval-check-output must give their stored output again
    when re-executed against the committed runs/ (reading only: LTH_BOOK_COMPUTE=0)."""
    if not _committed_results_present(name):
        pytest.skip(f"runs/ holds no results for {name}; `make book` computes and commits them")
    env = {**os.environ, "LTH_BOOK_COMPUTE": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout", "600",
         str(chapters.chapter_path(name, REPO / "book"))],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_figure8_coverage_shows_no_mini_and_partial_runs(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Chapter 7.7 shows the converged-cpu profile: its 300-iteration mini runs count as not
    run, and a profile with some settings finished reads as partly run, with their trials."""
    import shutil

    for d in (REPO / "runs" / "global-imp").glob("resnet18-fashionmnist-mini-*"):
        shutil.copytree(d, tmp_path / "global-imp" / d.name)
    table = overview.coverage_table(tmp_path)
    row = table[table.chapter.str.startswith("7.7") & (table.dataset == "FashionMNIST")]
    assert row.status.tolist() == ["not run"]

    def fake(need: chapters.Need, dataset: str, profile: str, *args: object) -> int:
        return 2 if (need.lr_setting, dataset, profile) == ("lr0.1", "fashionmnist",
                                                            "converged-cpu") else 0
    monkeypatch.setattr(overview, "finished_trials", fake)
    monkeypatch.setattr(overview, "complete_profiles", lambda *a, **k: [])
    table = overview.coverage_table(tmp_path)
    row = table[table.chapter.str.startswith("7.7") & (table.dataset == "FashionMNIST")]
    assert row["profile shown"].tolist() == ["converged-cpu"] and row.trials.tolist() == [2]
    assert row.status.iloc[0] == "partly run (converged-cpu profile: 1 of 3 experiments)"
    assert "7.7" in overview.coverage_text(table).split("**At reduced settings:**")[1]


def test_deviations_state_trials_and_controls_from_the_configs(tmp_path: Path) -> None:
    """The controls line comes from the shown configs, not from text typed into a chapter."""
    from types import SimpleNamespace

    from lthlib.config.experiment import make_experiment

    chapter = chapters.get_chapter("05_figure1")
    results = {e: SimpleNamespace(config=make_experiment(e, "lenet", "mnist", "smoke", 2),
                                  trials=[]) for e in ("imp", "oneshot")}
    text = context.Context(chapter, "mnist", "smoke", 2, tmp_path, results).deviations(["Own."])
    reinits = results["imp"].config.reinits
    assert f"2 trial(s) per point instead of the paper's {report_text.PAPER_TRIALS}" in text
    assert (f"{reinits} re-initialisation(s) per trial and level instead of the paper's "
            f"{report_text.PAPER_REINITS}") in text
    assert f"instead of the paper's {report_text.PAPER_RANDOM_TRIALS}." in text
    assert "\n- Own." in text
    full = {e: SimpleNamespace(config=replace(r.config, reinits=report_text.PAPER_REINITS),
                               trials=[])
            for e, r in results.items()}
    paper = context.Context(chapter, "mnist", "paper", report_text.PAPER_TRIALS, tmp_path, full)
    assert "re-initialisation(s)" not in paper.deviations()
    assert "trial(s) per point" not in paper.deviations()


def test_partial_wall_times_are_shown_as_lower_bounds() -> None:
    assert report_text.format_wall_time(7200, [{"wall_time_s": 7200}]) == "2.0 h"
    text = report_text.format_wall_time(7200, [{"wall_time_s": 7200, "wall_time_complete": False}])
    assert text.startswith("at least 2.0 h")


def test_overview_separates_runs_with_different_levels(tmp_path: Path) -> None:
    """Two records of one seed with 3 and 8 levels are two experiments of one trial each,
    not one experiment with two trials."""
    import json

    for levels, rid in ((3, "a"), (8, "b"), (11, "c")):
        d = tmp_path / "global-imp" / "resnet18-fashionmnist-mini-lr0.01" / f"seed0-{rid}"
        d.mkdir(parents=True)
        # the 11-level trial extends the 8-level one: its time includes that one's 8 min
        reused = {"reused_from": {"wall_time_s": 480.0}} if rid == "c" else {}
        (d / "record.json").write_text(json.dumps({
            "status": "finished", "experiment": "global-imp", "arch": "resnet18",
            "dataset": "fashionmnist", "profile": "mini", "lr_setting": "lr0.01", "seed": 0,
            "levels": levels, "wall_time_s": 60.0 * levels,
            "hardware": {"device": "cpu", "cpu": "AMD EPYC", "cores": 2}, **reused}))
    table = overview.runs_overview(tmp_path)
    assert table.levels.tolist() == [3, 8, 11]
    assert table.trials.tolist() == [1, 1, 1]
    assert table["training time"].tolist() == [
        "3 min", "8 min", "11 min (of which 8 min reused from a smaller run)"]


def test_describe_names_reused_trials(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from lthlib.config.experiment import make_experiment

    chapter = chapters.get_chapter("07_global_pruning")
    cfg = make_experiment("global-imp", "resnet18", "mnist", "smoke", 1, lr_setting="lr0.1")
    trial = SimpleNamespace(record={"reused_from": {"rounds": 7, "networks": 15}})
    results = {"global-imp/lr0.1": SimpleNamespace(config=cfg, trials=[trial])}
    ctx = context.Context(chapter, "mnist", "smoke", 1, tmp_path, results)
    assert "1 of the shown trials extends an earlier finished trial (with 7 rounds): its 15 " \
           "networks were reused" in ctx.reuse_text()
    results["global-imp/lr0.1"].trials = [SimpleNamespace(record={})]
    assert ctx.reuse_text() == "" and ctx.sparse_text() == ""
    results["global-imp/lr0.1"].trials = [
        SimpleNamespace(record={"sparse_path_below_density": 0.15}),
        SimpleNamespace(record={"sparse_path_below_density": None})]
    assert "In 1 of the shown trials, networks with a layer at most 15% dense" in \
        ctx.sparse_text()
    assert ctx.sparse_text().endswith("drift apart slightly.")  # no paired benchmark stored
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "cpu-imp-trial-quick.json").write_text(json.dumps(
        {"profile": "quick", "max_abs_diff_final_test_acc_pp": 0.39,
         "mean_abs_diff_final_test_acc_pp": 0.045}))
    assert ("(in a paired quick IMP trial, final test accuracies differed by at most 0.39 pp, "
            "mean 0.045 pp).") in ctx.sparse_text()


@pytest.mark.parametrize("name", [c.name for c in chapters.CHAPTERS])
def test_machinery_is_out_of_sight(name: str) -> None:
    """Parameters and imports stay in the notebook for papermill but are removed from the
    HTML; nbval's markers are tags, never comments a reader would see; the chapter checks
    its parameters with check_params and reads the checked values."""
    nb = nbformat.read(chapters.chapter_path(name, REPO / "book"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code[:2]:
        assert "remove-cell" in cell.metadata.get("tags", []), (name, cell.source[:60])
    if name not in UNCHECKED_PARAMETERS:
        assert f'params = check_params("{name}", globals())' in code[1].source
        assert "check_chapter_params" not in code[1].source
    for cell in nb.cells:
        assert "NBVAL" not in cell.source, (name, cell.source[:60])


@pytest.mark.parametrize("name", [c.name for c in chapters.CHAPTERS])
def test_every_figure_and_table_cell_has_its_output(name: str) -> None:
    """In the committed notebook, a cell that draws has a PNG and a caption with alt text,
    and a cell that shows a table has a Markdown table."""
    nb = nbformat.read(chapters.chapter_path(name, REPO / "book"), as_version=4)
    if all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"):
        pytest.skip(f"{name} is committed without outputs; `make book` executes it")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kinds = [k for o in cell.get("outputs", []) for k in o.get("data", {})]
        if "plt.show()" in cell.source:
            assert "image/png" in kinds, (name, cell.source[:80])
            figure = cell.metadata.get("mystnb", {})
            assert len(figure.get("figure", {}).get("caption", "")) > 40, name  # says what to see
            assert len(figure.get("image", {}).get("alt", "")) > 20, name
        if "show_table(" in cell.source and "if " not in cell.source:
            tables = [o["data"]["text/markdown"] for o in cell.get("outputs", [])
                      if "text/markdown" in o.get("data", {})]
            assert any("|---" in t or "|:--" in t or "|--" in t for t in tables), \
                (name, cell.source[:80])

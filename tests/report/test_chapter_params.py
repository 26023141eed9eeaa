"""A chapter's papermill parameters: a mistyped name or a bad value stops the chapter in its
first cell with one line, and the chapter reads the checked values (lthlib.report.chapter_params).
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm
import pytest

from lthlib.util.paths import repo_root
from lthlib.report import chapters
from lthlib.report.chapter_params import (ChapterParams, assigned_names, check_params,
                                          declared_parameters, injected_names)

REPO = repo_root(Path(__file__).parent)


def test_declared_parameters_are_the_parameters_cell() -> None:
    assert declared_parameters("05_figure1") == ["profile", "dataset", "trials", "runs_dir",
                                                 "device", "executor"]
    assert "rewind_iteration" in declared_parameters("07_global_pruning")
    assert assigned_names("a = 1  # x\nb: int = 2\nprint(a)\n") == ["a", "b"]
    assert injected_names(["x = 1", "# Parameters\ntrails = 3\n", "y = 2"]) == ["trails"]


def test_check_params_returns_the_checked_values() -> None:
    ns = {"profile": "AUTO", "dataset": "mnist", "trials": 2, "runs_dir": None, "device": None,
          "executor": "local", "In": ["", "profile = 'AUTO'", "# Parameters\ntrials = 2\n"]}
    params = check_params("05_figure1", ns)
    assert isinstance(params, ChapterParams)
    assert params.profile == "auto" and params.trials == 2 and dict(params)["dataset"] == "mnist"
    with pytest.raises(AttributeError, match="allowed: dataset, device"):
        params.trails  # noqa: B018


@pytest.mark.parametrize("injected, message", [
    ({"trails": 3}, "unknown parameter 'trails' for chapter 05_figure1; allowed: profile, "),
    ({"trials": -1}, "trials"),
    ({"profile": "fast"}, "unknown profile 'fast'; allowed:"),
])
def test_bad_parameters_through_papermill_stop_with_one_line(
        injected: dict, message: str, tmp_path: Path) -> None:
    """The chapter's own cells, up to its parameter check, executed by papermill with a
    mistyped name or a bad value: the error is one line naming it (nothing else runs)."""
    nb = nbformat.read(chapters.chapter_path("05_figure1", REPO / "book"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code[:2]  # the parameters cell and the imports with the check
    src = tmp_path / "chapter.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters=injected,
                            kernel_name="python3", cwd=str(REPO / "book"), progress_bar=False)
    assert err.value.ename == "ValueError"
    assert message in err.value.evalue and "\n" not in err.value.evalue

"""The chapter "A ticket in your own network" executes at its smoke budget into a temporary
store: find_ticket on its own CNN, the ticket table, the figure, the export."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from lthlib.util.paths import repo_root
from lthlib.report.build import execute_chapter

CHAPTER = repo_root(Path(__file__).parent) / "book" / "beyond_own_network.ipynb"


def test_chapter_layout():
    nb = nbformat.read(CHAPTER, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert {"parameters", "remove-cell"} <= set(code[0].metadata["tags"])
    assert "import lthlib as lth" in code[1].source
    assert "remove-cell" in code[1].metadata["tags"]
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    paragraph = first.source.split("\n\n")[1]  # the first paragraph after the title
    assert paragraph.startswith("**What you get**") and "**How long:**" in paragraph


@pytest.mark.slow
def test_chapter_runs_at_smoke_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_RUNS_DIR", str(tmp_path / "runs"))
    out = execute_chapter(CHAPTER, tmp_path / "out.ipynb", {"budget": "smoke"},
                          log_output=False)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    text = "\n".join(o.get("text", "") for o in outputs)
    assert "loads back identically: True" in text
    assert len(list((tmp_path / "runs" / "own-network" / "smallcnn-fashionmnist").iterdir())) == 2
    assert os.environ["LTH_RUNS_DIR"] == str(tmp_path / "runs")

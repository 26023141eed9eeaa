"""The one command line: every subcommand is in one parser, and a missing store is a clear error."""
from __future__ import annotations

import pytest

from lthlib import bench
from lthlib.studies import lmc, plateau
from lthlib.cli import build_parser, main
from lthlib.report import build


def test_every_subcommand_has_a_handler():
    parser = build_parser()
    for argv, handler in ((["bench", "--quick"], bench.handle),
                          (["book", "check"], None),
                          (["plateau", "--epochs", "2"], plateau.handle),
                          (["lmc", "--levels", "0", "3"], lmc.handle),
                          (["runs", "ls"], None), (["run", "imp"], None),
                          (["sweep"], None)):
        args = parser.parse_args(argv)
        assert callable(args.handler), argv
        if handler is not None:
            assert args.handler is handler
    assert build.register is not None  # the book registers itself too


@pytest.mark.parametrize("argv", [["runs", "ls"], ["runs", "migrate"],
                                  ["run", "imp", "--profile", "smoke"],
                                  ["plateau", "--epochs", "1"], ["lmc", "--levels", "0"]])
def test_outside_a_repository_the_store_is_a_clear_error(argv, tmp_path, monkeypatch, capsys):
    """No repository above the working directory and no LTH_RUNS_DIR: one line on stderr
    naming both ways to say where the store is, never a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTH_RUNS_DIR", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--runs-dir" in err and "LTH_RUNS_DIR" in err


@pytest.mark.parametrize("alias, argv", [(plateau.main, ["--epochs", "1"]),
                                         (lmc.main, ["--levels", "0"])])
def test_module_aliases_end_the_same_way(alias, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTH_RUNS_DIR", raising=False)
    assert alias(argv) == 2
    assert "--runs-dir" in capsys.readouterr().err

"""Bad inputs, as a new user would type them: each gives one line naming the bad value and
what is allowed (and the path, for files), never a traceback or a silent reinterpretation."""
from __future__ import annotations

import shutil

import pytest
import torch

import lthlib as lth
from lthlib.data import datasets as data, files as data_files
from lthlib.cli import main
from lthlib.config.experiment import make_experiment
from lthlib.experiments.procedures import run_experiment

# argv -> words the single error line must contain (the bad value, then what is allowed)
CLI_CASES = [
    (["run", "imp", "--rounds", "-1"], ["rounds", "-1", ">= 1"]),
    (["run", "imp", "--rounds", "0"], ["rounds", "0", ">= 1"]),
    (["run", "imp", "--device", "bogus"], ["'bogus'", "allowed", "cpu"]),
    (["run", "imp", "--arch", "lenet", "--lr-setting", "lr0.1"], ["lr0.1", "'lenet'",
                                                                 "resnet18"]),
    (["run", "imp", "--trials", "0"], ["trials", "0", ">= 1"]),
    (["run", "imp", "--seed", "-3"], ["seed", "-3", ">= 0"]),
    (["run", "imp", "--reinits", "-1"], ["reinits", "-1", ">= 0"]),
    (["runs", "ls", "--runs-dir", "/nonexistent/store"], ["/nonexistent/store", "allowed"]),
    (["runs", "import", "/nonexistent/other"], ["/nonexistent/other", "not a folder"]),
]


@pytest.mark.parametrize("argv,words", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input_is_one_clear_line(argv, words, tmp_path, capsys):
    if "--runs-dir" not in argv and argv[0] == "run":
        argv = [*argv, "--runs-dir", str(tmp_path), "--profile", "smoke", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, (word, err)
    assert not list(tmp_path.glob("*/*/*/stages"))  # nothing was trained


# call -> words of the ValueError
API_CASES = [
    (lambda tmp: lth.run("imp", rounds=2.5, runs_dir=tmp), ["rounds", "2.5", "integer"]),
    (lambda tmp: lth.run("imp", seed="x", runs_dir=tmp), ["seed", "'x'", "integer"]),
    (lambda tmp: lth.run("imp", trials=True, runs_dir=tmp), ["trials", "True", "integer"]),
    (lambda tmp: lth.run("imp", profile="smoke", runs_dir=tmp, device="bogus"),
     ["'bogus'", "allowed"]),
    (lambda tmp: lth.run("imp", profile="smoke", runs_dir=3), ["runs_dir", "3"]),
    (lambda tmp: lth.run("imp", profile="smoke", runs_dir=tmp, progress="yes", wait=1),
     ["wait", "1", "True or False"]),
    (lambda tmp: lth.run(["imp"], runs_dir=tmp), ["experiment", "['imp']", "string"]),
    (lambda tmp: run_experiment("imp", tmp), ["ExperimentConfig", "str"]),
    (lambda tmp: make_experiment("imp", "lenet", lr_setting="lr0.1"), ["'lr0.1'", "resnet18"]),
    (lambda tmp: make_experiment("imp", "resnet18", lr_setting="../x"), ["'../x'", "lr0.01"]),
    (lambda tmp: lth.create_network("lenet")(torch.zeros(2, 3, 32, 32)),
     ["(2, 3, 32, 32)", "in_shape=(1, 28, 28)", "784"]),
    (lambda tmp: lth.prune_network("lenet"), ["torch.nn.Module", "str"]),
    (lambda tmp: lth.get_dataloaders("mnist", batch_size="60"), ["batch_size", "'60'"]),
    (lambda tmp: lth.load_tensors("mnist", seed=1.5), ["seed", "1.5", "integer"]),
    (lambda tmp: lth.create_network("alexnet"), ["'alexnet'", "lenet"]),
]


@pytest.mark.parametrize("call,words", API_CASES, ids=[str(i) for i in range(len(API_CASES))])
def test_api_bad_input_is_a_clear_value_error(call, words, tmp_path):
    with pytest.raises(ValueError) as err:
        call(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)
    assert not list(tmp_path.glob("*/*/*/stages"))


# --- the chapters' papermill parameters ---------------------------------------------------------

GOOD_PARAMS = [
    ({}, {"profile": "auto", "dataset": "mnist", "trials": 0, "runs_dir": None,
          "device": None, "executor": "local"}),
    ({"profile": "Quick", "dataset": "FashionMNIST", "trials": 3, "device": "cpu",
      "executor": "ray", "rounds": None},
     {"profile": "quick", "dataset": "fashionmnist", "trials": 3, "device": "cpu",
      "executor": "ray", "rounds": None}),
    ({"rounds": 10, "rerun_iterations": 300, "demo_iterations": 1000, "lmc_points": 30,
      "first_seed": 3, "datasets": "mnist fashionmnist"},
     {"rounds": 10, "rerun_iterations": 300, "lmc_points": 30, "first_seed": 3,
      "datasets": "mnist fashionmnist"}),
]

BAD_PARAMS = [
    ({"trials": -1}, ["trials", "-1", ">= 0"]),
    ({"trials": "auto"}, ["trials", "'auto'", "integer"]),
    ({"trials": 2.0}, ["trials", "2.0", "integer"]),
    ({"profile": "fast"}, ["'fast'", "auto", "paper"]),
    ({"profile": 1}, ["profile", "1", "auto"]),
    ({"dataset": "cifar"}, ["'cifar'", "cifar10"]),
    ({"executor": "dask"}, ["'dask'", "local, ray"]),
    ({"device": "bogus"}, ["'bogus'", "cpu"]),
    ({"device": 0}, ["device", "0", "cpu"]),
    ({"runs_dir": 5}, ["runs_dir", "5"]),
    ({"rounds": 0}, ["rounds", "0", ">= 1"]),
    ({"rounds": 2.5}, ["rounds", "2.5", "integer"]),
    ({"lmc_points": 1}, ["lmc_points", "1", ">= 2"]),
    ({"datasets": "mnist svhn"}, ["'svhn'", "fashionmnist"]),
    ({"trails": 3}, ["'trails'", "trials"]),
]


@pytest.mark.parametrize("params,expected", GOOD_PARAMS)
def test_chapter_params_accept_and_normalise(params, expected):
    from lthlib.report.chapter_params import check_chapter_params
    out = check_chapter_params(**params)
    assert {k: out[k] for k in expected} == expected


@pytest.mark.parametrize("params,words", BAD_PARAMS, ids=[str(p[0]) for p in BAD_PARAMS])
def test_chapter_params_refuse_bad_values(params, words):
    from lthlib.report.chapter_params import check_chapter_params
    with pytest.raises(ValueError) as err:
        check_chapter_params(**params)
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)


def test_chapter_params_runs_dir_that_is_a_file(tmp_path):
    from lthlib.report.chapter_params import check_chapter_params
    f = tmp_path / "runs"
    f.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_chapter_params(runs_dir=str(f))
    assert check_chapter_params(runs_dir=str(tmp_path / "new"))["runs_dir"].endswith("new")


# --- damaged data files -----------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_damaged_gz_names_the_file(damage, tmp_path, monkeypatch):
    src = data.resolve_data_root() / "MNIST" / "raw"
    if not (src / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("no gzipped MNIST to copy")
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in data_files.RAW_FILES:
        shutil.copy(src / f"{f}.gz", raw / f"{f}.gz")
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    blob = bad.read_bytes()
    bad.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else b"plain bytes")
    monkeypatch.setenv("LTH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError) as err:
        data.dataset_root("mnist", tmp_path / "data")
    assert str(bad) in str(err.value) and "gzip" in str(err.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]

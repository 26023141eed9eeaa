"""The README stays a front door and the documents stay true: length, links, folder map, and
the call chains docs/architecture.md writes down, checked against the stack of a real run."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import tempfile
import threading
import traceback
from pathlib import Path

import pytest
import torch

import lthlib as lth
from lthlib.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
BUILT = {"_build/html/index.html"}  # written by `make book`, never committed
WORDS = {"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
         "twelve": 12}


def test_readme_is_at_most_150_lines() -> None:
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#", 1)[0]
        if doc == README and path in BUILT:
            continue
        assert (doc.parent / path).exists(), f"{doc.name} links to missing {target}"


def _map_block() -> str:
    text = README.read_text()
    part = text.split("## Where things are", 1)[1]
    return part.split("```", 2)[1]


def test_readme_folder_map_names_what_exists() -> None:
    """Each line of the map starts with the paths it describes (indented: inside lthlib/)."""
    for line in _map_block().strip().splitlines():
        base = ROOT / "lthlib" if line.startswith(" ") else ROOT
        for name in re.split(r"\s{2,}", line.strip())[0].split(", "):
            if name != "...":
                assert (base / name).exists(), f"README's folder map names missing {name}"


def test_readme_command_lines_parse() -> None:
    """Every ``python -m lthlib ...`` line of the README names a command and options that
    exist (parsed, not run)."""
    lines = [ln.split("#", 1)[0].strip() for ln in README.read_text().splitlines()
             if ln.startswith("python -m lthlib ")]
    assert len(lines) >= 5
    for line in lines:
        args = shlex.split(line)[3:]
        if "--help" in args:
            with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as end:
                build_parser().parse_args(args)
            assert end.value.code == 0, line
        else:
            build_parser().parse_args(args)


def test_readme_example_runs_and_prints_what_its_comments_say(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The library example runs as written (its trials are read from the committed store)
    and each ``print`` commented with a number prints that number."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    said = [re.match(r"\s*([\d.]+)", ln.split("#", 1)[1]).group(1)
            for ln in code.splitlines() if ln.startswith("print(") and "#" in ln]
    assert said and printed[:len(said)] == said


def _chains() -> dict[str, tuple[int, list[tuple[str, str]]]]:
    """Per chain heading of docs/architecture.md: the count it states, and its numbered
    (function, file) lines."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    out = {}
    for head, words, block in re.findall(r"^### (.+?): (\w+) calls\n.*?```\n(.*?)```",
                                         text, re.S | re.M):
        rows = [re.match(r"(\d+)\s+(\S+)\s+(\S+)", ln.strip())
                for ln in block.strip().splitlines()]
        assert all(rows), f"a line of the chain under {head!r} is not 'n  function  file'"
        assert [int(r.group(1)) for r in rows] == list(range(1, len(rows) + 1)), head
        out[head] = (WORDS[words], [(r.group(2), r.group(3)) for r in rows])
    return out


class _Stop(Exception):
    pass


def _stack_at_update(monkeypatch: pytest.MonkeyPatch, arch: str, dataset: str, trials: int,
                     threads: int) -> dict[str, list[tuple[str, str]]]:
    """Per thread, the (function, file) lthlib frames at the first optimizer update."""
    seen: dict[str, list[tuple[str, str]]] = {}

    def capture() -> None:
        stack = traceback.extract_stack()
        if any(f.name == "_fused_works" for f in stack):
            return  # the kernel probe while the optimizer is built, not an update
        frames = []
        for f in stack:
            path = Path(f.filename).resolve()
            if path.is_relative_to(ROOT / "lthlib"):
                frames.append((f.name, path.relative_to(ROOT).as_posix()))
        seen.setdefault(threading.current_thread().name, frames)
        raise _Stop

    fused, sgd_step, adam_step = torch._fused_adam_, torch.optim.SGD.step, torch.optim.Adam.step

    def fused_adam(*args, **kwargs):  # type: ignore[no-untyped-def]
        capture()
        return fused(*args, **kwargs)

    def sgd(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        capture()
        return sgd_step(self, *args, **kwargs)

    def adam(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        capture()
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", fused_adam)
    monkeypatch.setattr(torch.optim.Adam, "step", adam)
    monkeypatch.setattr(torch.optim.SGD, "step", sgd)
    experiment = "global-imp" if arch == "resnet18" else "imp"
    cfg = lth.make_experiment(experiment, arch, dataset, "smoke", trials)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as runs, pytest.raises(_Stop):
            lth.run_experiment(cfg, runs, device="cpu", progress=False, reuse=False)
    finally:
        torch.set_num_threads(before)
    return seen


@pytest.mark.parametrize("head,arch,dataset,trials,threads", [
    ("ResNet-18", "resnet18", "fashionmnist", 1, 1),
    ("Conv-2/4/6 and VGG-19", "conv2", "mnist", 1, 1),
    ("LeNet, one network", "lenet", "mnist", 1, 1),
    ("LeNet, a population on threads", "lenet", "mnist", 2, 2),
])
def test_architecture_call_chain_is_the_stack_at_the_update(
        monkeypatch: pytest.MonkeyPatch, head: str, arch: str, dataset: str, trials: int,
        threads: int) -> None:
    count, calls = _chains()[head]
    assert count == len(calls)  # the heading states the chain's length
    assert calls[-1][1] == "torch"  # the last call is torch's update
    stacks = _stack_at_update(monkeypatch, arch, dataset, trials, threads)
    main = stacks.pop("MainThread")
    assert main[[name for name, _ in main].index("run_experiment"):] == calls[:-1]
    if threads > 1:  # the other part's thread, as the page says below the chain
        parts = "lthlib/training/population/thread_parts.py"
        assert list(stacks.values()) == [[("_serve", parts), ("_step_part", parts),
                                          ("step", "lthlib/training/schedule.py")]]
    else:
        assert not stacks

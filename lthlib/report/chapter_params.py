"""A chapter's papermill parameters, checked once and handed on: the names papermill injected
must be the chapter's own (a typo such as ``-p trails 3`` would otherwise run the chapter
with its defaults), every value is validated by :func:`check_chapter_params`,
and the chapter reads the validated values from the returned :class:`ChapterParams`.
"""
from __future__ import annotations

import ast
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from lthlib.config.paper import DATASETS, PROFILES, check_choice, check_int
from lthlib.report.chapters import chapter_path, get_chapter
from lthlib.util.device import default_device

INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects
EXECUTORS = ("local", "ray")
# extra chapter parameters: name -> smallest allowed integer (None allowed where noted)
_CHAPTER_INTS: dict[str, int] = {"rerun_iterations": 1, "demo_iterations": 1,
                                 "lmc_points": 2, "first_seed": 0, "rewind_iteration": 0,
                                 "reps": 1}
# extra chapter parameters with a fixed set of values
_CHAPTER_CHOICES: dict[str, tuple[str, ...]] = {"budget": ("cpu", "smoke")}
_CHAPTER_OPTIONAL_INTS: dict[str, int] = {"rounds": 1}


def check_chapter_params(profile: str = "auto", dataset: str = "mnist", trials: int = 0,
                         runs_dir: Any = None, device: Any = None, executor: str = "local",
                         **extra: Any) -> dict[str, Any]:
    """Check a chapter's papermill parameters before anything runs; return them normalised.

    A bad value (``-p trials -1``, ``-p profile fast``, ``-p device bogus``) stops the chapter
    in its first cell with one line naming the value and what is allowed, instead of being
    read as "auto" or failing deep inside a run. Extra parameters some chapters take
    (``rounds``, ``rerun_iterations``, ``demo_iterations``, ``lmc_points``, ``first_seed``,
    ``datasets``) are checked too; an unknown name is an error (a typo in ``-p`` would
    otherwise be ignored by papermill).
    """
    out: dict[str, Any] = {}
    if not isinstance(profile, str):
        raise ValueError(f"profile must be a string, got {type(profile).__name__} {profile!r}; "
                         f"allowed: auto, {', '.join(PROFILES)}")
    out["profile"] = ("auto" if profile.lower() == "auto"
                      else check_choice("profile", profile, ("auto",) + PROFILES))
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a string, got {type(dataset).__name__} "
                         f"{dataset!r}; allowed: {', '.join(DATASETS)}")
    out["dataset"] = check_choice("dataset", dataset, DATASETS)
    out["trials"] = check_int("trials (0 = as many as runs/ holds)", trials, 0)
    if runs_dir is not None:
        if not isinstance(runs_dir, (str, os.PathLike)) or str(runs_dir) == "":
            raise ValueError(f"runs_dir must be a folder path or None, got "
                             f"{type(runs_dir).__name__} {runs_dir!r}")
        if os.path.exists(runs_dir) and not os.path.isdir(runs_dir):
            raise ValueError(f"runs_dir {str(runs_dir)!r} is a file; allowed: a folder "
                             f"(created if missing) or None")
    out["runs_dir"] = runs_dir
    if device is not None:
        if not isinstance(device, str):
            raise ValueError(f"device must be a string or None, got {type(device).__name__} "
                             f"{device!r}; allowed: cpu, cuda, cuda:<index>")
        default_device(device)  # raises naming the device and what is allowed
    out["device"] = device
    if not isinstance(executor, str):
        raise ValueError(f"executor must be a string, got {type(executor).__name__} "
                         f"{executor!r}; allowed: {', '.join(EXECUTORS)}")
    out["executor"] = check_choice("executor", executor, EXECUTORS)
    allowed = sorted([*_CHAPTER_INTS, *_CHAPTER_OPTIONAL_INTS, *_CHAPTER_CHOICES, "datasets",
                      "bench_file"])
    for name, value in extra.items():
        if name in _CHAPTER_CHOICES:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__} "
                                 f"{value!r}; allowed: {', '.join(_CHAPTER_CHOICES[name])}")
            out[name] = check_choice(name, value, _CHAPTER_CHOICES[name])
        elif name == "bench_file":
            if value is not None and (not isinstance(value, (str, os.PathLike))
                                      or not os.path.isfile(value)):
                raise ValueError(f"bench_file {value!r} is not a file; allowed: a "
                                 f"runs/bench/*.json record, or None (the newest)")
            out[name] = value
        elif name in _CHAPTER_INTS:
            out[name] = check_int(name, value, _CHAPTER_INTS[name])
        elif name in _CHAPTER_OPTIONAL_INTS:
            out[name] = None if value is None else check_int(
                f"{name} (None = the profile's)", value, _CHAPTER_OPTIONAL_INTS[name])
        elif name == "datasets":
            if not isinstance(value, str) or not value.split():
                raise ValueError(f"datasets must be space-separated dataset names, got "
                                 f"{value!r}; allowed: {', '.join(DATASETS)}")
            out[name] = " ".join(check_choice("dataset", d, DATASETS) for d in value.split())
        else:
            raise ValueError(f"unknown chapter parameter {name!r}; allowed: profile, dataset, "
                             f"trials, runs_dir, device, executor, {', '.join(allowed)}")
    return out


class ChapterParams(Mapping[str, Any]):
    """The validated parameters of one chapter, read as attributes (``params.profile``)."""

    def __init__(self, chapter: str, values: Mapping[str, Any]) -> None:
        self._chapter = chapter
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"chapter {self.__dict__.get('_chapter')!r} has no parameter "
                             f"{name!r}; allowed: {', '.join(sorted(values))}")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ChapterParams({self._chapter!r}, {self._values!r})"


def assigned_names(source: str) -> list[str]:
    """The names a parameters cell assigns at its top level, in order."""
    names: list[str] = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def declared_parameters(chapter: str, book_dir: str | Path | None = None) -> list[str]:
    """The parameter names of a chapter: what its cell tagged ``parameters`` assigns."""
    path = chapter_path(get_chapter(chapter), book_dir)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return assigned_names(cell.source)
    raise ValueError(f"{path.name} has no cell tagged 'parameters'; a chapter needs one")


def injected_names(history: list[str] | None) -> list[str]:
    """The names papermill injected: those assigned by executed cells that begin with
    papermill's ``# Parameters`` line (``history`` is IPython's ``In``)."""
    names: list[str] = []
    for source in history or []:
        if source.lstrip().startswith(INJECTED_HEADER):
            names += [n for n in assigned_names(source) if n not in names]
    return names


def check_params(chapter: str, namespace: Mapping[str, Any],
                 book_dir: str | Path | None = None) -> ChapterParams:
    """Validate a running chapter's parameters and return them.

    ``namespace`` is the notebook's ``globals()``: the declared names are read from it, and
    the injected ones from its ``In`` history. An injected name the chapter does not
    declare, or a bad value, raises ValueError in one line naming it and what is allowed.
    """
    declared = declared_parameters(chapter, book_dir)
    unknown = [n for n in injected_names(namespace.get("In")) if n not in declared]
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(map(repr, unknown))} for chapter "
                         f"{chapter}; allowed: {', '.join(declared)}")
    missing = [n for n in declared if n not in namespace]
    if missing:
        raise ValueError(f"chapter {chapter} has not run its parameters cell (missing "
                         f"{', '.join(missing)}); run the notebook from the top")
    values = check_chapter_params(**{n: namespace[n] for n in declared})
    return ChapterParams(chapter, values)

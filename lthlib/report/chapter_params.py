"""A chapter's papermill parameters, checked once and handed on: the names papermill injected
must be the chapter's own (a typo such as ``-p trails 3`` would otherwise run the chapter
with its defaults), every value is validated by :func:`lthlib.config.check_chapter_params`,
and the chapter reads the validated values from the returned :class:`ChapterParams`.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from ..config import check_chapter_params
from .chapters import chapter_path, get_chapter

INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects


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

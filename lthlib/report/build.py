"""Building the report: executing the chapters with papermill (in reading order, the
introduction last), building the Jupyter Book HTML from the executed notebooks, checking the
site, and the ``book`` command line (``python -m lthlib book build|html|check|screenshot``).

Repository paths come from :mod:`lthlib.util.paths`, so the commands work from any folder inside
a clone whether or not the package is installed in editable mode.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm

from lthlib.config.paper import PROFILES
from lthlib.util.paths import repo_root
from lthlib.report.chapter_params import declared_parameters
from lthlib.report.chapters import get_chapter
from lthlib.report.browser import screenshot_site
from lthlib.report.site import check_site, screenshot, toc_chapters

KERNEL = "python3"
CHECK_TAG = "nbval-check-output"  # nbval compares these cells' outputs (--nbval-lax)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def execution_order(root: Path | None = None) -> list[Path]:
    """Chapters in reading order, except the introduction last: its claims ledger and
    hardware table summarise what the other chapters just stored."""
    root = root or repo_root()
    paths = [root / f"{f}.ipynb" for f in toc_chapters(root)]
    intro = paths[0]
    return paths[1:] + [intro]


def execute_chapter(path: str | Path, output: str | Path | None = None,
                    parameters: dict[str, Any] | None = None, log_output: bool = True,
                    cwd: str | Path | None = None) -> Path:
    """Run one chapter with papermill (in place unless ``output``), streaming its output."""
    path = Path(path)
    out = Path(output) if output is not None else path
    with _inline_figures():
        # log_output streams the kernel's stderr (training progress bars) to the terminal
        pm.execute_notebook(str(path), str(out), parameters=parameters or {},
                            kernel_name=KERNEL, cwd=str(cwd or path.parent),
                            progress_bar=log_output,
                            stderr_file=sys.stderr if log_output else None,
                            request_save_on_cell_execute=True)
    clean_notebook(out)
    return out


@contextmanager
def _inline_figures() -> Iterator[None]:
    """Kernels inherit MPLBACKEND; a non-interactive one (Agg, as CI sets) would leave every
    figure as a ``<Figure ...>`` string instead of a PNG in the notebook, so papermill's
    kernels always get the inline backend."""
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


def _is_stderr(output: dict[str, Any]) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"


def clean_notebook(path: str | Path) -> Path:
    """Drop what only the terminal needs from an executed notebook: stderr (progress bars,
    warnings) of cells whose output nbval does not check, and per-cell timing metadata.
    The book never shows stderr (``nb_output_stderr: remove``); this keeps the stored
    notebooks small and their diffs meaningful."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and CHECK_TAG not in cell.metadata.get("tags", []):
            cell.outputs = [o for o in cell.outputs if not _is_stderr(o)]
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
        meta.pop(key, None)
    nbformat.write(nb, path)
    return path


def build(parameters: dict[str, Any] | None = None, chapters: list[str] | None = None,
          html: bool = True, root: Path | None = None) -> Path | None:
    """Execute the chapters in place (introduction last), then build the HTML."""
    root = root or repo_root()
    order = execution_order(root)
    if chapters:
        wanted = {get_chapter(c).name for c in chapters}
        order = [p for p in order if p.stem in wanted]
    for i, path in enumerate(order, 1):
        print(f"[{i}/{len(order)}] executing {path.relative_to(root)}", flush=True)
        # each chapter gets the book-wide parameters it declares (08 has no `executor`)
        declared = declared_parameters(path.stem, path.parent)
        execute_chapter(path, parameters={k: v for k, v in (parameters or {}).items()
                                          if k in declared})
    return build_html(root=root) if html else None


def build_html(root: Path | None = None, output: str | Path | None = None,
               check: bool = True) -> Path:
    """``jupyter-book build`` of the executed notebooks; returns the html folder."""
    root = root or repo_root()
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
           str(root), "--all"]
    if output is not None:
        cmd += ["--path-output", str(output)]
    subprocess.run(cmd, check=True, cwd=root)
    html = Path(output or root) / "_build" / "html"
    if check:
        problems = check_site(html, root)
        if problems:
            raise RuntimeError("site check failed:\n" + "\n".join(problems))
    return html



# --- command line -------------------------------------------------------------------------

def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("profile", "dataset", "trials", "runs_dir", "device", "executor"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    return params


def _handle(args: argparse.Namespace) -> int:
    """Run one ``book`` subcommand; errors become a message and exit status 2."""
    try:
        if args.book_command == "build":
            html = build(_parameters(args), args.chapters, html=not args.no_html)
            if html is not None:
                print(f"built {html / 'index.html'}")
        elif args.book_command == "html":
            html = build_html(output=args.output)
            print(f"built {html / 'index.html'}")
        elif args.book_command == "check":
            path = args.path or repo_root() / "_build" / "html"
            problems = check_site(path)
            print("\n".join(problems) if problems else f"site OK: {path}")
            return 1 if problems else 0
        elif args.book_command == "screenshot":
            if args.target is None:  # every page at both widths, for review
                root = repo_root()
                shots = screenshot_site(root / "_build" / "html",
                                        root / "_build" / "screenshots", height=args.height)
                print(f"{len(shots)} screenshots in {root / '_build' / 'screenshots'}")
            elif args.png is None:
                raise ValueError(f"screenshot {args.target!r} needs a PNG path; allowed: "
                                 f"`book screenshot` (every page) or `book screenshot PAGE PNG`")
            else:
                print(screenshot(args.target, args.png, height=args.height))
    except (ValueError, FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    """Add the ``book`` subcommand (build | html | check | screenshot) to ``sub``, the
    subparsers of a command line; ``args.handler(args)`` then runs it and returns the exit
    status."""
    p = sub.add_parser("book", help="execute the chapters and build the Jupyter Book",
                       description="Execute the book's chapters with papermill and build the "
                                   "Jupyter Book.")
    p.set_defaults(handler=_handle)
    bsub = p.add_subparsers(dest="book_command", required=True)
    b = bsub.add_parser("build", help="execute every chapter in place, then build the HTML")
    b.add_argument("--profile", choices=("auto",) + PROFILES, default=None,
                   help="default: each notebook's own parameter (auto)")
    b.add_argument("--dataset", default=None)
    b.add_argument("--trials", type=int, default=None)
    b.add_argument("--runs-dir", dest="runs_dir", default=None)
    b.add_argument("--device", default=None)
    b.add_argument("--executor", choices=("local", "ray"), default=None)
    b.add_argument("--chapters", nargs="+", default=None,
                   help="only these chapters (file stems), e.g. 05_figure1 intro")
    b.add_argument("--no-html", action="store_true", help="execute only")
    h = bsub.add_parser("html", help="build _build/html from the executed notebooks")
    h.add_argument("--output", default=None, help="folder for _build (default: the repo)")
    c = bsub.add_parser("check", help="check a built site: pages, links, images")
    c.add_argument("path", nargs="?", default=None, help="default: <repo>/_build/html")
    s = bsub.add_parser("screenshot", help="PNG of a page via headless Chromium; without "
                                          "arguments every page at 1280 and 420 px into "
                                          "_build/screenshots/")
    s.add_argument("target", nargs="?", default=None, help="a page (file or URL)")
    s.add_argument("png", nargs="?", default=None)
    s.add_argument("--height", type=int, default=2000)

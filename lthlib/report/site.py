"""Checking the built site and photographing it: every page of the table of contents
exists, no internal link or image is broken, and headless Chromium can take a screenshot.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from lthlib.util.paths import repo_root


def toc_pages(root: Path | None = None) -> list[str]:
    """Document paths of the table of contents (``book/intro``, ..., ``book/glossary``),
    notebooks and Markdown pages, in reading order."""
    toc = yaml.safe_load(((root or repo_root()) / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def toc_chapters(root: Path | None = None) -> list[str]:
    """The notebooks among :func:`toc_pages`: the chapters papermill executes."""
    root = root or repo_root()
    return [f for f in toc_pages(root) if (root / f"{f}.ipynb").exists()]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        elif tag == "img" and a.get("src"):
            self.imgs.append(a["src"] or "")


def _internal_target(page: Path, ref: str) -> tuple[Path | None, str]:
    parsed = urlparse(ref)
    if parsed.scheme or parsed.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None, ""
    target = page if not parsed.path else (page.parent / unquote(parsed.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, parsed.fragment


def check_site(path: str | Path, root: Path | None = None) -> list[str]:
    """Problems of a built site (empty list = fine): ``index.html`` and every chapter page
    exist, every internal link points at an existing file (and anchor, within chapter pages),
    every ``<img>`` file is present."""
    html = Path(path)
    problems: list[str] = []
    expected = [html / "index.html"] + [html / f"{f}.html" for f in toc_pages(root)]
    problems += [f"missing page {p.relative_to(html)}" for p in expected if not p.exists()]
    pages = {p.resolve(): p for p in html.rglob("*.html")
             if not p.relative_to(html).parts[0].startswith("_")}
    parsed: dict[Path, _Links] = {}
    for page in pages:
        links = _Links()
        links.feed(page.read_text(errors="replace"))
        parsed[page] = links
    for page, links in parsed.items():
        rel = page.relative_to(html.resolve())
        for src in links.imgs:
            target, _ = _internal_target(page, src)
            if target is not None and not target.exists():
                problems.append(f"{rel}: image {src} not found")
        for href in links.hrefs:
            target, frag = _internal_target(page, href)
            if target is None:
                continue
            if not target.exists():
                problems.append(f"{rel}: broken link {href}")
            elif frag and target.suffix == ".html" and target in parsed \
                    and frag not in parsed[target].ids:
                problems.append(f"{rel}: link {href} names a missing anchor")
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(url_or_file: str | Path, png: str | Path, width: int = 1280,
               height: int = 2000, timeout: float = 120.0) -> Path:
    """A PNG of a page through headless Chromium (install: ``apt-get install chromium``)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (looked for chromium, chromium-browser, "
                                "google-chrome); install it with `apt-get install -y chromium`")
    target = str(url_or_file)
    if "://" not in target:
        target = Path(target).resolve().as_uri()
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lth-chromium-") as profile_dir:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile_dir}", f"--screenshot={png}",
               f"--window-size={width},{height}", target]
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    if not png.exists():
        raise RuntimeError(f"Chromium produced no screenshot at {png}")
    return png

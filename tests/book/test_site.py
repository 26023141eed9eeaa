"""The static site: it builds from the committed notebooks, every page and image is there and
no internal link is broken; the checker itself catches broken sites. Where Chromium is
installed, every page is opened at a desktop and a phone width as a reader would see it (no
page wider than the screen, every image loaded and captioned, no error or test-marker text)
and photographed."""
from __future__ import annotations

from pathlib import Path

import pytest

from lthlib.report import browser, build, site as site_check

NO_CHROMIUM = site_check.find_chromium() is None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    return build.build_html(output=out, check=False)


def test_site_builds_and_passes_checks(site: Path) -> None:
    assert (site / "index.html").exists()
    assert site_check.check_site(site) == []
    intro = (site / "book" / "intro.html").read_text()
    assert "claims ledger" in intro.lower()
    figure_page = (site / "book" / "06_iterative_pruning.html").read_text()
    assert "<img" in figure_page


@pytest.mark.skipif(NO_CHROMIUM, reason="Chromium is not installed")
@pytest.mark.parametrize("width", browser.WIDTHS)
def test_every_page_reads_well_in_a_browser(site: Path, width: int) -> None:
    assert len(browser.site_pages(site)) == len(site_check.toc_pages())
    assert browser.check_pages(site, width) == []


@pytest.mark.skipif(NO_CHROMIUM, reason="Chromium is not installed")
def test_browser_check_catches_what_a_reader_would_see(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-made page with a too-wide table, a missing image, an uncaptioned output figure
    and a traceback: each is reported."""
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text(
        '<html><body><main><div style="width:3000px">wide</div>'
        '<div class="cell_output"><img src="gone.png" alt="gone.png"></div>'
        '<pre>Traceback (most recent call last)</pre></main></body></html>')
    monkeypatch.setattr(browser, "toc_pages", lambda: ["book/intro"])
    found = browser.check_pages(tmp_path, 420)
    assert any("px wide in a 420 px window" in f for f in found)
    assert any("image not loaded" in f for f in found)
    assert any("figure without caption" in f for f in found)
    assert any("image without alt text" in f for f in found)
    assert any("contains Traceback" in f for f in found)


@pytest.mark.skipif(NO_CHROMIUM, reason="Chromium is not installed")
def test_screenshot_of_intro(site: Path, tmp_path: Path) -> None:
    png = site_check.screenshot(site / "book" / "intro.html", tmp_path / "intro.png", height=900)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_check_site_reports_problems(tmp_path: Path) -> None:
    """A hand-made site with one broken link, one missing image, one missing anchor and
    missing chapter pages: each is reported."""
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="book/intro.html#ok">fine</a> <a href="book/gone.html">broken</a>'
        '<a href="book/intro.html#nowhere">bad anchor</a> <a href="https://example.org">ext</a>')
    (tmp_path / "book" / "intro.html").write_text(
        '<h1 id="ok">x</h1><img src="../_images/missing.png"><a href="#ok">self</a>')
    problems = site_check.check_site(tmp_path)
    assert any("broken link book/gone.html" in p for p in problems)
    assert any("image ../_images/missing.png" in p for p in problems)
    assert any("missing anchor" in p for p in problems)
    assert any(p.startswith("missing page book/05_figure1.html") for p in problems)
    assert not any("example.org" in p for p in problems)
    assert len([p for p in problems if "anchor" in p]) == 1

"""The built book as a reader's browser shows it: every page opened in headless Chromium at a
desktop and a phone width, checked for what a reader would notice (a page wider than the
screen, an image that did not load, error or test-marker text, a figure without a caption),
and photographed for review.

Chromium is driven without a driver library: a small wrapper page loads the book's pages in
iframes of the wanted width, inspects them with JavaScript and writes its findings into its
own DOM, which ``--dump-dom`` prints.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from lthlib.report.site import find_chromium, screenshot, toc_pages

WIDTHS = (1280, 420)  # a desktop window and a phone held upright
FORBIDDEN_TEXT = ("Traceback", "Warning", "NBVAL")
PAGE_HEIGHT = 900

# Runs inside the wrapper page: one finding per line, "page: problem".
_CHECK_JS = """
const forbidden = %(forbidden)s;
function check(frame) {
  const doc = frame.contentDocument, page = frame.dataset.page, out = [];
  if (!doc || !doc.body) { return [page + ": page did not load"]; }
  const root = doc.documentElement;
  if (root.scrollWidth > frame.clientWidth + 1) {
    out.push(page + ": page is " + root.scrollWidth + " px wide in a " + frame.clientWidth
             + " px window");
  }
  const main = doc.querySelector("main") || doc.body;
  for (const img of main.querySelectorAll("img")) {
    if (!img.complete || img.naturalWidth === 0) { out.push(page + ": image not loaded: "
                                                            + img.getAttribute("src")); }
    if (img.closest(".cell_output") && !img.closest("figure")) {
      out.push(page + ": figure without caption: " + img.getAttribute("src"));
    }
    const alt = (img.getAttribute("alt") || "").trim();
    if (img.closest(".cell_output") && (alt === "" || /\\.png$/.test(alt))) {
      out.push(page + ": image without alt text: " + img.getAttribute("src"));
    }
  }
  for (const fig of main.querySelectorAll("figure")) {
    const cap = fig.querySelector("figcaption");
    if (!cap || cap.innerText.trim() === "") { out.push(page + ": figure without caption"); }
  }
  const text = main.innerText;
  for (const word of forbidden) {
    if (text.includes(word)) { out.push(page + ": visible text contains " + word); }
  }
  return out;
}
let pending = document.querySelectorAll("iframe").length, finished = false;
function done() {
  if (finished) { return; }
  finished = true;
  const found = [];
  for (const f of document.querySelectorAll("iframe")) { found.push(...check(f)); }
  const pre = document.createElement("pre");
  pre.id = "findings";
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
}
for (const f of document.querySelectorAll("iframe")) {
  f.addEventListener("load", () => {
    pending -= 1;
    if (pending === 0) { setTimeout(done, 500); }
  });
}
setTimeout(done, 40000);  // a page that never finishes loading is reported, not waited for
"""


def site_pages(html: str | Path) -> list[Path]:
    """The built page of every document in the table of contents, in reading order."""
    html = Path(html)
    return [html / f"{doc}.html" for doc in toc_pages() if (html / f"{doc}.html").exists()]


def _wrapper(pages: list[Path], width: int) -> str:
    frames = "\n".join(
        f'<iframe data-page="{p.stem}" src="{p.resolve().as_uri()}" '
        f'style="width:{width}px;height:{PAGE_HEIGHT}px;border:0;display:block"></iframe>'
        for p in pages)
    script = _CHECK_JS % {"forbidden": json.dumps(list(FORBIDDEN_TEXT))}
    return (f"<!DOCTYPE html><html><body style='margin:0'>{frames}"
            f"<script>{script}</script></body></html>")


def check_pages(html: str | Path, width: int, timeout: float = 180.0) -> list[str]:
    """What a reader would notice on the built pages at ``width`` px, one line per problem
    (empty: fine). Raises FileNotFoundError without Chromium."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found; install it with `apt-get install -y chromium`")
    pages = site_pages(html)
    if not pages:
        raise FileNotFoundError(f"no built pages under {html}; run `python -m lthlib book html`")
    with tempfile.TemporaryDirectory(prefix="lth-browser-") as tmp:
        wrapper = Path(tmp) / "check.html"
        wrapper.write_text(_wrapper(pages, width))
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--allow-file-access-from-files", "--disable-web-security",
               f"--user-data-dir={Path(tmp) / 'profile'}", "--virtual-time-budget=60000",
               f"--window-size={width + 40},{PAGE_HEIGHT}", "--dump-dom", wrapper.as_uri()]
        dom = subprocess.run(cmd, check=True, timeout=timeout, capture_output=True,
                             text=True).stdout
    start = dom.find('<pre id="findings">')
    if start < 0:
        return [f"the browser check did not finish at {width} px (no findings written)"]
    body = dom[start + len('<pre id="findings">'):dom.index("</pre>", start)]
    return list(json.loads(body.replace("&quot;", '"').replace("&lt;", "<")
                           .replace("&gt;", ">").replace("&amp;", "&")))


def screenshot_site(html: str | Path, out: str | Path, widths: tuple[int, ...] = WIDTHS,
                    height: int = 1800) -> list[Path]:
    """A PNG of every page at every width, ``<out>/<page>-<width>.png``."""
    out = Path(out)
    shots = []
    for page in site_pages(html):
        for width in widths:
            shots.append(screenshot(page, out / f"{page.stem}-{width}.png", width=width,
                                    height=height))
    return shots

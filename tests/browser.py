"""Headless Chromium for the report tests: load a page from disk, wait for it, and read back what
the browser saw (every <img>'s naturalWidth, every link), or take a screenshot.

A copy of the page with a small script is loaded beside the original (so its relative links
resolve the same): on ``load`` the script writes each image's natural width into the DOM,
which ``--dump-dom`` prints. No driver library needed."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PROBE = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'browser-probe';
  out.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]));
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str, timeout: float = 120) -> str:
    assert CHROMIUM, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                               f"--user-data-dir={profile}", "--allow-file-access-from-files", *args],
                              capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def render(page: Path) -> tuple[str, list[tuple[str, int]]]:
    """(the DOM after load, [(img src, naturalWidth)]) as Chromium rendered ``page``."""
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri())
    finally:
        probe.unlink()
    marker = dom.index('<pre id="browser-probe">') + len('<pre id="browser-probe">')
    images = json.loads(_unescape(dom[marker:dom.index("</pre>", marker)]))
    return dom, [(src, int(width)) for src, width in images]


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 2600) -> Path:
    _chromium("--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png}",
              page.resolve().as_uri())
    return png


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))


def broken_links(page: Path, dom: str) -> list[str]:
    """Every href of ``dom`` that does not resolve: a file missing beside ``page``, an anchor
    with no element of that id, or a link off the machine (a report must work offline)."""
    parser = _Links()
    parser.feed(dom)
    broken = []
    for href in parser.hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            broken.append(f"{href}: not a relative link")
        elif not parts.path:
            if parts.fragment not in parser.ids:
                broken.append(f"{href}: no element with that id")
        elif not (page.parent / unquote(parts.path)).is_file():
            broken.append(f"{href}: no file {page.parent / unquote(parts.path)}")
    return broken


def link_count(dom: str) -> int:
    parser = _Links()
    parser.feed(dom)
    return len(parser.hrefs)

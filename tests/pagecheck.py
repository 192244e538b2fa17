"""Checks for the static report page shared by the report and demo tests.

``page_links`` lists every href/src of a page; ``render_page`` loads it in
headless Chromium and returns the DOM after scripts ran (the page marks
``data-broken-images="N"`` on ``<body>`` once its images have loaded or failed).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if a.get(k):
                self.links.append(a[k])
        if a.get("id"):
            self.ids.append(a["id"])


def page_links(index: Path) -> _Links:
    p = _Links()
    p.feed(index.read_text(encoding="utf-8"))
    return p


def local_targets_missing(index: Path) -> list[str]:
    """Relative links of ``index`` whose files do not exist (anchors and data: URIs ignored)."""
    missing = []
    for link in page_links(index).links:
        if link.startswith(("#", "data:")):
            continue
        assert "://" not in link, f"page links outside itself: {link}"
        target = (index.parent / link.split("#")[0]).resolve()
        if not target.exists():
            missing.append(link)
    return missing


def render_page(index: Path, tmp: Path) -> str:
    """DOM of ``index`` after headless Chromium ran it (no network, fresh profile)."""
    assert CHROMIUM is not None
    p = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp / 'chrome'}", "--virtual-time-budget=5000", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout

"""/api/docs in headless Chromium: the page renders every route, and every character it shows has a
font on this machine (a server has no emoji fonts: a character without one is an empty box)."""

import json
import subprocess
from html.parser import HTMLParser

import httpx

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage"]


class Page(HTMLParser):
    """The text a reader sees (not scripts nor styles), and the number of each tag."""

    def __init__(self):
        super().__init__()
        self.text, self.tags, self._hidden = [], {}, 0

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def rendered(url: str, profile) -> Page:
    # --virtual-time-budget lets the page's fetch of swagger.json finish before the DOM is dumped.
    r = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                        "--dump-dom", url], capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr
    page = Page()
    page.feed(r.stdout)
    return page


def has_font(char: str) -> bool:
    r = subprocess.run(["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True,
                       check=True)
    return bool(r.stdout.strip())


def test_the_docs_page_shows_every_route_and_no_missing_glyph(gateway, tmp_path):
    doc = httpx.get(gateway.url + "/api/swagger.json").json()
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    page = rendered(gateway.url + "/api/docs", tmp_path / "chromium")
    text = "".join(page.text)
    assert doc["info"]["title"] in text and "Loading" not in text, text[:500]
    assert page.tags.get("details") == len(operations)
    shown = sorted(set(text) - set(" \t\r\n"))
    missing = [f"U+{ord(c):04X} {c!r}" for c in shown if not has_font(c)]
    print(f"{len(operations)} routes, {len(shown)} distinct characters shown, without a font: {missing}")
    assert missing == [], json.dumps(missing)
    assert page.tags.get("svg") == sum(bool(op.get("security")) for op in operations) > 0  # the locks

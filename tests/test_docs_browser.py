"""The built documentation site, as a browser shows it.

Headless Chromium (Debian's ``chromium``) opens build/site through a local HTTP server
(127.0.0.1) and the test reads the rendered DOM (``--dump-dom``, after the page's
JavaScript ran) of the home page and of the nnx-transforms API page: the title, the
search box, and the signature of ``nnx.jit``. Screenshots of both pages are saved in
build/site-screenshots/ (CI keeps them as build artefacts).

Runs in the docs step (``hatch run docs:browser``, after ``docs:build``), which sets
``NNX_DOCS_SITE``; collected anywhere else (``hatch run full:test``) it skips, saying so.
It skips also when no Chromium is installed (``.ci/run`` installs it, so CI does not).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = os.environ.get("NNX_DOCS_SITE")
SHOTS = ROOT / "build" / "site-screenshots"

pytestmark = pytest.mark.skipif(
    not SITE, reason="browser check of the built site: run `hatch run docs:browser`"
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if exe := shutil.which(name):
            return exe
    pytest.skip("no Chromium on this machine (apt-get install -y chromium); .ci/run installs it")


@pytest.fixture(scope="module")
def site_url():
    site = (ROOT / SITE).resolve() if SITE else None
    assert site and (site / "index.html").is_file(), (
        f"no built site at {site}: hatch run docs:build"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002  (the base's name)
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()  # the listening socket (an unclosed one is a ResourceWarning)


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # runs as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,1400",
        "--virtual-time-budget=5000",  # let the page's scripts run
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed: {result.stderr[-2000:]}"
    return result


def _dom(url: str) -> str:
    return _browser("--dump-dom", url).stdout


def _screenshot(url: str, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    path.unlink(missing_ok=True)
    _browser(f"--screenshot={path}", url)
    assert path.is_file() and path.stat().st_size > 10_000, f"no screenshot {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_home_page(site_url):
    dom = _dom(site_url)
    assert re.search(r"<title>\s*nnx\s*</title>", dom), "the home page's title is the site's"
    assert re.search(r'<input[^>]+class="md-search__input"[^>]*placeholder="Search"', dom), (
        "a search box in the header"
    )
    assert "pip install nnx-core" in _text(dom)
    nav = _text(dom)
    for entry in ("Tour", "Variable modes", "Migrating from Flax NNX", "API reference"):
        assert entry in nav, f"nav entry {entry!r}"
    _screenshot(site_url, "home.png")


def test_api_page_shows_the_signature_of_jit(site_url):
    url = site_url + "api/transforms/"
    dom = _dom(url)
    assert re.search(r"<title>\s*nnx\.transforms - nnx\s*</title>", dom)
    assert 'class="md-search__input"' in dom
    start = dom.index('id="nnx.transforms.jit"')
    entry = _text(dom[start : start + 20_000])
    signature = re.sub(r"\s+", "", entry.split("jax.jit for functions")[0])
    for part in (
        "jit(",
        "fun:Callable|None=None",
        "static_argnums:",
        "donate_argnums:",
        "**jit_kwargs",
    ):
        assert part in signature, f"{part!r} not in the rendered signature: {signature[:600]}"
    _screenshot(url, "api-transforms.png")  # nnx.transforms.jit is its first entry


def test_search_index_has_every_page_and_jit(site_url):
    assert SITE  # the module is skipped without NNX_DOCS_SITE
    index = json.loads((ROOT / SITE / "search" / "search_index.json").read_text())
    locations = {doc["location"] for doc in index["docs"]}
    assert "api/transforms/#nnx.transforms.jit" in locations
    assert any(loc.startswith("guides/variable-modes/") for loc in locations)

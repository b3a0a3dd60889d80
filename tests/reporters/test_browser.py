"""report.html in a real headless Chromium: it renders, its figures draw, and it makes no
network request (the static check below says the same from the markup alone)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from auditor.interfaces import ReportOptions
from plugins.reporters.html import HtmlReporter
from tests.reporters.cdp import CHROMIUM, FLAGS, Chromium
from tests.reporters.conftest import load_results

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)")

# A reference that makes a browser fetch: src=/href=/url() pointing off the page.
REMOTE_REFERENCE = re.compile(r"""(?:\bsrc|\bhref|\baction|\bposter|\bdata)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    return HtmlReporter().render(load_results(), out, ReportOptions())


def test_static_no_remote_references(report_html):
    html = report_html.read_text(encoding="utf-8")
    assert not REMOTE_REFERENCE.search(html), REMOTE_REFERENCE.search(html)
    assert "<link" not in html and "<script" not in html
    refs = re.findall(r"""\b(?:src|href)\s*=\s*"([^"]*)\"""", html)
    assert refs and all(r.startswith(("#", "data:")) for r in refs), sorted(set(refs))[:5]


def test_static_check_catches_remote_references():
    for bad in ('<img src="https://cdn.example/x.png">', "<link href='//fonts.example/css'>",
                "<style>body{background:url( http://x/y.png)}</style>", "<style>@import 'x.css';</style>"):
        assert REMOTE_REFERENCE.search(bad), bad


def image_stats(png: bytes) -> tuple[float, int]:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    return max(ImageStat.Stat(image).stddev), len(colours)


@needs_chromium
@pytest.mark.browser
def test_chromium_screenshot_and_dom(report_html, tmp_path):
    """The command-line way, as a reader's machine would: --screenshot and --dump-dom."""
    shot = tmp_path / "shot.png"
    base = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,3000", report_html.as_uri()],
                   check=True, timeout=120, capture_output=True)
    stddev, colours = image_stats(shot.read_bytes())
    assert stddev > 20 and colours > 50, "the screenshot is blank"
    dom = subprocess.run([*base, "--dump-dom", report_html.as_uri()], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert len(re.findall(r"<svg\b", dom)) == 2
    assert 'role="img"' in dom and "<figcaption>" in dom


@needs_chromium
@pytest.mark.browser
def test_chromium_no_request_leaves_the_page_and_figures_draw(report_html, tmp_path):
    browser = Chromium(tmp_path / "profile")
    try:
        session = browser.open(report_html.as_uri(), width=1200, height=3000)
        requests = browser.requests(session)
        figures = browser.evaluate(session, """JSON.stringify([...document.querySelectorAll('figure svg.chart')]
            .map(s => { const r = s.getBoundingClientRect();
                        return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height,
                                label: s.getAttribute('aria-label')}; }))""")
        images = browser.evaluate(session, "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
        shots = []
        import json

        for fig in json.loads(figures):
            clip = {k: fig[k] for k in ("x", "y", "width", "height")}
            shots.append((fig, browser.screenshot(session, clip)))
    finally:
        browser.close()
    assert requests[0] == report_html.as_uri()
    leaving = [u for u in requests[1:] if not u.startswith(("data:", "file:", "about:"))]
    assert leaving == [], f"the report made network requests: {leaving}"
    assert images == len(load_results()["gallery"]) * 3  # every gallery image decoded
    assert len(shots) == 2
    for fig, png in shots:
        assert fig["width"] > 300 and fig["height"] > 150 and fig["label"]
        stddev, colours = image_stats(png)
        assert stddev > 25 and colours > 20, f"figure '{fig['label'][:40]}' looks blank"


@needs_chromium
@pytest.mark.browser
def test_devtools_request_recording_can_fail(tmp_path):
    """The request check above must be able to fail: a page with a remote image is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.invalid/pixel.png"></body></html>')
    browser = Chromium(tmp_path / "profile")
    try:
        requests = browser.requests(browser.open(page.as_uri(), 400, 300))
    finally:
        browser.close()
    assert "http://example.invalid/pixel.png" in requests

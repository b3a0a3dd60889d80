"""Reports never run or fetch what the data or a plugin put in them.

Escaping of hostile strings in results.json is tested on the renderer in
``tests/reporters/test_escaping.py`` (HTML and SVG figures) and the PDF's refusal of a
local HTTP server in ``tests/reporters/test_pdf.py``; here: hostile names coming from the
data through ``medaudit run`` itself, and the PDF fetcher on remote URLs with the network
watched at the socket level.
"""

from __future__ import annotations

import socket
from html.parser import HTMLParser

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from plugins.reporters import pdf as pdf_module
from tests.reliability.corpus import Ctx, invoke, rgb

HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
HOSTILE_FILE = "<svg onload=alert(2)>.png"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_hostile_class_and_file_names_from_the_data_reach_the_report_as_text(tmp_path, tiny_models):
    root = tmp_path / "data"
    for cls in ("benign", HOSTILE_CLASS):
        (root / cls).mkdir(parents=True)
        Image.fromarray(rgb(1)).save(root / cls / "a.png")
        Image.fromarray(rgb(2)).save(root / cls / HOSTILE_FILE, format="PNG")
    ctx = Ctx(tmp_path, tiny_models)
    outcome = invoke(ctx.args(tiny_models["tiny"], root, "--report-format", "html"))
    assert outcome.code == 0, outcome.stderr
    html = (ctx.out / "report.html").read_text(encoding="utf-8")
    assert HOSTILE_CLASS not in html and str(escape(HOSTILE_CLASS)) in html
    parser = Tags()
    parser.feed(html)
    assert not {tag for tag, _ in parser.tags} & {"script", "iframe", "object", "embed", "base"}
    assert not [name for _, attrs in parser.tags for name in attrs if name.startswith("on")]
    assert all((attrs.get("src") or "data:").startswith("data:") for tag, attrs in parser.tags if tag == "img")


@pytest.fixture
def network_watch(monkeypatch):
    """Every attempt to resolve a name or open a connection is recorded and refused."""
    attempts: list[str] = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append(f"{name}{args[:2]}")
            raise OSError("network access attempted in a test")
        return blocked

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    monkeypatch.setattr(socket, "gethostbyname_ex", refuse("gethostbyname_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    return attempts


def test_pdf_fetcher_refuses_remote_urls_without_touching_the_network(tmp_path, monkeypatch, network_watch):
    weasyprint = pytest.importorskip("weasyprint")
    local = tmp_path / "local.png"
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(local)
    asked: list[tuple[str, bool]] = []
    real_check = pdf_module.check_url

    def recording_check(url: str) -> None:
        try:
            real_check(url)
        except pdf_module.RemoteFetchRefused:
            asked.append((url, False))
            raise
        asked.append((url, True))

    monkeypatch.setattr(pdf_module, "check_url", recording_check)
    remote = ["http://example.com/x.png", "https://example.com/style.css", "http://example.com/font.woff",
              "ftp://example.com/bg.png", "//example.com/protocol-relative.png"]
    html = f"""<html><head>
      <link rel="stylesheet" href="{remote[1]}">
      <style>@font-face {{ font-family: X; src: url({remote[2]}); }}
             body {{ font-family: X; background: url({remote[3]}); }}</style>
      </head><body><p>report</p>
      <img src="{remote[0]}"><img src="{remote[4]}"><img src="{local.as_uri()}">
      <img src="file://fileserver.example/share/x.png">
      </body></html>"""
    document = weasyprint.HTML(string=html, base_url="http://example.com/base/",
                               url_fetcher=pdf_module.local_only_fetcher(weasyprint))
    pdf = document.write_pdf()
    assert pdf.startswith(b"%PDF")
    refused = {url for url, allowed in asked if not allowed}
    assert {remote[0], remote[1], remote[3]} <= refused
    assert all(not url.startswith(("http:", "https:", "ftp:")) for url, allowed in asked if allowed)
    # the fetcher is in use, and a file outside the packaged templates is refused too (issue 12)
    assert (local.as_uri(), False) in asked
    assert network_watch == []

"""report.pdf through WeasyPrint: text, numbers, pages; page 1 as PNG with pdftoppm."""

from __future__ import annotations

import builtins
import json
import logging
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from auditor.errors import MedauditError
from auditor.interfaces import ReportOptions
from auditor.reporting.filters import pct
from auditor.reporting import render_reports
from plugins.reporters import pdf as pdf_module
from plugins.reporters.pdf import PdfReporter, RemoteFetchRefused, check_url
from tests.reporters.conftest import load_results
from tests.reporters.test_templates import SECTIONS

pypdf = pytest.importorskip("pypdf")


SVG_PROPERTIES = re.compile(r"Ignored `(fill|stroke|clip-path|text-anchor|font)[a-z-]*:")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def rendered_pdf(tmp_path_factory) -> tuple[Path, dict]:
    results = load_results()
    out = tmp_path_factory.mktemp("pdf")
    handler = ListHandler()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(handler)
    try:
        path = PdfReporter().render(results, out, ReportOptions())
    finally:
        logger.removeHandler(handler)
    results["_weasyprint_warnings"] = handler.messages
    return path, results


def test_weasyprint_supports_every_css_rule(rendered_pdf):
    """WeasyPrint warns about CSS it ignores; only the SVG presentation properties that
    matplotlib writes in style attributes (which its SVG renderer does apply) may appear."""
    _, results = rendered_pdf
    unexpected = [m for m in results["_weasyprint_warnings"] if not SVG_PROPERTIES.search(m)]
    assert unexpected == []


def pdf_text(path: Path) -> str:
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_pdf_has_every_section_heading(rendered_pdf):
    path, _ = rendered_pdf
    text = squash(pdf_text(path))
    for heading in SECTIONS:
        assert heading in text, heading


def test_pdf_has_key_numbers(rendered_pdf):
    path, results = rendered_pdf
    text = squash(pdf_text(path))
    assert pct(results["clean"]["accuracy"]) in text
    for w in results["worst_case"]:
        assert f"{pct(w['robust_accuracy'])} at {w['eps_255']:g}/255" in text
    assert results["model"]["sha256"] in text.replace(" ", "")


def test_pdf_is_multipage_with_running_header_and_page_numbers(rendered_pdf, record_property):
    path, results = rendered_pdf
    reader = pypdf.PdfReader(str(path))
    pages = len(reader.pages)
    record_property("pdf_pages", pages)
    print(f"report.pdf: {pages} pages")
    assert pages > 3
    first, second = (squash(reader.pages[i].extract_text()) for i in (0, 1))
    assert f"page 1 of {pages}" in first and f"page 2 of {pages}" in second
    # running header (model name, audit date) on every page but the cover
    assert "Robustness audit, " in second and results["model"]["name"] in second
    assert "Robustness audit, " not in first


def test_pdf_figures_are_vectors(rendered_pdf):
    """Inline SVG becomes PDF drawing operators: the figure text (axis labels) is real text
    and the results pages carry no raster image besides the gallery."""
    path, _ = rendered_pdf
    text = squash(pdf_text(path))
    assert "L-inf budget eps (/255)" in text and "Accuracy (%)" in text


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_pdftoppm_renders_page_one(rendered_pdf, tmp_path):
    path, _ = rendered_pdf
    subprocess.run(["pdftoppm", "-r", "50", "-f", "1", "-l", "1", "-png", str(path), str(tmp_path / "page")],
                   check=True, timeout=120)
    pngs = list(tmp_path.glob("page*.png"))
    assert len(pngs) == 1
    from PIL import Image, ImageStat

    image = Image.open(pngs[0]).convert("L")
    assert image.size[0] > 300 and ImageStat.Stat(image).stddev[0] > 10  # not blank


def test_url_fetcher_allows_only_data_and_packaged_files():
    from report_templates import TEMPLATE_DIR

    check_url("data:image/png;base64,AAAA")
    check_url((TEMPLATE_DIR / "css" / "report.css").as_uri())
    for url in ("http://example.com/a.png", "https://example.com/a.css", "ftp://x/y", "//cdn.example/x",
                "file:///tmp/x.css", "file:///etc/passwd", (TEMPLATE_DIR / ".." / "pyproject.toml").as_uri(),
                "file://fileserver.example/share/x.png"):
        with pytest.raises(RemoteFetchRefused):
            check_url(url)


def test_pdf_never_fetches_remote_resources(results, tmp_path):
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "report.html.jinja").write_text(
            '{% extends "base.html.jinja" %}{% block extra_css %}body { background: url("' + url + '/bg.png"); }'
            '{% endblock %}{% block recommendation %}<img src="' + url + '/x.png">{% endblock %}')
        out = tmp_path / "out"
        out.mkdir()
        PdfReporter().render(results, out, ReportOptions(template_dirs=[templates]))
    finally:
        server.shutdown()
    assert (out / "report.pdf").stat().st_size > 1000
    assert hits == []


def test_missing_system_libraries_name_the_debian_packages(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MedauditError) as info:
        pdf_module._weasyprint()
    message = str(info.value)
    for package in ("libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz0b", "libfontconfig1"):
        assert package in message


def test_html_is_kept_when_pdf_cannot_render(results, tmp_path, monkeypatch):
    from auditor.registry import get_registry

    def broken() -> None:
        raise MedauditError("cannot write the PDF report: WeasyPrint's system libraries are missing")

    monkeypatch.setattr(pdf_module, "_weasyprint", broken)
    (tmp_path / "results.json").write_text(json.dumps(results))
    written = render_reports(results, tmp_path, ["html", "pdf"], get_registry())
    assert (tmp_path / "report.html").exists() and not (tmp_path / "report.pdf").exists()
    assert [p.name for p in written] == ["results.json", "report.html"]


def test_pdf_file_mode_follows_the_umask(rendered_pdf):
    """Written beside the target through mkstemp, but not left at its 0600."""
    import os

    path, _ = rendered_pdf
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask

"""A hostile results.json or template must not make a report fetch anything (issue 12, item 4).

HTML autoescaping keeps markup out, but a value inside a ``style`` attribute or a URL is
not markup: ``red;background-image:url(file:///...)`` is plain text to the escaper and a
fetch to WeasyPrint (which then embeds a local file in the PDF) or to a browser (which
calls out to a server). These tests plant such values and a local image outside the output
folder, render through ``medaudit report``, and look at what came out: the HTML's URLs
parsed with html.parser, the PDF's embedded images read with pypdf.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from auditor.cli import app
from auditor.reporting import filters
from auditor.reporting.environment import render_html
from tests.reporters.conftest import load_results
from tests.reporters.test_templates import segmentation_results

pypdf = pytest.importorskip("pypdf")
runner = CliRunner()

SECRET_SIZE = (37, 23)  # a size no figure of ours has, to find the image in the PDF


def png_base64(size: tuple[int, int] = (4, 4)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 80, 120)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture
def secret(tmp_path) -> Path:
    """A local image outside the output folder: what an attacker wants in the PDF."""
    path = tmp_path / "private" / "secret.png"
    path.parent.mkdir()
    Image.new("RGB", SECRET_SIZE, (12, 200, 99)).save(path)
    return path


def hostile_colours(secret: Path) -> list[str]:
    return [f"red;background-image:url({secret.as_uri()})", "url(http://127.0.0.1:9/x)",
            "#fff;background:url(//127.0.0.1:9/y)", 'blue" style="background:url(http://127.0.0.1:9/z)',
            "expression(alert(1))", f"#D55E00\n;background:url({secret.as_uri()})"]


def hostile_segmentation(secret: Path) -> dict[str, Any]:
    results = segmentation_results(load_results())
    for entry in results["attacks"]:
        entry["passes"] = {"forward_samples": 4, "backward_samples": 4}
        entry["time_s"] = 1.0
    results["gallery"] = [{
        "id": "lesion-1", "attack": "seg-pgd", "eps_255": 2, "overlay_png": png_base64(),
        "adv_png": str(secret), "perturbation_png": secret.as_uri(),
        "legend": [{"label": f"entry {i}", "colour": colour} for i, colour in enumerate(hostile_colours(secret))],
    }]
    return results


def hostile_classification(secret: Path) -> dict[str, Any]:
    results = load_results()
    for item in results["gallery"]:
        item["clean_png"] = str(secret)
        item["adv_png"] = "http://127.0.0.1:9/adv.png"
        item["perturbation_png"] = f"{png_base64()}\" onerror=\"fetch('http://127.0.0.1:9/p')"
    return results


class UrlCollector(HTMLParser):
    """Every URL the page could fetch: src/href attributes and url(...) or @import in any
    attribute (style, SVG clip-path) and in <style> elements."""

    URL_IN_CSS = re.compile(r"""url\(\s*['"]?([^'")\s]*)|@import\s+['"]([^'"]*)""", re.I)

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "href", "xlink:href", "srcset", "poster", "action", "data"):
                self.urls.append(value.strip())
            self.urls += [a or b for a, b in self.URL_IN_CSS.findall(value)]

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += [a or b for a, b in self.URL_IN_CSS.findall(data)]


def external_urls(html: str) -> list[str]:
    collector = UrlCollector()
    collector.feed(html)
    return [u for u in collector.urls if not u.startswith(("data:", "#"))]


def embedded_image_sizes(pdf: Path) -> set[tuple[int, int]]:
    """Sizes of every image XObject reachable from the pages (backgrounds sit in patterns,
    which ``page.images`` does not list)."""
    sizes: set[tuple[int, int]] = set()
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, pypdf.generic.IndirectObject):
            if obj.idnum in seen:
                return
            seen.add(obj.idnum)
            obj = obj.get_object()
        if isinstance(obj, pypdf.generic.DictionaryObject):
            if obj.get("/Subtype") == "/Image":
                sizes.add((int(obj["/Width"]), int(obj["/Height"])))
            for key, value in obj.items():
                if key != "/Parent":
                    walk(value)
        elif isinstance(obj, pypdf.generic.ArrayObject):
            for value in obj:
                walk(value)

    for page in pypdf.PdfReader(str(pdf)).pages:
        walk(page)
    return sizes


def report(results: dict[str, Any], tmp_path: Path, *extra: str, formats: str = "html,pdf"):
    source = tmp_path / "audit" / "results.json"
    source.parent.mkdir(exist_ok=True)
    source.write_text(json.dumps(results))
    out = tmp_path / "out"
    return runner.invoke(app, ["report", str(source), "--out", str(out), "--format", formats, "--quiet",
                               *extra]), out


@pytest.mark.parametrize("build,formats", [(hostile_segmentation, "html,pdf"), (hostile_classification, "html")])
def test_hostile_results_neither_fetch_nor_embed(build, formats, secret, tmp_path):
    result, out = report(build(secret), tmp_path, formats=formats)
    assert result.exit_code in (0, 3), result.output
    if result.exit_code == 3:  # refusing is as good as rendering without the value
        return
    html = (out / "report.html").read_text(encoding="utf-8")
    assert external_urls(html) == []
    assert "127.0.0.1" not in html and "file:/" not in html and str(secret) not in html
    if "pdf" in formats:
        assert SECRET_SIZE not in embedded_image_sizes(out / "report.pdf")


def test_segmentation_legend_keeps_real_colours_and_overlays(secret, tmp_path):
    """The validation drops the hostile values only: our own colours and PNGs still show."""
    results = hostile_segmentation(secret)
    results["gallery"][0]["legend"].append({"label": "ground truth", "colour": "#F0E442"})
    html = render_html(results)
    assert "background:#F0E442" in html and "background:transparent" in html
    assert html.count("data:image/png;base64,") == 1  # the overlay; the two paths are dropped


def test_pdf_fetcher_refuses_local_files_from_a_template(secret, tmp_path):
    """Defence in depth: a --template-dir stylesheet (or any value that slips through) that
    names a local file still does not get it into the PDF."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.html.jinja").write_text(
        '{% extends "base.html.jinja" %}{% block extra_css %}body { background: url("'
        + secret.as_uri() + '"); }{% endblock %}')
    result, out = report(load_results(), tmp_path, "--template-dir", str(templates))
    assert result.exit_code == 0, result.output
    assert SECRET_SIZE not in embedded_image_sizes(out / "report.pdf")


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('true') }}",
    "{{ r.__class__ }}",
    "{{ (r|attr('__class__')).__base__ }}",
])
def test_template_dir_runs_in_the_sandbox(payload, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.html.jinja").write_text('{% extends "base.html.jinja" %}{% block scope %}'
                                                 + payload + "{% endblock %}")
    result, out = report(load_results(), tmp_path, "--template-dir", str(templates), formats="html")
    assert result.exit_code == 3, result.output
    assert "sandbox" in result.output
    assert not (out / "report.html").exists()


def test_text_where_numbers_belong_renders_as_not_available():
    results = load_results()
    results["worst_case"][0]["robust_accuracy"] = "0.5"
    results["worst_case"][1]["eps_255"] = "url(http://127.0.0.1:9/x)"
    results["attacks"][0]["robust_accuracy"] = "x"
    first = next(iter(results["clean"]["per_class"]))
    results["clean"]["per_class"][first]["accuracy"] = "y"
    html = render_html(results)
    assert "n/a" in html and "127.0.0.1" not in html


@pytest.mark.parametrize("colour,expected", [
    ("#D55E00", "#D55E00"), ("#fff", "#fff"), ("red", "red"), ("Grey", "Grey"),
    ("#ffff", "transparent"), ("#fff\n", "transparent"), ("red;x:y", "transparent"), ("rgb(1,2,3)", "transparent"),
    (None, "transparent"), (12, "transparent"),
])
def test_css_colour(colour, expected):
    assert filters.css_colour(colour) == expected


def test_compare_html_of_a_hostile_audit(tmp_path):
    """compare's own template: text where numbers belong is a missing value (it was exit 4),
    markup in names stays text, and the page fetches nothing."""
    a, b = load_results(), load_results()
    b["worst_case"][0]["robust_accuracy"] = "0.5"
    b["clean"]["accuracy"] = "url(http://127.0.0.1:9/x)"
    b["model"]["name"] = '<script>x</script>" style="background:url(http://127.0.0.1:9/y)'
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                                 "--out", str(tmp_path / "cmp")])
    assert result.exit_code in (0, 1), result.output
    html = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert external_urls(html) == [] and "<script>" not in html

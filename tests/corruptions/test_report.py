"""The natural-robustness section in HTML and PDF, from a real tiny audit; hostile text and
image payloads in results.json's corruption block are escaped or dropped."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.reporting.environment import render_html
from auditor.results import read_results
from tests.core.tiny_audit import make_data, save_model

pypdf = pytest.importorskip("pypdf")
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    model, data = save_model(folder / "model.pt"), make_data(folder / "data", per_class=4)
    result = CliRunner().invoke(app, [
        "run", str(model), "--data", str(data), "--out", str(folder / "out"), "--input-size", "16",
        "--attacks", "fgsm", "--eps", "2", "--budget", "quick", "--skip-checks", "--quiet", "--no-sandbox",
        "--corruptions", "defocus-blur,jpeg", "--severities", "1,3", "--report-format", "html,pdf"])
    assert result.exit_code == 0, result.output
    return folder / "out"


def test_html_has_the_section_figures_gallery_and_traceability(audited):
    html = (audited / "report.html").read_text(encoding="utf-8")
    assert '<section id="natural-robustness">' in html and 'href="#natural-robustness"' in html
    assert 'aria-label="Heat map of accuracy (%) by corruption family and severity"' in html
    assert 'aria-label="Accuracy against corruption severity, one line per family"' in html
    assert html.count('alt="Defocus blur at severity') == 3 and html.count('alt="JPEG compression at severity') == 3
    assert "of melanoma cases are missed" in html  # the clinical consequence, in words
    assert "Robustness to natural, non-adversarial variation" in html  # the traceability row
    assert "Natural robustness: scanner or site shift" not in html  # no longer listed as out of scope


def test_pdf_has_the_section_and_its_numbers(audited):
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(audited / "report.pdf").pages)
    results = read_results(audited / "results.json")["corruption"]
    assert "Natural robustness" in text and "Table N1" in text and "Table N2" in text
    assert f"{100 * results['worst_case'][0]['accuracy']:.1f}%" in text


def test_hostile_corruption_block_is_escaped_and_bad_images_dropped(audited):
    results = copy.deepcopy(read_results(audited / "results.json"))
    block = results["corruption"]
    block["families"][0]["title"] = SCRIPT
    block["families"][0]["reference"] = SCRIPT
    block["gallery"][0]["images"][0]["png"] = '"><img src=x onerror=alert(2)>'
    block["steps"][0]["accuracy"] = "<b>1</b>"
    html = render_html(results)
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "onerror=alert(2)" not in html
    assert "<b>1</b>" not in html

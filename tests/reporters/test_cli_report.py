"""``medaudit report``: re-render from results.json alone; exit codes."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from auditor.cli import app
from tests.reporters.conftest import RESULTS

runner = CliRunner()


def test_report_renders_html_and_pdf_from_json_alone(tmp_path):
    results = tmp_path / "audit" / "results.json"
    results.parent.mkdir()
    shutil.copy(RESULTS, results)
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(results), "--out", str(out), "--format", "html,pdf", "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)["out"]
    assert sorted(written) == sorted([str(out / "report.html"), str(out / "report.pdf")])
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "Executive summary" in (out / "report.html").read_text()
    # the results file itself is untouched and not copied
    assert not (out / "results.json").exists()


def test_report_defaults_to_the_results_folder(tmp_path):
    shutil.copy(RESULTS, tmp_path / "results.json")
    result = runner.invoke(app, ["report", str(tmp_path), "--format", "html", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists() and not (tmp_path / "report.pdf").exists()


def test_report_template_dir(tmp_path):
    templates = tmp_path / "t"
    templates.mkdir()
    (templates / "report.html.jinja").write_text(
        '{% extends "base.html.jinja" %}{% block regulatory %}<p>ACME mapping</p>{% endblock %}')
    result = runner.invoke(app, ["report", str(RESULTS), "--out", str(tmp_path), "--format", "html",
                                 "--template-dir", str(templates), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "ACME mapping" in (tmp_path / "report.html").read_text()


def test_missing_results_file_exits_3(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope.json"), "--format", "html"])
    assert result.exit_code == 3
    assert "no results file" in result.output


def test_not_a_results_file_exits_3(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{}")
    assert runner.invoke(app, ["report", str(bad)]).exit_code == 3


def test_unknown_format_exits_2(tmp_path):
    result = runner.invoke(app, ["report", str(RESULTS), "--out", str(tmp_path), "--format", "html,docx"])
    assert result.exit_code == 2
    assert "'docx'" in result.output and "html" in result.output
    assert not (tmp_path / "report.html").exists()  # nothing written before the check


def test_bad_template_dir_exits_2(tmp_path):
    result = runner.invoke(app, ["report", str(RESULTS), "--out", str(tmp_path), "--format", "html",
                                 "--template-dir", str(tmp_path / "missing")])
    assert result.exit_code == 2

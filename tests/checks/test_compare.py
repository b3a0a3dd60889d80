"""``medaudit compare``: differences, regression exit code, HTML, unreadable files."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.cli.compare import compare_results
from auditor.results import write_results

runner = CliRunner()


@pytest.fixture()
def pair(audited, tmp_path):
    a = audited("honest")
    b = copy.deepcopy(a)
    return a, b, tmp_path


def _write(results, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return write_results(folder, results)


def test_identical_audits_are_not_worse(pair):
    a, b, tmp = pair
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b"))])
    assert result.exit_code == 0, result.output
    assert "not worse" in result.stdout and "worst case @ 8/255" in result.stdout


def test_worse_beyond_tolerance_exits_1(pair):
    a, b, tmp = pair
    b["worst_case"][0]["robust_accuracy"] -= 0.05
    b["attacks"][-1]["robust_accuracy"] += 0.10  # better: not a regression
    comparison = compare_results(a, b, 0.02)
    assert comparison["regressions"] == ["worst case @ 2/255"]
    row = next(r for r in comparison["rows"] if r["label"] == "worst case @ 2/255")
    assert row["delta"] == pytest.approx(-0.05) and row["status"] == "worse"
    assert compare_results(a, b, 0.06)["regressions"] == []
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "worse"


def test_lower_is_better_rates_and_new_check_failures(pair):
    a, b, _ = pair
    b["clinical"]["worst_case"][0]["missed_disease"]["value"] += 0.1
    b["checks"]["items"][1]["status"] = "fail"
    comparison = compare_results(a, b)
    assert "missed disease @ 2/255" in comparison["regressions"]
    assert any("now fails" in r for r in comparison["regressions"])


def test_html_is_self_contained_and_escaped(pair):
    a, b, tmp = pair
    b["model"]["name"] = "<script>alert(1)</script>"
    b["data"]["sha256"] = "other"
    out = tmp / "cmp"
    result = runner.invoke(app, ["compare", str(_write(a, tmp / "a")), str(_write(b, tmp / "b")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "compare.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert "data differs" in html
    assert json.loads((out / "compare.json").read_text())["verdict"] == "not worse"


def test_unreadable_file_exits_3(pair):
    _, _, tmp = pair
    bad = tmp / "bad.json"
    bad.write_text("{")
    result = runner.invoke(app, ["compare", str(bad), str(tmp / "missing.json")])
    assert result.exit_code == 3 and "not valid JSON" in result.stderr


def test_bad_tolerance_is_a_usage_error(pair):
    a, _, tmp = pair
    path = str(_write(a, tmp / "a"))
    assert runner.invoke(app, ["compare", path, path, "--tolerance", "2"]).exit_code == 2

"""`medaudit transfer A B C`: the source x target matrix, its results.json and its report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results

runner = CliRunner()


def _transfer(models: list[Path], data: Path, out: Path, *extra: str):
    return runner.invoke(app, ["transfer", *map(str, models), "--data", str(data), "--out", str(out),
                               "--input-size", "32", "--budget", "quick", "--limit", "12", "--quiet", *extra])


@pytest.fixture(scope="module")
def matrix_run(demo_inputs, other_models, tmp_path_factory):
    model, data = demo_inputs
    folder = tmp_path_factory.mktemp("matrix")
    twin = folder / "twin.pt"
    shutil.copyfile(model, twin)  # the same network under another name: it must behave as the source itself
    out = folder / "out"
    result = _transfer([model, twin, other_models[1]], data, out, "--eps", "4,16", "--report-format", "html,pdf")
    assert result.exit_code == 0, result.output
    return out


def test_three_model_matrix(matrix_run):
    results = read_results(matrix_run / "results.json")
    assert results["kind"] == "transfer-matrix" and results["schema_version"] and results["status"] == "complete"
    assert [m["name"] for m in results["models"]] == ["demo-model.pt", "twin.pt", "surrogate2.pt"]
    assert [e["eps_255"] for e in results["matrix"]] == [4.0, 16.0]
    n_correct = [m["n_correct"] for m in results["models"]]
    for entry in results["matrix"]:
        success, fooled = entry["success"], entry["n_fooled"]
        assert len(success) == 3 and all(len(row) == 3 for row in success)
        for i in range(3):
            for j in range(3):
                assert 0 <= fooled[i][j] <= n_correct[j]
                assert success[i][j] == pytest.approx(fooled[i][j] / n_correct[j])
                low, high = entry["success_ci95"][i][j]
                assert low - 1e-9 <= success[i][j] <= high + 1e-9
        # a target identical to the source is fooled exactly as the source is (white-box)
        assert success[0][1] == success[0][0] and success[1][0] == success[1][1]
        assert entry["target_accuracy"][0][1] == entry["target_accuracy"][0][0]
    # the demo model is not robust: white-box PGD at 16/255 breaks most of it
    assert results["matrix"][1]["success"][0][0] > 0.5


def test_matrix_report_html_and_pdf(matrix_run):
    from pypdf import PdfReader

    html = (matrix_run / "report.html").read_text()
    assert "medaudit transferability" in html and html.count('class="heat"') == 2
    assert "twin.pt" in html and "diagonal" in html
    text = "".join(page.extract_text() for page in PdfReader(matrix_run / "report.pdf").pages)
    assert "transferability" in text and "surrogate2.pt" in text


def test_report_rerenders_hostile_matrix(matrix_run, tmp_path):
    """A results.json someone edited: markup in names, text where numbers belong, ragged rows."""
    results = json.loads((matrix_run / "results.json").read_text())
    results["models"][0]["name"] = "<script>alert(1)</script>"
    results["models"][1]["clean_accuracy"] = "lots"
    results["matrix"][0]["success"] = [[0.5, "x"], None, [{"a": 1}]]
    results["matrix"][1]["success_ci95"] = "[[0, 1]]"
    results["tool"]["command"] = "{{ 7 * 7 }}"
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = runner.invoke(app, ["report", str(tmp_path / "results.json"), "--format", "html", "--quiet"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "{{ 7 * 7 }}" in html and "49" not in html.split("Command:")[1]
    assert "n/a" in html


def test_transfer_refuses_bad_model_sets(demo_inputs, tmp_path):
    model, data = demo_inputs
    one = _transfer([model], data, tmp_path / "a")
    assert one.exit_code == 2 and "at least two models" in one.output
    missing = _transfer([model, tmp_path / "nope.pt"], data, tmp_path / "b")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    three = tmp_path / "three.pt"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 32, 32)), str(three))
    wrong = _transfer([model, three], data, tmp_path / "c", "--report-format", "none")
    assert wrong.exit_code in (2, 3) and "Traceback" not in wrong.output
    bad_attack = _transfer([model, model], data, tmp_path / "d", "--attack", "square")
    assert bad_attack.exit_code == 2 and "--attack" in bad_attack.output

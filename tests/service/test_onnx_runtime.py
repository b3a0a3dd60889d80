"""``--runtime onnxruntime``: an ONNX file audited through ONNX Runtime as a query-only
target (score-based attacks only, queries counted), and a file it cannot load refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results
from tests.core.tiny_audit import TinyNet, make_data
from tests.models.files import save_onnx

runner = CliRunner()


def args(model, data, out, *extra: str) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--runtime", "onnxruntime",
            "--eps", "2", "--budget", "quick", "--report-format", "none", "--quiet", "--skip-checks", *extra]


def test_onnx_file_audited_through_onnx_runtime_as_a_query_only_target(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'medaudit[onnxruntime]'")
    model = save_onnx(TinyNet().eval(), tmp_path / "tiny.onnx")
    data = make_data(tmp_path / "data")
    result = runner.invoke(app, args(model, data, tmp_path / "out", "--attacks", "fgsm,square", "--input-size", "16"))
    assert result.exit_code == 0, result.output
    results = read_results(tmp_path / "out" / "results.json")
    assert results["model"]["format"] == "onnxruntime" and results["status"] == "complete"
    assert [e["attack"] for e in results["attacks"]] == ["square"]
    block = results["query_target"]
    assert block["kind"] == "ONNX Runtime session" and block["identity"]["runtime"].startswith("onnxruntime")
    assert block["skipped_attacks"][0]["attack"] == "fgsm"
    forwards = sum(e["passes"]["forward_samples"] for e in results["attacks"])
    assert block["queries"]["attacks_images"] > 0 and block["usage"]["images"] > forwards


def test_a_file_onnx_runtime_cannot_load_is_bad_input(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'medaudit[onnxruntime]'")
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x08\x07 this is not a protobuf graph \xff\xfe")
    data = make_data(tmp_path / "data")
    result = runner.invoke(app, args(bogus, data, tmp_path / "out", "--input-size", "16"))
    assert result.exit_code == 3 and "ONNX Runtime cannot load" in result.output


def test_runtime_flags_without_a_query_only_target_are_usage_errors(tmp_path):
    data = make_data(tmp_path / "data")
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    for extra in (["--max-queries", "10"], ["--concurrency", "2"], ["--outputs", "label"]):
        result = runner.invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "o"), *extra])
        assert result.exit_code == 2 and "query-only target" in result.output or "http(s)://" in result.output
    result = runner.invoke(app, ["run", "http://127.0.0.1:9/v2/models/m", "--data", str(data), "--runtime",
                                 "onnxruntime", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--runtime onnxruntime audits an .onnx file" in result.output

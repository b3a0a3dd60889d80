"""Auditing a model behind a real KServe v2 server (KServe's own ModelServer, a subprocess):
the same numbers as in-process, the traffic the server saw, faults, a dead server and
--resume, a model swapped mid-audit, and credentials that never reach the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results
from tests.conftest import require_shared_data
from tests.service.conftest import ROOT

pytestmark = pytest.mark.realdata
runner = CliRunner()
ATTACKS = "square,zoo"


def audit_args(model: str, npz: Path, out: Path, *extra: str) -> list[str]:
    return ["run", model, "--data", str(npz), "--split", "test", "--limit", "8", "--eps", "2",
            "--budget", "quick", "--seed", "0", "--report-format", "none", "--quiet", "--skip-checks",
            "--out", str(out), *extra]


def numbers(results: dict) -> dict:
    """What must agree between two audits of one model: per step and worst case."""
    return {"clean": results["clean"]["accuracy"],
            "steps": [(e["attack"], e["eps_255"], e["robust_accuracy"], e["samples"]["broken"])
                      for e in results["attacks"]],
            "worst": [(w["eps_255"], w["robust_accuracy"]) for w in results["worst_case"]]}


def invoke(*args: str) -> "CliRunner.invoke":
    return runner.invoke(app, list(args))


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "auditor.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def wait_for_steps(out: Path, steps: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(read_results(out / "results.json").get("attacks") or []) >= steps:
                return
        except Exception:  # noqa: BLE001 - not written yet
            pass
        if proc.poll() is not None:
            raise AssertionError(f"audit ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("audit did not reach the step in time")


@pytest.fixture(scope="module")
def in_process(xray_models, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("in-process")
    result = invoke(*audit_args(str(xray_models["main"]), xray_models["npz"], out, "--attacks", ATTACKS))
    assert result.exit_code == 0, result.output
    return read_results(out / "results.json")


@pytest.mark.slow  # trains the CNN, two audits (Square, ZOO) and a server start: 5 min measured on 2 busy cores
def test_service_audit_equals_in_process_and_counts_every_query(v2_server, xray_models, in_process, tmp_path):
    server = v2_server()
    result = invoke(*audit_args(server.url, xray_models["npz"], tmp_path / "svc", "--attacks", f"fgsm,{ATTACKS}"))
    assert result.exit_code == 0, result.output
    results = read_results(tmp_path / "svc" / "results.json")
    assert results["status"] == "complete"
    assert numbers(results) == numbers(in_process)
    block = results["query_target"]
    assert block["skipped_attacks"][0]["attack"] == "fgsm" and "gradients" in block["skipped_attacks"][0]["reason"]
    assert block["fingerprint"]["match"] is True and block["identity"]["server_name"] == "kserve"
    seen = server.counts()
    # every image the server answered is counted, and nothing else: probe, fingerprints, clean pass, attacks
    assert block["usage"]["images"] == seen["images"] and block["usage"]["requests"] == seen["requests"]
    forwards = sum(e["passes"]["forward_samples"] for e in results["attacks"])
    fingerprints, probe = 2 * block["fingerprint"]["start"]["images"], 4
    verified = sum(e["n_attacked"] for e in results["attacks"])  # the engine's own check of each result
    assert seen["images"] == forwards + verified + results["clean"]["n"] + fingerprints + probe
    assert block["queries"]["attacks_images"] > 0 and block["queries"]["per_sample_mean"] > 0


@pytest.mark.slow
def test_faults_503_and_latency_change_no_number(v2_server, xray_models, in_process, tmp_path):
    server = v2_server("--fail-rate", "0.1", "--latency", "0.01", "--seed", "3")
    result = invoke(*audit_args(server.url, xray_models["npz"], tmp_path / "svc", "--attacks", ATTACKS))
    assert result.exit_code == 0, result.output
    results = read_results(tmp_path / "svc" / "results.json")
    assert numbers(results) == numbers(in_process)
    assert server.counts()["refused"] > 0 and results["query_target"]["usage"]["retries"] >= server.counts()["refused"]


@pytest.mark.slow
def test_dead_server_leaves_resumable_results_and_resume_finishes(v2_server, xray_models, in_process, tmp_path):
    server = v2_server()
    out = tmp_path / "svc"
    proc = spawn(*audit_args(server.url, xray_models["npz"], out, "--attacks", ATTACKS))
    wait_for_steps(out, 1, proc)
    server.stop()  # SIGKILL mid-audit
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert "did not answer" in stderr and "--resume" in stderr and "Traceback" not in stderr
    partial = read_results(out / "results.json")  # valid JSON, the finished steps in it
    assert partial["status"] == "running" and len(partial["attacks"]) >= 1
    restarted = v2_server(port=server.port)
    result = invoke(*audit_args(restarted.url, xray_models["npz"], out, "--attacks", ATTACKS, "--resume"))
    assert result.exit_code == 0, result.output
    final = read_results(out / "results.json")
    assert final["status"] == "complete" and final["resumed"] == 1
    assert numbers(final) == numbers(in_process)
    assert final["query_target"]["fingerprint"]["resumed"]  # compared again on resume


@pytest.mark.slow
def test_query_budget_stops_at_a_step_boundary_and_resume_finishes(v2_server, xray_models, in_process, tmp_path):
    server = v2_server()
    out = tmp_path / "svc"
    # probe, fingerprint and clean pass take 20 images: the budget runs out inside the Square step
    capped = invoke(*audit_args(server.url, xray_models["npz"], out, "--attacks", ATTACKS, "--max-queries", "60",
                                "--report-format", "html"))
    assert capped.exit_code == 5, capped.output
    results = read_results(out / "results.json")
    assert results["status"] == "incomplete" and results["incomplete"]["rule"] == "max-queries"
    assert [e["attack"] for e in results["attacks"]] == ["square"]
    assert any("zoo" in label for label in results["incomplete"]["not_run"])
    assert results["query_target"]["queries"]["max_queries"] == 60
    report = (out / "report.html").read_text()
    assert "INCOMPLETE AUDIT" in report and "Audited through queries only" in report
    resumed = invoke(*audit_args(server.url, xray_models["npz"], out, "--attacks", ATTACKS, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    final = read_results(out / "results.json")
    assert final["status"] == "complete" and numbers(final) == numbers(in_process)
    seen = server.counts()["images"]  # both runs, every image counted once
    assert final["query_target"]["queries"]["total_images"] == seen


@pytest.mark.slow
def test_model_swapped_mid_audit_fails_the_fingerprint_check(v2_server, xray_models, tmp_path):
    swap = tmp_path / "swap"
    server = v2_server("--alt-model", str(xray_models["alt"]), "--swap-file", str(swap))
    out = tmp_path / "svc"
    proc = spawn(*audit_args(server.url, xray_models["npz"], out, "--attacks", ATTACKS))
    wait_for_steps(out, 1, proc)
    swap.write_text("redeployed")
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 3, stderr
    assert "changed during the audit" in stderr
    results = read_results(out / "results.json")
    assert results["status"] == "failed" and results["query_target"]["fingerprint"]["match"] is False


@pytest.mark.slow
def test_token_reaches_the_server_and_nothing_else(v2_server, xray_models, tmp_path):
    secret = "s3cr3t-TOKEN-9f8e7d"
    server = v2_server("--token-env", "TEST_TOKEN", env={"TEST_TOKEN": secret})
    out = tmp_path / "svc"
    denied = spawn(*audit_args(server.url, xray_models["npz"], tmp_path / "denied", "--attacks", "square",
                               "--eps", "2", "--auth-env", "WRONG_TOKEN"), env={"WRONG_TOKEN": "nope"})
    _, denied_err = denied.communicate(timeout=120)
    assert denied.returncode == 3 and "refused" in denied_err and "nope" not in denied_err
    proc = spawn(*audit_args(server.url, xray_models["npz"], out, "--attacks", "square", "--eps", "2",
                             "--auth-env", "VENDOR_TOKEN"), "--report-format", "html",
                 env={"VENDOR_TOKEN": secret})
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert server.counts()["images"] > 0
    written = "".join(p.read_text(errors="replace") for p in out.iterdir() if p.is_file())
    for text in (written, stdout, stderr):
        assert secret not in text
    assert "VENDOR_TOKEN" in (out / "results.json").read_text()  # where it came from is recorded


def test_url_with_credentials_is_refused_without_echoing_them(tmp_path):
    npz = require_shared_data("medmnist", "pneumoniamnist.npz")
    result = invoke(*audit_args("http://user:hunter2@127.0.0.1:9/v2/models/m", npz, tmp_path / "o"))
    assert result.exit_code == 2 and "hunter2" not in result.output
    assert "--auth-env" in result.output


def test_gradient_attacks_alone_are_refused_on_a_service(v2_server, xray_models, tmp_path):
    server = v2_server()
    result = invoke(*audit_args(server.url, xray_models["npz"], tmp_path / "o", "--attacks", "pgd"))
    assert result.exit_code == 2
    assert "needs input gradients" in result.output and "--attacks square,zoo" in result.output

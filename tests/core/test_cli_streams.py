"""What medaudit writes to the terminal and how it ends (issue 12, items 9 and 12):
stdout carries --json alone even when the model prints, names are escaped in stderr,
and SIGTERM ends a run with exit 143 and a resumable results.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results
from tests.core.tiny_audit import (ROOT, PrintingNet, make_data, medaudit_command, run_args, run_medaudit,
                                   save_model, save_slow_arch)
from tests.reporters.conftest import RESULTS

runner = CliRunner()
HOSTILE_NAME = "evil\x1b[31m\nmedaudit: error: forged line\x1b]0;title\x07"


def test_json_on_stdout_survives_a_model_that_prints(tmp_path):
    """TorchScript's print writes to file descriptor 1 from C++; the JSON must still parse."""
    model = save_model(tmp_path / "printing.pt", PrintingNet())
    data = make_data(tmp_path / "data")
    result = run_medaudit(*run_args(model, data, tmp_path / "out", "--json"))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "complete"
    assert "model output follows" in result.stderr  # moved, not swallowed


def test_control_characters_from_names_are_escaped_in_errors(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read")
    result = runner.invoke(app, ["run", str(model), "--data", str(tmp_path / HOSTILE_NAME)])
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.output.count("\n") == 1  # one error line, no forged second one
    assert "evil\\x1b[31m\\nmedaudit: error: forged line" in result.output


def test_control_characters_from_names_are_escaped_in_notes(tmp_path):
    out = tmp_path / HOSTILE_NAME
    result = runner.invoke(app, ["report", str(RESULTS), "--out", str(out), "--format", "html"])
    assert result.exit_code == 0, result.output
    note = [line for line in result.output.splitlines() if "wrote" in line]
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert len(note) == 1 and "evil\\x1b[31m\\n" in note[0]


def test_sigterm_ends_a_run_with_143_and_a_resumable_results_file(tmp_path):
    weights, arch = save_slow_arch(tmp_path)
    data = make_data(tmp_path / "data")
    out = tmp_path / "out"
    args = ["run", str(weights), "--arch", arch, "--data", str(data), "--out", str(out), "--input-size", "16",
            "--attacks", "fgsm,pgd", "--eps", "2,4,6,8", "--budget", "standard", "--report-format", "none",
            "--skip-checks", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.Popen(medaudit_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a generous bound on a loaded machine, not a speed claim
        while not (out / "results.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]  # still running: its model sleeps in every call
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and "--resume" in stderr
    results = read_results(out)
    assert results["status"] == "running" and results["config_hash"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == ".medaudit.lock"]

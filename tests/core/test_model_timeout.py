"""``--model-timeout``: a model call that never returns ends the audit with exit 3 and a
resumable results.json, instead of hanging it (issue 12, item 10)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.core.hostile_models import HangsAfterFirstStep
from tests.core.test_sandbox import ROOT, medaudit, toy_run_args
from tests.defenses.toy import write_folder


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_hung_model_call_ends_the_audit_with_exit_3_and_resumes(tmp_path, sandbox):
    model, out = tmp_path / "hangs.pt", tmp_path / "out"
    torch.save(HangsAfterFirstStep(out), model)
    data = write_folder(tmp_path / "data", n=16)
    args = toy_run_args(model, data, out, "--trust-model", "--format", "pickle", "--attacks", "fgsm",
                        *([] if sandbox else ["--no-sandbox"]))

    hung = medaudit(*args, "--model-timeout", "2", env={"MEDAUDIT_TEST_HANG": "1"})
    assert hung.returncode == 3, hung.stderr
    assert "did not return within 2 s" in hung.stderr and "--resume" in hung.stderr
    partial = json.loads((out / "results.json").read_text())  # whole: written atomically
    assert partial["status"] == "running"
    assert [(e["attack"], e["eps_255"]) for e in partial["attacks"]] == [("fgsm", 8.0)]

    # The same file, no longer hanging: --resume keeps the finished step and completes.
    resumed = medaudit(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((out / "results.json").read_text())
    assert final["status"] == "complete" and final["resumed"] == 1
    assert [(e["attack"], e["eps_255"]) for e in final["attacks"]] == [("fgsm", 8.0), ("fgsm", 24.0)]
    assert final["attacks"][0] == partial["attacks"][0]


def test_negative_timeout_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from auditor.cli import app

    data = write_folder(tmp_path / "data", n=4)
    model = tmp_path / "m.pt"
    model.write_bytes(b"unused")
    result = CliRunner().invoke(app, toy_run_args(model, data, tmp_path / "out", "--model-timeout", "-1"))
    assert result.exit_code == 2 and "--model-timeout" in result.output


WATCHED = """
import sys, time
from auditor.deadline import model_call, model_timeout
with model_timeout(1.0):
    for _ in range(8):  # 1.6 s in all, 0.2 s per call: within the per-call deadline
        with model_call():
            with model_call():  # a wrapper calling the model it wraps: one call
                time.sleep(0.2)
    print("calls done", flush=True)
    with model_call():
        time.sleep(float(sys.argv[1]))
print("finished")
"""


@pytest.mark.parametrize("last_call_s, code, printed", [(0.2, 0, "calls done\nfinished"), (30, 3, "calls done")])
def test_deadline_is_per_call(last_call_s, code, printed):
    result = subprocess.run([sys.executable, "-c", WATCHED, str(last_call_s)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == code, result.stderr
    assert result.stdout.strip() == printed
    assert ("did not return within 1 s" in result.stderr) == (code == 3)

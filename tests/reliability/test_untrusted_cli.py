"""Malicious model files through ``medaudit run`` itself (a real process): refused with a
clear message and exit code 3, and their payload never runs; ``--trust-model`` loads them.

The loader-level proofs for every format (state dict, pickle, TorchScript, .pt2, ONNX)
are in ``tests/models/test_untrusted.py``; this file shows the command line honours them.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from auditor.results import read_results
from tests.models.files import CreatesFile, rewrite_zip
from tests.reliability.corpus import Ctx, class_folders, invoke
from tests.reliability.models import Marked, Tiny, save

REPO = Path(__file__).resolve().parents[2]


def medaudit(*args: str) -> subprocess.CompletedProcess:
    """``python -m auditor.cli`` from the repository root, so the payload's class
    (tests.reliability.models.Marked) is importable when the file is trusted."""
    return subprocess.run([sys.executable, "-m", "auditor.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def run_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16", "--budget", "quick",
            "--attacks", "fgsm", "--eps", "2", "--skip-checks", "--report-format", "none", "--quiet"]


def test_malicious_checkpoint_refused_and_loaded_only_with_trust_model(tmp_path):
    canary = tmp_path / "canary"
    model = tmp_path / "vendor-model.pt"
    torch.save(Marked(str(canary)), model)
    data = class_folders(tmp_path / "data")

    refused = medaudit(*run_args(model, data, tmp_path / "refused"))
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 3, refused.stderr
    assert lines == [
        f"medaudit: error: {model} is a pickled module (it needs tests.reliability.models.Marked); loading it "
        "runs code from the file. Re-run with --trust-model only if you trust its author."
    ]
    assert not canary.exists()
    assert not (tmp_path / "refused" / "results.json").exists()

    trusted = medaudit(*run_args(model, data, tmp_path / "trusted"), "--trust-model")
    assert trusted.returncode == 0, trusted.stderr
    assert canary.read_text() == "code from the model file ran"
    results = read_results(tmp_path / "trusted")
    assert results["status"] == "complete" and results["model"]["format"] == "pickle"


@pytest.mark.parametrize("kind", ["plain-pickle", "torchscript-with-python-global", "state-dict-format-forced"])
def test_other_hostile_files_through_the_cli(kind, tmp_path, tiny_models):
    canary = tmp_path / "canary"
    extra: list[str] = []
    if kind == "plain-pickle":
        model = tmp_path / "evil.pkl"
        model.write_bytes(pickle.dumps(CreatesFile(canary)))
    elif kind == "torchscript-with-python-global":
        good = save(Tiny(), tmp_path / "good.pt")
        payload = pickle.dumps(CreatesFile(canary), protocol=2)
        model = rewrite_zip(good, tmp_path / "evil.pt", lambda n, d: payload if n.endswith("/data.pkl") else d)
    else:
        model = tmp_path / "evil.pth"
        torch.save(CreatesFile(canary), model)
        extra = ["--format", "state-dict", "--arch", "tests.models.tiny:make"]
    ctx = Ctx(tmp_path, tiny_models)
    outcome = invoke(ctx.args(model, ctx.data(), *extra))
    assert outcome.code == 3, outcome.stderr
    assert len(outcome.stderr_lines) == 1 and str(model.name) in outcome.stderr_lines[0]
    assert "Traceback" not in outcome.stderr
    assert not canary.exists()

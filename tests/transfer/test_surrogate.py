"""`medaudit run TARGET --surrogate MODEL`: transfer attacks crafted on the surrogate are
rows of the audit, enter the worst case, and name the surrogate; bad surrogates exit 2/3."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results

runner = CliRunner()


def _run(model: Path, data: Path, out: Path, *extra: str):
    return runner.invoke(app, ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "32",
                               "--budget", "quick", "--report-format", "none", "--quiet", "--skip-checks",
                               "--attacks", "fgsm", "--eps", "8", "--limit", "10", *extra])


def test_surrogate_adds_transfer_rows_to_the_worst_case(demo_inputs, other_models, tmp_path):
    model, data = demo_inputs
    result = _run(model, data, tmp_path / "out", "--surrogate", str(model), "--independent")
    assert result.exit_code == 0, result.output
    results = read_results(tmp_path / "out" / "results.json")
    rows = {e["attack"]: e for e in results["attacks"]}
    assert {"fgsm", "transfer-pgd", "transfer-autoattack"} <= set(rows)
    sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    for name in ("transfer-pgd", "transfer-autoattack"):
        row = rows[name]
        assert row["threat_model"] == "black-box" and row["queries"]["total"] == 0
        assert row["params"]["surrogate"] == {"name": Path(model).name, "format": "torchscript", "sha256": sha}
        assert row["params"]["source_attack"] == name.split("-")[1] and row["params"]["source_params"]["backend"]
        assert row["perturbation"]["linf_max"] is None or row["perturbation"]["linf_max"] <= 8 / 255 + 1e-6
    # the target as its own surrogate: white-box PGD under another name, which breaks this model
    assert rows["transfer-pgd"]["n_broken"] > 0
    worst = results["worst_case"][0]
    broken = set()
    for row in rows.values():
        broken |= set(row["samples"]["broken"])
    assert worst["n_robust"] == results["clean"]["n_correct"] - len(broken)


def test_surrogate_other_model_in_cascade(demo_inputs, other_models, tmp_path):
    model, data = demo_inputs
    result = _run(model, data, tmp_path / "out", "--surrogate", str(other_models[0]))
    assert result.exit_code == 0, result.output
    results = read_results(tmp_path / "out" / "results.json")
    order = [e["attack"] for e in results["attacks"]]
    assert order[-1] == "fgsm" and set(order[:2]) == {"transfer-pgd", "transfer-autoattack"}  # cheap for the target
    assert results["attacks"][0]["params"]["surrogate"]["name"] == other_models[0].name


def test_bad_surrogates_exit_with_one_line(demo_inputs, tmp_path):
    model, data = demo_inputs
    missing = _run(model, data, tmp_path / "a", "--surrogate", str(tmp_path / "nope.pt"))
    assert missing.exit_code == 2 and "--surrogate" in missing.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not a model" * 10)
    bad = _run(model, data, tmp_path / "b", "--surrogate", str(junk))
    assert bad.exit_code == 3 and "Traceback" not in bad.output
    three = tmp_path / "three.pt"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 32, 32)), str(three))
    wrong = _run(model, data, tmp_path / "c", "--surrogate", str(three))
    assert wrong.exit_code == 3 and "3 classes" in wrong.output and "target classifies into 2" in wrong.output

"""`medaudit run` end to end through the CLI: outputs, JSON on stdout, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results

runner = CliRunner()


def run_cli(*args: str) -> "CliRunner.invoke":
    return runner.invoke(app, list(args))


def base_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "32",
            "--budget", "quick", "--report-format", "none", "--quiet",
            # the validity checks have their own tests (tests/checks); here they only cost time
            "--skip-checks"]


def test_run_writes_results_with_required_fields(demo_inputs, tmp_path):
    model, data = demo_inputs
    result = run_cli(*base_args(model, data, tmp_path / "out"), "--attacks", "fgsm,pgd", "--eps", "2,8", "--json")
    assert result.exit_code == 0, result.output
    stdout = json.loads(result.stdout)
    results = read_results(tmp_path / "out" / "results.json")
    assert results["status"] == "complete"
    assert results["schema_version"] and results["tool"]["name"] == "medaudit"
    assert len(results["model"]["sha256"]) == 64 and results["model"]["format"] == "torchscript"
    assert results["model"]["class_names"] == ["benign", "melanoma"]
    assert results["data"]["per_class_counts"] == {"benign": 20, "melanoma": 20}
    assert results["config"]["eps_255"] == [2.0, 8.0]
    assert [(a["attack"], a["eps_255"]) for a in results["attacks"]] == [
        ("fgsm", 2.0), ("pgd", 2.0), ("fgsm", 8.0), ("pgd", 8.0)]
    for entry in results["attacks"]:
        assert entry["eps"] == pytest.approx(entry["eps_255"] / 255)
        assert entry["perturbation"]["linf_max"] is None or entry["perturbation"]["linf_max"] <= entry["eps"] + 1e-6
        assert entry["passes"]["backward_samples"] > 0
        # the overhead ratio prices every counted call at its own batch size
        calls = entry["overhead"]["calls_by_batch_size"]
        assert sum(int(b) * f for b, (f, _) in calls.items()) == entry["passes"]["forward_samples"]
        assert sum(int(b) * k for b, (_, k) in calls.items()) == entry["passes"]["backward_samples"]
        assert entry["overhead"]["ideal_s"] > 0 and entry["overhead"]["step_ideal_s"] > entry["overhead"]["ideal_s"]
        assert 0 < entry["attack_time_s"] <= entry["time_s"]
    worst = [w["robust_accuracy"] for w in results["worst_case"]]
    assert worst == sorted(worst, reverse=True)
    assert worst[-1] <= results["clean"]["accuracy"]
    assert stdout["summary"]["clean_accuracy"] == results["clean"]["accuracy"]
    assert results["environment"]["torch"] == torch.__version__


def test_cascade_and_independent_agree_on_worst_case(demo_inputs, tmp_path):
    """The cascade skips work but must find the same worst case as running everything."""
    model, data = demo_inputs
    a = run_cli(*base_args(model, data, tmp_path / "cascade"), "--attacks", "fgsm,pgd", "--eps", "2,4")
    b = run_cli(*base_args(model, data, tmp_path / "independent"), "--attacks", "fgsm,pgd", "--eps", "2,4",
                "--independent")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = read_results(tmp_path / "cascade"), read_results(tmp_path / "independent")
    assert ra["config"]["mode"] == "cascade" and rb["config"]["mode"] == "independent"
    # independent runs PGD on every clean-correct sample; the cascade only on FGSM's survivors
    n_ind = [e["n_attacked"] for e in rb["attacks"] if e["attack"] == "pgd"]
    n_cas = [e["n_attacked"] for e in ra["attacks"] if e["attack"] == "pgd"]
    assert all(c <= i for c, i in zip(n_cas, n_ind))
    for wa, wb in zip(ra["worst_case"], rb["worst_case"]):
        assert abs(wa["robust_accuracy"] - wb["robust_accuracy"]) <= 1 / 40 + 1e-9


def test_same_seed_same_numbers(demo_inputs, tmp_path):
    from auditor.results import strip_volatile

    model, data = demo_inputs
    outs = []
    for name in ("one", "two"):
        r = run_cli(*base_args(model, data, tmp_path / name), "--attacks", "pgd,square", "--eps", "4", "--seed", "7")
        assert r.exit_code == 0, r.output
        results = read_results(tmp_path / name)
        results.pop("command")
        outs.append(strip_volatile(results))
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--eps", "2,abc"], 2, "not a number"),
        (["--eps", "-2"], 2, "positive"),
        (["--budget", "huge"], 2, "budget"),
        (["--attacks", "nosuch"], 2, "unknown attack"),
        (["--format", "nosuch"], 2, "nosuch"),
        (["--device", "tpu"], 2, "device"),
        (["--batch-size", "0"], 2, "batch-size"),
        (["--modality", "xray-of-the-soul"], 2, "unknown modality"),
        (["--channels", "1"], 3, "channel"),
    ],
)
def test_bad_options_give_one_line_and_exit_code(demo_inputs, tmp_path, args, code, fragment):
    model, data = demo_inputs
    result = run_cli(*base_args(model, data, tmp_path / "out"), *args)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medaudit: error:"), result.output
    assert fragment.lower() in lines[0].lower()
    assert "Traceback" not in result.output


def test_unknown_model_format(tmp_path, demo_inputs):
    _, data = demo_inputs
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"not a model at all")
    result = run_cli(*base_args(junk, data, tmp_path / "out"))
    assert result.exit_code == 3
    assert "format" in result.output.lower()


def test_unreadable_image(tmp_path, demo_inputs):
    model, data = demo_inputs
    bad = tmp_path / "data"
    for cls in ("benign", "melanoma"):
        (bad / cls).mkdir(parents=True)
        for src in sorted((data / cls).glob("*.png"))[:3]:
            (bad / cls / src.name).write_bytes(src.read_bytes())
    (bad / "melanoma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli(*base_args(model, bad, tmp_path / "out"), "--attacks", "fgsm", "--eps", "2")
    assert result.exit_code == 3, result.output
    assert "broken.png" in result.output
    assert not (tmp_path / "out" / "report.html").exists()


def test_label_out_of_range(tmp_path, demo_inputs):
    model, data = demo_inputs
    root = tmp_path / "csvdata"
    root.mkdir()
    src = sorted((data / "benign").glob("*.png"))[0]
    (root / "a.png").write_bytes(src.read_bytes())
    (root / "b.png").write_bytes(src.read_bytes())
    (root / "labels.csv").write_text("image,label\na.png,0\nb.png,5\n")
    result = run_cli(*base_args(model, root / "labels.csv", tmp_path / "out"), "--classes", "benign,melanoma")
    assert result.exit_code == 3, result.output
    assert "label" in result.output.lower()


def test_empty_data_set(tmp_path, demo_inputs):
    model, _ = demo_inputs
    root = tmp_path / "empty"
    (root / "benign").mkdir(parents=True)
    (root / "melanoma").mkdir(parents=True)
    result = run_cli(*base_args(model, root, tmp_path / "out"))
    assert result.exit_code == 3, result.output
    assert "empty" in result.output.lower()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output_folder(tmp_path, demo_inputs):
    model, data = demo_inputs
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run_cli(*base_args(model, data, locked / "out"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 3
    assert "writ" in result.output.lower() or "create" in result.output.lower()


def test_output_path_that_is_a_file(tmp_path, demo_inputs):
    """Works for root too: a regular file where the output folder should be."""
    model, data = demo_inputs
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    result = run_cli(*base_args(model, data, blocker))
    assert result.exit_code == 3, result.output
    assert "output folder" in result.output


def test_modalities_and_plugins_listing():
    result = run_cli("modalities", "--json")
    assert result.exit_code == 0
    names = {m["name"] for m in json.loads(result.stdout)}
    assert names >= {"dermoscopy", "fundoscopy", "chest-xray", "ct", "mri", "ultrasound", "oct", "histopathology"}
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert set(plugins["plugins.attacks"]["registered"]["attacks"]) >= {"fgsm", "pgd", "cw", "autoattack", "square", "zoo"}
    assert plugins["plugins.models"]["origin"] == "built-in"


def test_run_renders_with_a_template_dir(demo_inputs, tmp_path):
    """Branding at audit time: the same template override as `medaudit report --template-dir`."""
    model, data = demo_inputs
    templates = tmp_path / "t"
    templates.mkdir()
    (templates / "report.html.jinja").write_text(
        '{% extends "base.html.jinja" %}{% block regulatory %}<p>ACME mapping</p>{% endblock %}')
    args = base_args(model, data, tmp_path / "out")
    args[args.index("--report-format") + 1] = "html"
    result = run_cli(*args, "--attacks", "fgsm", "--eps", "2", "--limit", "8", "--template-dir", str(templates))
    assert result.exit_code == 0, result.output
    assert "ACME mapping" in (tmp_path / "out" / "report.html").read_text()
    missing = run_cli(*args, "--attacks", "fgsm", "--eps", "2", "--template-dir", str(tmp_path / "missing"))
    assert missing.exit_code == 2 and "is not a folder" in missing.output


def test_a_report_that_cannot_be_written_is_said_even_under_quiet(demo_inputs, tmp_path, monkeypatch):
    """--quiet hides progress notes, not a missing report: exit 0 with report.pdf absent
    and nothing on stderr would let a CI job ship an audit without its PDF."""
    from auditor.errors import MedauditError
    from plugins.reporters import pdf as pdf_module

    def broken() -> None:
        raise MedauditError("cannot write the PDF report: WeasyPrint failed")

    monkeypatch.setattr(pdf_module, "_weasyprint", broken)
    model, data = demo_inputs
    args = [a if a != "none" else "html,pdf" for a in base_args(model, data, tmp_path / "out")]
    result = run_cli(*args, "--attacks", "fgsm", "--eps", "2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.html").exists() and not (tmp_path / "out" / "report.pdf").exists()
    assert "pdf report not written" in result.stderr and "medaudit report" in result.stderr

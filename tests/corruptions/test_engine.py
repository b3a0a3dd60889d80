"""Corruption steps in a real audit, through the CLI: recorded with every parameter,
deterministic per image whatever the batch, resumable, gated (with JUnit), and refused
with a usage error (exit 2) for unknown families, bad severities and gates they cannot answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.results import read_results
from tests.core.tiny_audit import make_data, save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return save_model(folder / "model.pt"), make_data(folder / "data", per_class=5)


def audit(tiny, out: Path, *extra: str):
    model, data = tiny
    return runner.invoke(app, ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16",
                               "--attacks", "fgsm", "--eps", "2", "--budget", "quick", "--report-format", "none",
                               "--skip-checks", "--quiet", "--no-sandbox",
                               *(() if "--resume" in extra else ("--overwrite",)), *extra])


def test_steps_are_recorded_deterministic_and_independent_of_the_batch(tiny, tmp_path):
    args = ("--corruptions", "gaussian-noise,jpeg,motion-blur", "--severities", "1,5", "--seed", "3")
    first = audit(tiny, tmp_path / "a", *args)
    assert first.exit_code == 0, first.output
    again = audit(tiny, tmp_path / "b", *args, "--batch-size", "3")  # other batches, same images and seed
    assert again.exit_code == 0, again.output
    a, b = (read_results(tmp_path / name / "results.json")["corruption"] for name in "ab")
    assert [(e["family"], e["severity"]) for e in a["steps"]] == [
        ("gaussian-noise", 1), ("gaussian-noise", 5), ("jpeg", 1), ("jpeg", 5), ("motion-blur", 1), ("motion-blur", 5)]
    assert [e["samples"]["pred"] for e in a["steps"]] == [e["samples"]["pred"] for e in b["steps"]]
    assert [e["accuracy"] for e in a["steps"]] == [e["accuracy"] for e in b["steps"]]
    jpeg = next(f for f in a["families"] if f["name"] == "jpeg")
    assert jpeg["params"]["3"]["quality"] == 15 and jpeg["reference"] and jpeg["library"]
    step = a["steps"][0]
    assert step["params"]["sigma"] == 0.04 and step["n"] == 10 and len(step["ci95"]) == 2
    assert set(step["per_class"]) == {"benign", "melanoma"}
    assert step["clinical"]["sensitivity"]["n"] == 5 and step["overhead"]["ideal_s"] > 0
    worst = {w["severity"]: w for w in a["worst_case"]}
    for severity in (1, 5):  # per image over families: never above the lowest family
        assert worst[severity]["accuracy"] <= min(e["accuracy"] for e in a["steps"] if e["severity"] == severity)
    assert a["relative_error"]["method"].startswith("relative corruption error")
    assert [r["family"] for r in a["gallery"]] == ["gaussian-noise", "jpeg", "motion-blur"]
    assert [i["severity"] for i in a["gallery"][0]["images"]] == [1, 3, 5]
    rows = read_results(tmp_path / "a" / "results.json")["timing"]["breakdown"]
    assert sum(1 for r in rows if r["phase"] == "corruption") == 6


def test_resume_reuses_finished_steps(tiny, tmp_path):
    args = ("--corruptions", "brightness", "--severities", "2")
    assert audit(tiny, tmp_path / "out", *args).exit_code == 0
    before = read_results(tmp_path / "out" / "results.json")["corruption"]["steps"]
    resumed = audit(tiny, tmp_path / "out", *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    after = read_results(tmp_path / "out" / "results.json")["corruption"]["steps"]
    assert after[0]["resumed"] is True and after[0]["samples"] == before[0]["samples"]


def test_gates_on_corruption_pass_fail_and_write_junit(tiny, tmp_path):
    junit = tmp_path / "gates.xml"
    result = audit(tiny, tmp_path / "out", "--corruptions", "contrast", "--severities", "1,3",
                   "--fail-under", "corruption@3=0.0,corruption:contrast@1=1.0", "--junit", str(junit))
    gates = read_results(tmp_path / "out" / "results.json")["gates"]
    by_label = {c["label"]: c for c in gates["criteria"]}
    assert by_label["corruption@3>=0"]["passed"] is True
    assert "worst case over families" in by_label["corruption@3>=0"]["message"]
    contrast = by_label["corruption:contrast@1>=1"]
    assert contrast["passed"] is (contrast["value"] >= 1.0)
    assert result.exit_code == (0 if contrast["passed"] else 1)
    xml = junit.read_text()
    assert 'name="corruption@3&gt;=0"' in xml and "corruption:contrast@1" in xml


@pytest.mark.parametrize("extra, message", [
    (("--corruptions", "defocus,jpeg"), "unknown corruption 'defocus'"),
    (("--corruptions", "jpeg", "--severities", "0,3"), "--severities: '0'"),
    (("--corruptions", "jpeg", "--severities", "2.5"), "--severities: '2.5'"),
    (("--corruptions", "jpeg", "--severities", "1", "--fail-under", "corruption@3=0.5"), "severity 3 is not audited"),
    (("--fail-under", "corruption@3=0.5"), "add --corruptions default"),
    (("--corruptions", "jpeg", "--fail-under", "corruption:haze@3=0.5"), "'haze' is not an audited corruption"),
    (("--corruptions", "jpeg", "--fail-under", "corruption@9=0.5"), "severity from 1 to 5"),
])
def test_bad_corruption_options_are_usage_errors(tiny, tmp_path, extra, message):
    result = audit(tiny, tmp_path / "out", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_demo_audits_the_dermoscopy_families(monkeypatch, tmp_path):
    """The demo's wiring only (training and the audit are the rest of the suite's business):
    ``medaudit demo`` hands the audit the dermoscopy preset's corruption families."""
    import auditor.cli.demo as demo_cli
    import auditor.demo
    from auditor.registry import get_registry

    seen = {}
    monkeypatch.setattr(auditor.demo, "build_demo", lambda folder, seed: (tmp_path / "m.pt", tmp_path / "d", {}))
    monkeypatch.setattr(demo_cli, "execute", lambda config, **kwargs: seen.setdefault("config", config))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "out"), "--report-format", "none", "--quiet"])
    assert result.exit_code == 0, result.output
    expected = list(get_registry().get("modalities", "dermoscopy").corruptions)
    assert seen["config"].corruptions == expected and "defocus-blur" in expected
    assert seen["config"].severities == [1, 2, 3, 4, 5]

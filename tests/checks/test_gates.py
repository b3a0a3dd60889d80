"""Acceptance gates: parsing, config files, evaluation, JUnit XML and the run command's exit codes."""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import UsageError
from auditor.gates import (evaluate_gates, junit_xml, load_criteria_file, parse_criteria, parse_criterion,
                           validate_criteria)
from auditor.results import read_results
from tests.checks.conftest import one_thread

runner = CliRunner()


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, metric, eps, op, threshold", [
    ("worst_case@4=0.50", "worst_case", 4.0, ">=", 0.5),
    ("worst-case@4/255=50%", "worst_case", 4.0, ">=", 0.5),
    ("pgd@2=0.60", "pgd", 2.0, ">=", 0.6),
    ("sensitivity@2=0.80", "sensitivity", 2.0, ">=", 0.8),
    ("sensitivity=0.9", "sensitivity", None, ">=", 0.9),
    ("clean>=0.7", "clean", None, ">=", 0.7),
    ("missed_disease@4=0.2", "missed_disease", 4.0, "<=", 0.2),
    ("targeted_pos_to_neg@8<=0.5", "targeted_pos_to_neg", 8.0, "<=", 0.5),
    ("checks=no-fail", "checks", None, "checks", "no-fail"),
])
def test_parse_criterion(text, metric, eps, op, threshold):
    c = parse_criterion(text)
    assert (c.metric, c.eps_255, c.op, c.threshold) == (metric, eps, op, threshold)


@pytest.mark.parametrize("text", ["worst_case@4", "worst_case@x=0.5", "worst_case@4=1.5", "worst_case@4=abc",
                                  "worst_case=0.5", "clean@2=0.5", "checks=maybe", "pgd=0.5", "=0.5", "@4=0.5"])
def test_unparseable_criteria_are_usage_errors(text):
    with pytest.raises(UsageError, match="--fail-under"):
        parse_criterion(text)


def test_repeatable_and_comma_separated():
    got = parse_criteria(["worst_case@4=0.5,pgd@2=0.6", "checks=no-fail"])
    assert [c.metric for c in got] == ["worst_case", "pgd", "checks"]


def test_criteria_files(tmp_path):
    toml = tmp_path / "gates.toml"
    toml.write_text('fail_under = ["worst_case@4=0.50", "checks=no-fail"]\n')
    assert load_criteria_file(toml) == ["worst_case@4=0.50", "checks=no-fail"]
    table = tmp_path / "table.toml"
    table.write_text('[fail_under]\n"worst_case@4" = 0.5\n"checks" = "no-fail"\n')
    assert [c.label for c in parse_criteria(load_criteria_file(table))] == ["worst_case@4>=0.5", "checks=no-fail"]
    js = tmp_path / "gates.json"
    js.write_text(json.dumps({"fail_under": {"pgd@2": 0.6}}))
    assert load_criteria_file(js) == ["pgd@2=0.6"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="neither TOML nor JSON"):
        load_criteria_file(bad)
    with pytest.raises(UsageError, match="cannot read"):
        load_criteria_file(tmp_path / "missing.toml")


def test_validation_against_the_audit():
    ok = dict(eps_255=[2.0, 8.0], attacks=["fgsm", "pgd"], positive="melanoma", binary=True)
    validate_criteria(parse_criteria(["worst_case@8=0.1", "pgd@2=0.5", "auroc@2=0.6", "checks=no-fail"]), **ok)
    with pytest.raises(UsageError, match="not audited"):
        validate_criteria(parse_criteria(["worst_case@4=0.1"]), **ok)
    with pytest.raises(UsageError, match="not a metric or an attack"):
        validate_criteria(parse_criteria(["square@2=0.1"]), **ok)
    with pytest.raises(UsageError, match="positive class"):
        validate_criteria(parse_criteria(["sensitivity@2=0.1"]), **{**ok, "positive": None})


# ------------------------------------------------------------------- evaluation
def test_evaluate_gates_on_an_audit(audited):
    results = audited("honest")
    worst8 = results["worst_case"][-1]["robust_accuracy"]
    gates = evaluate_gates(parse_criteria([f"worst_case@8={worst8:.4f}", "worst_case@8=0.99", "checks=no-fail",
                                           "missed_disease@8<=0.01", "sensitivity=0.01"]), results)
    passed = [c["passed"] for c in gates["criteria"]]
    assert passed == [worst8 >= round(worst8, 4), False, True, False, True]
    assert gates["verdict"] == "fail" and gates["n_failed"] == 2
    assert gates["criteria"][1]["value"] == worst8 and gates["criteria"][1]["ci95"]
    assert evaluate_gates([], results) is None
    failing_checks = evaluate_gates(parse_criteria(["checks=no-fail"]), audited("quantised"))
    assert failing_checks["verdict"] == "fail" and "gradients" in failing_checks["criteria"][0]["message"]


def test_junit_xml_has_one_testcase_per_criterion():
    gates = {"verdict": "fail", "criteria": [
        {"criterion": "a", "label": "worst_case@4>=0.5", "passed": True, "message": "ok <fine>"},
        {"criterion": "b", "label": "pgd@2>=0.6", "passed": False, "message": "pgd is 0.4 & below"}]}
    root = ET.fromstring(junit_xml(gates, model="m.pt").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["worst_case@4>=0.5", "pgd@2>=0.6"]
    assert cases[0].find("failure") is None and cases[1].find("failure").get("message") == "pgd is 0.4 & below"


# --------------------------------------------------------------------------- CLI
def _run(check_workdir, name, out, *extra):
    args = ["run", str(check_workdir["models"][name]), "--data", str(check_workdir["data"]), "--out", str(out),
            "--input-size", "32", "--budget", "quick", "--attacks", "fgsm,pgd", "--eps", "2,8", "--backend",
            "pgd=native", "--check-samples", "16", "--report-format", "none", "--quiet", *extra]
    with warnings.catch_warnings(), one_thread():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return runner.invoke(app, args)


def test_failing_gate_exits_1_after_writing_results_and_junit(check_workdir, tmp_path):
    out, junit = tmp_path / "out", tmp_path / "gates.xml"
    result = _run(check_workdir, "quantised", out, "--fail-under", "checks=no-fail", "--fail-under",
                  "clean=0.1,worst_case@8=0.0", "--junit", str(junit))
    assert result.exit_code == 1, result.output
    assert "acceptance gate failed: checks=no-fail" in result.stderr
    results = read_results(out)
    assert results["status"] == "complete" and results["gates"]["verdict"] == "fail"
    assert [c["passed"] for c in results["gates"]["criteria"]] == [False, True, True]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"


def test_passing_gate_from_a_file_exits_0(check_workdir, tmp_path):
    spec = tmp_path / "gates.json"
    spec.write_text(json.dumps(["clean=0.5", "checks=no-fail"]))
    result = _run(check_workdir, "honest", tmp_path / "out", "--fail-under-file", str(spec), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "pass"


@pytest.mark.parametrize("extra, message", [
    (["--fail-under", "worst_case@8"], "cannot parse 'worst_case@8'"),
    (["--fail-under", "worst_case@4=0.5"], "eps 4/255 is not audited"),
    (["--positive-class", "tumour"], "'tumour' is not one of the classes"),
    (["--junit", "x.xml"], "--junit writes the acceptance gates"),
])
def test_bad_gate_options_are_one_line_usage_errors(check_workdir, tmp_path, extra, message):
    result = _run(check_workdir, "honest", tmp_path / "out", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()  # refused before any attack ran

"""``medaudit run --defense`` end to end and its usage errors (through Typer's runner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app

runner = CliRunner()


def _run(toy_files, out, *extra):
    args = ["run", str(toy_files["model"]), "--data", str(toy_files["folder"]), "--channels", "1",
            "--input-size", "8", "--attacks", "fgsm,pgd", "--eps", "8,24", "--budget", "quick",
            "--report-format", "none", "--quiet", "--out", str(out), *extra]
    return runner.invoke(app, args)


@pytest.mark.parametrize("spec, fragment", [
    ("nope", "unknown defense 'nope'"),
    ("jpeg:quality", "is not key=value"),
    ("bit-depth:bits=12", "outside"),
])
def test_bad_defense_spec_exits_2_with_one_line(toy_files, tmp_path, spec, fragment):
    result = _run(toy_files, tmp_path / "out", "--defense", spec)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "out" / "results.json").exists()


def test_run_with_a_deterministic_defense_records_both_numbers(toy_files, tmp_path):
    result = _run(toy_files, tmp_path / "out", "--defense", "bit-depth:bits=5")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    block = results["defense"]
    assert block["name"] == "bit-depth" and block["params"] == {"bits": 5} and block["family"] == "preprocessing"
    assert block["main_numbers"] == "adaptive" and block["adaptive"]["method"] == "bpda"
    assert [w["robust_accuracy"] for w in block["adaptive"]["worst_case"]] == \
        [w["robust_accuracy"] for w in results["worst_case"]]
    for view in ("non_adaptive", "undefended"):
        assert [w["eps_255"] for w in block[view]["worst_case"]] == [8.0, 24.0]
        accs = [w["robust_accuracy"] for w in block[view]["worst_case"]]
        assert accs[1] <= accs[0] <= block[view]["clean_accuracy"]
    assert isinstance(block["gain_disappears_under_adaptive"], bool) and block["verdict"]
    assert [g["eps_255"] for g in block["gain"]] == [8.0, 24.0]
    assert results["config"]["defense"] == "bit-depth:bits=5"
    evidence = results["defenses"][-1]
    assert evidence["name"] == "bit-depth" and evidence["worst_case"] and evidence["message"]


def test_randomized_defense_audit_is_deterministic(toy_files, tmp_path):
    spec = "random-smoothing:sigma=0.03,samples=5,eot_samples=2"
    numbers = []
    for name in ("a", "b"):
        result = _run(toy_files, tmp_path / name, "--defense", spec)
        assert result.exit_code == 0, result.output
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["defense"]["adaptive"]["method"] == "eot" and results["defense"]["seed"] == 0
        numbers.append((results["clean"]["accuracy"], [w["robust_accuracy"] for w in results["worst_case"]],
                        [w["robust_accuracy"] for w in results["defense"]["non_adaptive"]["worst_case"]]))
    assert numbers[0] == numbers[1]


def test_no_defense_no_defense_block(toy_files, tmp_path):
    result = _run(toy_files, tmp_path / "out")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "defense" not in results and results["config"]["defense"] is None


def test_undefended_baseline_equals_the_plain_audit(toy_files, tmp_path):
    """The transfer pass's undefended numbers are the audit without the defense."""
    assert _run(toy_files, tmp_path / "plain").exit_code == 0
    assert _run(toy_files, tmp_path / "tv", "--defense", "tv:weight=0.02,steps=10").exit_code == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    defended = json.loads((tmp_path / "tv" / "results.json").read_text())
    baseline = defended["defense"]["undefended"]
    assert baseline["clean_accuracy"] == plain["clean"]["accuracy"]
    assert [w["robust_accuracy"] for w in baseline["worst_case"]] == [w["robust_accuracy"] for w in plain["worst_case"]]


def test_gain_rows_and_verdict():
    from auditor.evaluation.defense_audit import _gain_rows, _verdict

    def wc(*values):
        return [{"eps_255": e, "robust_accuracy": v} for e, v in zip((2, 4, 8), values)]

    rows = _gain_rows(wc(0.30, 0.10, 0.0), wc(0.70, 0.60, 0.40), wc(0.28, 0.08, 0.0), 0.05)
    assert [r["disappears"] for r in rows] == [True, True, True]
    assert "disappears" in _verdict(rows, 0.05)
    held = _gain_rows(wc(0.6, 0.5, 0.3), wc(0.7, 0.6, 0.4), wc(0.3, 0.1, 0.0), 0.05)
    assert not any(r["disappears"] for r in held) and "holds" in _verdict(held, 0.05)
    none = _gain_rows(wc(0.3, 0.1, 0.0), wc(0.31, 0.1, 0.0), wc(0.3, 0.1, 0.0), 0.05)
    assert "no gain" in _verdict(none, 0.05)


def test_evidence_from_two_audits_reads_like_the_report():
    from auditor.hardening import evidence_from_audits

    def results(clean, worst):
        return {"clean": {"accuracy": clean}, "worst_case": [{"eps_255": e, "robust_accuracy": v} for e, v in worst]}

    log = {"method": "pgd-at", "settings": {"eps_255": 4.0}}
    evidence = evidence_from_audits(results(0.78, [(2, 0.2), (4, 0.03)]), results(0.70, [(2, 0.6), (4, 0.41)]), log)
    assert evidence["message"] == ("PGD-AT at 4/255 measured: worst-case accuracy at 4/255 from 3% to 41%, "
                                   "clean accuracy 78% -> 70%")
    assert evidence["family"] == "training" and evidence["baseline"]["clean_accuracy"] == 0.78


def test_evidence_states_the_balanced_figure_when_classes_are_known():
    """A drift towards the majority class raises accuracy; the mean over classes shows it."""
    from auditor.hardening import evidence_from_audits

    def results(clean, robust, per_class):
        return {"clean": {"accuracy": clean}, "worst_case": [{"eps_255": 4, "robust_accuracy": robust, "per_class": {
            name: {"accuracy": acc} for name, acc in per_class.items()}}]}

    evidence = evidence_from_audits(results(0.4, 0.1, {"benign": 0.06, "melanoma": 0.3}),
                                    results(0.8, 0.77, {"benign": 0.92, "melanoma": 0.2}),
                                    {"method": "pgd-at", "settings": {"eps_255": 4}})
    assert evidence["message"].endswith("(mean over classes at 4/255: 18% -> 56%)")

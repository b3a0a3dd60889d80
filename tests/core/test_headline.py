"""The headline table at the end of `medaudit run` (issue 14, item 15): on stderr, read from
results.json's numbers, not with --quiet; stdout stays for --json."""

from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from auditor.cli import app
from auditor.cli.headline import headline
from auditor.results import read_results

runner = CliRunner()


def _args(model, data, out) -> list[str]:
    return ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "32", "--budget", "quick",
            "--report-format", "none", "--skip-checks", "--attacks", "fgsm,pgd", "--eps", "2,8"]


def test_run_ends_with_the_headline_on_stderr(demo_inputs, tmp_path):
    model, data = demo_inputs
    (tmp_path / "audit.toml").write_text('device_name = "DermaScan AI"\naudit_owner = "QA <lead>"\n')
    result = runner.invoke(app, [*_args(model, data, tmp_path / "out"), "--fail-under", "worst_case@8=0.99",
                                 "--metadata", str(tmp_path / "audit.toml"), "--json"])
    assert result.exit_code == 1, result.output  # the gate fails: the headline is printed first
    json.loads(result.stdout)  # stdout is the --json answer alone
    results = read_results(tmp_path / "out" / "results.json")
    assert results["metadata"] == {"device_name": "DermaScan AI", "audit_owner": "QA <lead>"}
    err = " ".join(result.stderr.replace("│", " ").split())  # table cells, as a reader sees them
    clean = results["clean"]
    assert f"clean {clean['accuracy']:.1%} {clean['ci95'][0]:.1%} to {clean['ci95'][1]:.1%} {clean['n']}" in err
    for w in results["worst_case"]:
        assert (f"worst case at {w['eps_255']:g}/255 {w['robust_accuracy']:.1%} "
                f"{w['ci95'][0]:.1%} to {w['ci95'][1]:.1%} {w['n']}") in err
    impact = results["summary"]["class_impact"][0]
    assert impact["class"] == "melanoma" and impact["eps_255"] == 2.0
    outcome = f"reported as {impact['flipped_to']}" if impact["flipped_to"] else "misclassified"
    assert f"clinical: at 2/255, {impact['misreported_fraction']:.0%} of melanoma images are {outcome}" in err
    assert "validity checks: skipped: turned off (--skip-checks)" in err
    assert "acceptance gates: FAIL (failed: worst_case@8" in err


def test_quiet_prints_no_headline(demo_inputs, tmp_path):
    model, data = demo_inputs
    result = runner.invoke(app, [*_args(model, data, tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "headline" not in result.stderr and "worst case" not in result.stderr


def _render(results) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(headline(results))
    return " ".join(console.export_text().replace("│", " ").split())


def test_segmentation_headline_gives_dice_with_intervals_and_missed_structures():
    results = {
        "model": {"task": "segmentation"}, "modality": {"structure": "vessels"},
        "clean": {"dice": 0.81234, "dice_ci95": [0.79, 0.83], "n": 20, "missed_rate": 0.05},
        "worst_case": [{"eps_255": 2.0, "dice": 0.6, "dice_ci95": [0.55, 0.65], "n": 20, "missed_rate": 0.2},
                       {"eps_255": 8.0, "dice": 0.2, "dice_ci95": [0.15, 0.25], "n": 20, "missed_rate": 0.58}],
        "checks": {"verdict": "warn", "summary": {"pass": 7, "warn": 1, "fail": 0}},
    }
    text = _render(results)
    assert "Dice" in text and "clean 0.812 0.790 to 0.830 20" in text
    assert "worst case at 8/255 0.200 0.150 to 0.250 20" in text
    assert "clinical: at 8/255, 58% of vessels regions are missed (clean: 5%)" in text
    assert "validity checks: WARN (7 pass, 1 warn)" in text
    assert "acceptance gates: not assessed" in text


def test_names_from_results_print_as_text_not_markup_or_terminal_controls():
    results = {"model": {"task": "classification", "class_names": ["a", "b"]}, "clean": {"accuracy": 0.5, "n": 2},
               "summary": {"class_impact": [{"eps_255": 2.0, "class": "[red]x\x1b[2J", "misreported_fraction": 1.0,
                                             "flipped_to": "b"}]}}
    text = _render(results)
    assert "[red]x\\x1b[2J images are reported as b" in text

"""Stopping early (auditor.stopping, --max-time): the audit ends at a step boundary with
results.json marked incomplete, names what did not run, exits 5, and --resume finishes it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import EXIT_INCOMPLETE, UsageError
from auditor.results import read_results
from auditor.stopping import StopRules, TimeLimit, format_duration, parse_duration
from tests.core.tiny_audit import make_data, run_args, save_model
from tests.engine.test_skeleton import _prep, _Recorder


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("20m", 1200), ("2h", 7200), ("1h30m", 5400),
                                           ("45", 45), ("0.5s", 0.5), (" 2 m ", 120), ("1d", 86400)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5s", "0s", "0", "5x", "1e309", "2h-1m", "s", "1.2.3s", "nan"])
def test_a_duration_that_is_not_one_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--max-time"):
        parse_duration(text)


def test_durations_print_as_written():
    assert [format_duration(s) for s in (90, 1200, 5400, 0.5)] == ["1m30s", "20m", "1h30m", "0.5s"]


def _clock(times: list[float]):
    """Readings in order, then the last one for ever."""
    readings = list(times)
    return lambda: readings.pop(0) if len(readings) > 1 else readings[0]


def test_a_spent_time_limit_ends_the_audit_at_a_step_boundary_and_resume_finishes_it(tmp_path):
    audit = _Recorder(_prep(tmp_path))
    # start, then one reading before each step: 0 s, 5 s, 12 s (limit 10 s) -> two steps run
    audit.stop = StopRules([TimeLimit(10, clock=_clock([0.0, 0.0, 0.0, 5.0, 12.0]))])
    results = audit.run()
    assert [c[1] for c in audit.calls if c[0] == "step"] == [("cheap", 2.0), ("costly", 2.0)]
    assert "finish" not in [c[0] for c in audit.calls]  # the checks and summary never ran
    assert results["status"] == "incomplete"
    block = results["incomplete"]
    assert block["rule"] == "max-time" and block["reason"].startswith("--max-time 10s spent")
    assert block["not_run"] == ["cheap at 8/255", "costly at 8/255", audit.finish_label]
    # the worst case only where every attack ran: at 8/255 it would overstate robustness
    assert block["eps_255_complete"] == [2.0]
    assert {w["eps_255"] for w in results["worst_case"]} == {2.0}
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "incomplete"

    resumed = _Recorder(_prep(tmp_path, resume=True))
    done = resumed.run()
    assert [c[1] for c in resumed.calls if c[0] == "step"] == [("cheap", 8.0), ("costly", 8.0)]
    assert done["status"] == "complete" and "incomplete" not in done and len(done["attacks"]) == 4


def test_rules_latch_and_an_audit_without_rules_never_stops():
    rules = StopRules([TimeLimit(1, clock=_clock([0.0, 2.0]))])
    assert rules.check("a") and rules.check("b") and rules.not_run == ["a", "b"]
    assert not StopRules().check("a") and not StopRules()


def test_max_time_cli_exits_5_with_an_incomplete_report_and_resume_completes(tmp_path):
    model, data = save_model(tmp_path / "tiny.pt"), make_data(tmp_path / "data")
    out = tmp_path / "out"
    args = [a if a != "none" else "html" for a in run_args(model, data, out, "--no-sandbox", "--eps", "2,4")]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--max-time", "0.001s"])
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "INCOMPLETE" in result.output and "--resume" in result.output
    results = read_results(out / "results.json")
    assert results["status"] == "incomplete" and results["attacks"] == [] and results["worst_case"] == []
    assert results["incomplete"]["not_run"][:2] == ["fgsm at 2/255", "fgsm at 4/255"]
    html = (out / "report.html").read_text()
    assert "INCOMPLETE AUDIT" in html and "fgsm at 4/255" in html and "--resume" in html

    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    results = read_results(out / "results.json")
    assert results["status"] == "complete" and len(results["attacks"]) == 2
    assert "INCOMPLETE AUDIT" not in (out / "report.html").read_text()

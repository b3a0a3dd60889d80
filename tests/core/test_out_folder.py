"""The output folder is shared ground (issue 12, items 5 and 11): links planted in it are
not followed, and two medaudit runs cannot write it at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.out_lock import LOCK_NAME
from auditor.results import read_results, write_results
from tests.core.tiny_audit import ROOT, make_data, run_args, run_medaudit, save_model
from tests.reporters.conftest import RESULTS, load_results

runner = CliRunner()

# Holds the lock of argv[1] the way a running audit does, until killed.
HOLDER = ("import sys, time; from pathlib import Path; from auditor.out_lock import acquire; "
          "acquire(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)")


def render(out, *extra: str):
    return runner.invoke(app, ["report", str(RESULTS), "--out", str(out), *extra])


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/out."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def test_write_probe_does_not_follow_a_planted_link(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".medaudit-write-test").symlink_to(victim)
    result = render(out, "--format", "html", "--quiet")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"


def test_reports_and_results_replace_planted_links_not_their_targets(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("report.html", "report.pdf", "results.json"):
        (out / name).symlink_to(victim)
    result = render(out, "--format", "html,pdf", "--quiet")
    assert result.exit_code == 0, result.output
    write_results(out, load_results())
    assert victim.read_text() == "precious"
    for name in ("report.html", "report.pdf", "results.json"):
        assert not (out / name).is_symlink()
    assert read_results(out)["schema_version"]


def test_a_planted_lock_link_is_refused(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    result = render(out, "--format", "html")
    assert result.exit_code == 3 and "symbolic link" in result.output
    assert victim.read_text() == "precious"


def test_second_report_exits_2_naming_the_running_one(holder):
    out, proc = holder
    result = render(out, "--format", "html")
    assert result.exit_code == 2, result.output
    assert f"PID {proc.pid}" in result.output
    assert not (out / "report.html").exists()


def test_second_run_exits_2_before_loading_anything(holder, tmp_path):
    out, proc = holder
    model = save_model(tmp_path / "model.pt")
    data = make_data(tmp_path / "data")
    result = run_medaudit(*run_args(model, data, out))
    assert result.returncode == 2, result.stderr
    assert f"PID {proc.pid}" in result.stderr
    assert not (out / "results.json").exists()


def test_a_killed_runs_lock_is_taken_over_with_a_note(holder):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_NAME).exists()  # left behind, as by a run killed with -9
    result = render(out, "--format", "html")
    assert result.exit_code == 0, result.output
    assert f"PID {proc.pid}" in result.output and "took over" in result.output
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_lock_is_released_when_the_command_fails(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.html.jinja").write_text("{% broken")
    out = tmp_path / "out"
    result = render(out, "--format", "html", "--template-dir", str(templates))
    assert result.exit_code == 3, result.output
    assert not (out / LOCK_NAME).exists()
    shutil.rmtree(templates)
    assert render(out, "--format", "html", "--quiet").exit_code == 0

"""An audit folder is never replaced by accident: re-running into a --out that holds a
results.json needs --overwrite (or --resume to continue it); otherwise exit 2, untouched."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from auditor.cli import app
from tests.core.test_sandbox import medaudit
from tests.core.tiny_audit import make_data, run_args, save_model


def test_rerun_into_an_audit_folder_needs_overwrite(tmp_path: Path) -> None:
    model, data, out = save_model(tmp_path / "model.pt"), make_data(tmp_path / "data"), tmp_path / "out"
    # with the sandbox at its default: the child re-runs the command and must agree with the parent
    assert medaudit(*run_args(model, data, out)).returncode == 0
    first = (out / "results.json").read_bytes()

    again = medaudit(*run_args(model, data, out))
    assert again.returncode == 2, again.stderr
    assert "--overwrite" in again.stderr and "already holds an audit" in again.stderr
    assert (out / "results.json").read_bytes() == first  # the evidence is untouched

    both = medaudit(*run_args(model, data, out, "--overwrite", "--resume"))
    assert both.returncode == 2 and "give one of them" in both.stderr

    replaced = medaudit(*run_args(model, data, out, "--overwrite"))
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "results.json").read_bytes() != first  # rewritten (new timestamps)


def test_an_empty_or_report_only_folder_is_not_an_audit(tmp_path: Path) -> None:
    model, data, out = save_model(tmp_path / "model.pt"), make_data(tmp_path / "data"), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, run_args(model, data, out))
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"

"""`medaudit run --metadata audit.toml` (issue 14, item 14): the device, its intended use
and the audit's owner on the cover and in the traceability table, "not provided" where
absent, stored in results.json for `medaudit report`; a hostile file is one line, exit 3."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.config import AuditConfig
from auditor.errors import InputError
from auditor.metadata import FIELDS, MAX_FILE_BYTES, load_metadata
from auditor.reporting.environment import render_html
from tests.reporters.conftest import IMG, SCRIPT, load_results

runner = CliRunner()

FULL = """device_name = "DermaScan AI"
device_version = "2.1.0"
manufacturer = "Example Medical Ltd"
intended_use = '''Decision support for melanoma triage
in dermoscopy'''
intended_population = "Adults referred to dermatology clinics"
audit_owner = "QA lead"
"""


def test_a_full_file_reads_every_field(tmp_path):
    (tmp_path / "audit.toml").write_text(FULL)
    metadata = load_metadata(tmp_path / "audit.toml")
    assert list(metadata) == list(FIELDS)
    assert metadata["intended_use"] == "Decision support for melanoma triage\nin dermoscopy"


@pytest.mark.parametrize("content, message", [
    ('device_nme = "x"\n', r"unknown key\(s\) 'device_nme' \(known: device_name, device_version,"),
    ("device_version = 2.1\n", r"'device_version' must be a string in quotes, not float"),
    ("[device_name]\nx = 'y'\n", r"'device_name' must be a string in quotes, not a table"),
    ('audit_owner = ["a", "b"]\n', r"'audit_owner' must be a string in quotes, not a list"),
    ('device_name = "a\\u001b[2Jb"\n', r"'device_name' contains control characters"),
    ('device_name = "unterminated\n', r"is not valid TOML"),
    (f'intended_use = "{"x" * 3000}"\n', r"'intended_use' is longer than 2000 characters"),
])
def test_hostile_content_is_one_line_exit_3(tmp_path, content, message):
    (tmp_path / "audit.toml").write_text(content)
    with pytest.raises(InputError, match=message) as err:
        load_metadata(tmp_path / "audit.toml")
    assert err.value.exit_code == 3 and "\n" not in str(err.value)


def test_huge_non_utf8_and_missing_files_are_refused(tmp_path):
    (tmp_path / "huge.toml").write_bytes(b"# " + b"x" * MAX_FILE_BYTES)
    with pytest.raises(InputError, match=r"huge.toml is larger than 64 KiB"):
        load_metadata(tmp_path / "huge.toml")
    (tmp_path / "latin1.toml").write_bytes('manufacturer = "Müller"\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.toml is not UTF-8 text"):
        load_metadata(tmp_path / "latin1.toml")
    with pytest.raises(InputError, match=r"cannot read .*absent.toml"):
        load_metadata(tmp_path / "absent.toml")


def test_run_refuses_a_bad_metadata_file_before_loading_anything(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a model")  # never loaded: the metadata is read first
    (tmp_path / "data").mkdir()
    (tmp_path / "audit.toml").write_text("device_version = 2\n")
    result = runner.invoke(app, ["run", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data"),
                                 "--out", str(tmp_path / "out"), "--metadata", str(tmp_path / "audit.toml")])
    assert result.exit_code == 3, result.output
    assert "'device_version' must be a string in quotes" in result.stderr


def test_metadata_is_not_part_of_the_resume_identity(tmp_path):
    plain = AuditConfig(model=tmp_path / "m.pt", data=tmp_path)
    named = AuditConfig(model=tmp_path / "m.pt", data=tmp_path, metadata={"device_name": "X"})
    assert plain.identity() == named.identity()


def _cover_and_regulatory(html: str) -> tuple[str, str]:
    cover = re.search(r'<header class="cover".*?</header>', html, re.S).group()
    regulatory = re.search(r'<table class="device-identification">.*?</table>', html, re.S).group()
    return cover, regulatory


def test_report_says_not_provided_for_every_absent_field():
    cover, regulatory = _cover_and_regulatory(render_html(load_results()))  # results without metadata
    assert cover.count("not provided") == len(FIELDS) and regulatory.count("not provided") == len(FIELDS)


def test_report_shows_metadata_escaped_and_medaudit_report_rerenders_it(tmp_path):
    results = load_results()
    results["metadata"] = {"device_name": f"DermaScan{SCRIPT}", "manufacturer": f"ACME{IMG}",
                           "intended_use": "triage", "audit_owner": 42}  # a hand-edited number: not provided
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = runner.invoke(app, ["report", str(tmp_path / "results.json"), "--format", "html", "--quiet"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert SCRIPT not in html and IMG not in html
    cover, regulatory = _cover_and_regulatory(html)
    for block in (cover, regulatory):
        assert "DermaScan&lt;script&gt;alert(1)&lt;/script&gt;" in block and "ACME&#34;&gt;&lt;img" in block
        assert "triage" in block and block.count("not provided") == 3  # version, population, owner

"""``medaudit report``: re-render reports from a results.json alone (no model, no data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from auditor.cli.common import RichProgress, handle_errors
from auditor.config import parse_list
from auditor.registry import get_registry

REPORT_HELP = """Render reports from an existing results.json, without the model or the data.

Examples:

  medaudit report medaudit-report/results.json

  medaudit report results.json --out review/ --format pdf

  medaudit report results.json --template-dir branding/   # overrides single template blocks
"""


@handle_errors
def report(
    results_file: Annotated[Path, typer.Argument(metavar="RESULTS", help="A results.json written by `medaudit run` (or its folder).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: the folder of RESULTS).")] = None,
    formats: Annotated[str, typer.Option("--format", "-f", help="Comma-separated reporters: html, pdf or any plugin's (see `medaudit plugins`).")] = "html,pdf",
    template_dir: Annotated[Optional[list[Path]], typer.Option("--template-dir", help="Folder of templates searched before the built-ins; repeatable. A report.html.jinja there can extend base.html.jinja and override single blocks.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written files as JSON on stdout.")] = False,
) -> None:
    from auditor.audit import locked_out_dir
    from auditor.reporting import render_reports
    from auditor.results import read_results

    registry = get_registry()
    names = parse_list(formats, "--format") or []
    for name in names:  # unknown formats fail (exit 2) before anything is read or written
        registry.get("reporters", name)
    results = read_results(results_file)
    folder = results_file if results_file.is_dir() else results_file.parent
    out_dir = out or folder
    progress = RichProgress(quiet=quiet or as_json)
    with locked_out_dir(out_dir, progress.note):
        written = render_reports(results, out_dir, names, registry, progress=progress,
                                 template_dirs=list(template_dir or []))
    reports = [str(p) for p in written if p.name != "results.json"]
    if as_json:
        typer.echo(json.dumps({"out": reports}, indent=1))
    else:
        progress.note(f"wrote {', '.join(reports)}")

"""``medaudit compare``: what changed between two audits (model v1 vs v2, before and after
hardening), and whether the second is significantly worse (paired tests: auditor.comparison)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from auditor.cli.common import handle_errors
from auditor.errors import EXIT_GATE_FAILED, UsageError
from auditor.comparison import compare_results
from auditor.reporting.environment import render_template
from auditor.results import read_results, write_atomic

COMPARE_HELP = """Compare two audits (results.json files or their folders) and print the differences.

Compares clean accuracy, worst-case robust accuracy per eps, each attack per eps, clinical
metrics and validity checks, image by image: both audits must hold the same images (same
data fingerprint and sample ids). Proportions are tested with McNemar's exact test, AUROC,
rates and Dice with a paired bootstrap (2,000 resamples, seed 0); each row shows B - A with
its 95% interval and the p-value.

Exit code 1 when a row is a regression: B worse by more than --margin AND significant at
alpha 0.05 (or a validity check newly fails); 0 otherwise; 2 when A and B audit different
images (unless --allow-different-data: unpaired tests, labelled so); 3 when a file is
unreadable.

Examples:

  medaudit compare v1-report/ v2-report/

  medaudit compare before/results.json after/results.json --margin 0.02 --out compare/
"""

def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt_delta(v: Any) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _fmt_ci(ci: Any) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return "-"
    return f"{ci[0]:+.3f} to {ci[1]:+.3f}"


def _fmt_p(p: Any) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def render_html(comparison: dict[str, Any]) -> str:
    """compare.html: the report's template set, sandbox and stylesheet (report_templates/compare.html.jinja)."""
    return render_template("compare.html.jinja", c=comparison)


def print_table(comparison: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    # piped into a CI log, rich would wrap the eight columns at 80 characters
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"A: {comparison['a']['model']}  vs  B: {comparison['b']['model']}")
    for col in ("metric", "A", "B", "B - A", "95% CI of B - A", "p", "test", ""):
        table.add_column(col, justify="left" if col in ("metric", "test", "") else "right")
    for r in comparison["rows"]:
        table.add_row(r["label"], _fmt(r["a"]), _fmt(r["b"]), _fmt_delta(r["delta"]), _fmt_ci(r["delta_ci95"]),
                      _fmt_p(r["p_value"]), (r["test"] or {}).get("test", "-"), r["status"],
                      style="bold red" if r["regression"] else None)
    console.print(table)
    console.print(comparison["pairing"]["basis"], markup=False, soft_wrap=True)
    changed = [c for c in comparison["checks"] if c["a"] != c["b"]]
    for c in changed:
        console.print(f"check {c['id']} {c['name']}: {c['a']} -> {c['b']}", markup=False)
    for note in comparison["notes"]:
        console.print(f"note: {note}", markup=False)
    if comparison.get("hardening"):
        console.print(f"measured defense evidence: {comparison['hardening']['message']}", markup=False, soft_wrap=True)
    verdict = comparison["verdict"]
    console.print(f"B is {verdict} than A ({comparison['rule']})"
                  + (f": {', '.join(comparison['regressions'])}" if comparison["regressions"] else ""), markup=False)


def _hardening_log(b: dict[str, Any], explicit: Path | None) -> dict[str, Any] | None:
    from auditor.hardening import log_path_for

    if explicit is None:
        model_path = (b.get("model") or {}).get("path")
        if not model_path:
            return None
        explicit = log_path_for(Path(model_path))
        if not explicit.is_file():
            return None
    try:
        log = json.loads(explicit.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--hardening-log: cannot read {explicit}: {exc}") from None
    if not isinstance(log, dict) or "method" not in log or "settings" not in log:
        raise UsageError(f"--hardening-log: {explicit} is not a `medaudit harden` log")
    return log


@handle_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Baseline audit: results.json or its folder.")],
    b: Annotated[Path, typer.Argument(help="Audit to check against the baseline.")],
    margin: Annotated[float, typer.Option(help="Smallest worsening that matters (absolute, e.g. 0.02 = 2 points): a row is a regression only when B is worse by more than this AND the paired test is significant at alpha 0.05.")] = 0.0,
    tolerance: Annotated[Optional[float], typer.Option(help="Deprecated: the old name of --margin (a regression now also needs a significant test).", hidden=True)] = None,
    allow_different_data: Annotated[bool, typer.Option("--allow-different-data", help="Compare audits of different images with unpaired tests (less sensitive; labelled UNPAIRED) instead of refusing.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for compare.html and compare.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    hardening_log: Annotated[Optional[Path], typer.Option(
        "--hardening-log",
        help="The `medaudit harden` log of B's model (B = A hardened). Default: the log next to B's model file, "
             "if there is one. Adds the measured before/after evidence for that defense.")] = None,
) -> None:
    if tolerance is not None:
        typer.echo("medaudit: --tolerance is deprecated: it now sets --margin, and a regression also needs a "
                   "significant paired test", err=True)
        margin = tolerance
    if not 0 <= margin < 1:
        raise UsageError(f"--margin: {margin:g} must be between 0 and 1 (an absolute difference)")
    ra, rb = read_results(a), read_results(b)
    log = _hardening_log(rb, hardening_log)
    source = ((log or {}).get("model_in") or {}).get("sha256")
    mismatch = log is not None and source and source != (ra.get("model") or {}).get("sha256")
    comparison = compare_results(ra, rb, margin, None if mismatch else log, allow_different_data)
    if mismatch:  # the log hardened some other model: A is not "before"
        comparison["notes"].append("hardening evidence left out: the harden log's input model is not A's model "
                                   f"(sha256 {source[:12]}... vs {str((ra.get('model') or {}).get('sha256'))[:12]}...)")
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {out}: {exc.strerror or exc}") from None
        write_atomic(out / "compare.html", render_html(comparison))
        write_atomic(out / "compare.json", json.dumps(comparison, indent=1))
    if as_json:
        typer.echo(json.dumps(comparison, indent=1))
    else:
        print_table(comparison)
    if comparison["regressions"]:
        raise typer.Exit(EXIT_GATE_FAILED)
